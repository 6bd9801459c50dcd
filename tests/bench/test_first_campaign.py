"""bench/first_campaign.py and the README's "Your first real campaign" cannot drift apart.

The bench runs the README block itself (slow: a box set up, a tiny run trained; recorded in
bench/RESULTS.md). These fast tests pin what makes that run worth anything: the script finds
the block by its heading and refuses when it is gone, every command line it runs is the
README's line, byte for byte, and the only things it changes are the variables it lists,
plus the TUI line it replaces with a wait. Real README, real composed script, real bash (a
syntax check, and the variable part run with a stub `helm`-free body).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import first_campaign as fc  # noqa: E402

README = (REPO / "README.md").read_text()
VALUES: dict[str, str | list[str]] = {
    "BOX": "root@127.0.0.1:40022",
    "KEY": "/tmp/k e y/user_ed25519",  # a space: quoting must hold
    "FP": "SHA256:abc",
    "GPUS": "1",
    "DRIVER": "sweep",
    "CONFIG": ["--env", "DEVICE=cpu", "--env", "VOCAB_SIZE=8192"],
    "HELM_HOME": "/tmp/golf",
}


def test_the_block_is_found_under_its_heading_and_its_absence_is_loud() -> None:
    block = fc.readme_block(README)
    assert "helm host setup" in block and "helm swarm up" in block
    with pytest.raises(fc.BlockError, match="no heading"):
        fc.readme_block(README.replace(fc.HEADING, "## Something else"))
    cut = README.split(fc.HEADING)[0] + fc.HEADING + "\n\nno block here\n\n## Next\n```sh\nx\n```\n"
    with pytest.raises(fc.BlockError, match="no complete"):
        fc.readme_block(cut)


def test_every_command_line_it_runs_is_the_readmes_and_only_the_tui_line_is_left_out() -> None:
    block = fc.readme_block(README)
    top, body = fc.split_block(block)
    script, _ = fc.compose(block, VALUES)
    ran = fc.command_lines(script)
    last = max(i for i, line in enumerate(body) if line.strip())
    assert fc.is_tui_line(body[last])
    assert ran == body[:last] + body[last + 1 :], "the body runs verbatim"
    # the README walks through the steps the issue names, in this order
    order = ["host add", "host trust", "host setup", "host check", "config.toml", "swarm up"]
    positions = [next(i for i, line in enumerate(ran) if word in line) for word in order]
    assert positions == sorted(positions)


def test_only_the_listed_variables_change_and_each_is_said() -> None:
    block = fc.readme_block(README)
    top, _ = fc.split_block(block)
    script, diffs = fc.compose(block, VALUES)
    new_top, _ = fc.split_block(script)
    assert len(new_top) == len(top)
    changed = set()
    for old, new in zip(top, new_top, strict=True):
        name = fc.ASSIGN.match(old).group(2)
        assert fc.ASSIGN.match(new).group(2) == name
        if old != new:
            changed.add(name)
    assert changed == set(VALUES) <= set(fc.SUBSTITUTED)
    assert "RUN_AS" not in changed and "NAME" not in changed
    for name in VALUES:
        assert any(d.startswith(f"{name}: ") for d in diffs)
    assert any("`helm` (the TUI)" in d for d in diffs)
    with pytest.raises(ValueError, match="not a variable this bench may change"):
        fc.compose(block, {**VALUES, "NAME": "other"})


def test_the_composed_variables_are_valid_bash_with_the_values_intact(tmp_path: Path) -> None:
    script, _ = fc.compose(fc.readme_block(README), VALUES)
    top, _ = fc.split_block(script)
    probe = "\n".join(top) + '\nprintf "%s\\n" "$KEY" "$BOX" "$HELM_HOME" "${CONFIG[@]}"\n'
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [VALUES["KEY"], VALUES["BOX"], VALUES["HELM_HOME"], *VALUES["CONFIG"]]
    check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_readme_defaults_run_in_bash_as_written() -> None:
    """The block's own variables (the user's starting point) are valid bash too, and an
    empty CONFIG adds no word to `swarm up` under `set -u`."""
    top, _ = fc.split_block(fc.readme_block(README))
    probe = "\n".join(top) + '\nset -- "${CONFIG[@]}"; echo "$# $GPUS $DRIVER"\n'
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "8", "claude"]


def test_its_own_helm_commands_name_the_temp_campaign() -> None:
    """The bench runs with no HELM_HOME of its own: a bare `helm swarm down` at cleanup would
    stop the agents of the default campaign (a bug caught in development)."""
    cmd = fc.helm_cmd("/tmp/golf", "swarm", "down")
    assert cmd[:3] == ["helm", "swarm", "down"] and cmd[-2:] == ["--home", "/tmp/golf"]
