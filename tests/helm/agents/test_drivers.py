"""Driver presets, templates, program.md, and the supervisor's bookkeeping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helm.agents import config as cfg
from helm.agents.coding import user_kwargs
from helm.agents.drivers import DriverError, command_for, program_text, validate_driver


def test_presets_run_unattended(tmp_path: Path) -> None:
    claude = command_for("claude", agent="c1", worktree=tmp_path, home=tmp_path)
    assert claude[0] == "claude" and "--dangerously-skip-permissions" in claude
    assert "-p" in claude and "program.md" in claude[claude.index("-p") + 1]
    codex = command_for("codex", agent="c1", worktree=tmp_path, home=tmp_path)
    assert codex[:2] == ["codex", "exec"]
    assert "--dangerously-bypass-approvals-and-sandbox" in codex
    assert command_for("opencode", agent="o", worktree=tmp_path, home=tmp_path)[:2] == [
        "opencode",
        "run",
    ]
    argv = command_for('my-cli --name {agent} --msg "{prompt}"', agent="z", worktree=tmp_path,
                       home=tmp_path)  # fmt: skip
    assert argv[:3] == ["my-cli", "--name", "z"] and "program.md" in argv[4]
    over = command_for("claude", agent="c", worktree=tmp_path, home=tmp_path,
                       overrides={"claude": "python fake.py {prompt}"})  # fmt: skip
    assert over[:2] == ["python", "fake.py"]


@pytest.mark.parametrize("bad", ["gpt", "mycli --yes", 'x "{prompt}'])
def test_bad_drivers(bad: str) -> None:
    with pytest.raises(DriverError):
        validate_driver(bad)


def test_program_md_is_the_loop() -> None:
    text = program_text("a7", "claude")
    for must in ("helm context", "helm exp run", "helm directive ack", "helm feed post",
                 "16,000,000", "never stop"):  # fmt: skip
        assert must.lower() in text.lower()
    assert "`a7`" in text


def test_run_as_only_applies_to_root() -> None:
    if os.geteuid() != 0:
        assert user_kwargs("nobody") == ({}, {})
    else:
        kwargs, env = user_kwargs("nobody")
        assert kwargs["user"] != 0 and env["USER"] == "nobody"
    assert user_kwargs("") == ({}, {})


def test_config(tmp_path: Path) -> None:
    assert cfg.load(tmp_path / "none.toml") == cfg.AgentsConfig()
    p = tmp_path / "config.toml"
    p.write_text("[agents]\nstall_s = 60\nbackoff_s = [1, 4]\n[agents.keep]\nk = 3\n"
                 "[agents.drivers]\nclaude = 'x {prompt}'\n")  # fmt: skip
    c = cfg.load(p)
    assert (c.stall_s, c.backoff_s, c.keep.k, c.drivers["claude"]) == (60, (1, 4), 3, "x {prompt}")
    p.write_text("[agents.keep]\nk = 'lots'\n")
    with pytest.raises(cfg.ConfigError):
        cfg.load(p)
