"""``helm demo`` keeps to a folder of its own: the user's campaign is never touched, and a
demo never inherits what an earlier one left (a directive sent after it ended, its runs).

Real ``helm demo --headless`` processes (daemon, one sweep agent, tiny CPU data) with HOME
and XDG_DATA_HOME pointed at the test's folder, so the "default" locations are the test's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HELM = [sys.executable, "-m", "helm.cli"]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HELM_HOME", "HELM_AGENT", "HELM_DB_URL") and not k.startswith("PYTEST")
    }
    env.update(HOME=str(tmp), XDG_DATA_HOME=str(tmp / "xdg"), **extra)
    return env


def _helm(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([*HELM, *args], env=env, capture_output=True, text=True, timeout=180)
    if ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _demo(env: dict[str, str], *extra: str) -> tuple[dict, str]:
    out = _helm(env, "demo", "--headless", "--agents", "1", "--duration", "2", "--json", *extra)
    return json.loads(out.stdout), out.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind and, for files, a hash of its bytes."""
    snap: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            snap[rel] = f"link:{os.readlink(p)}"
        elif p.is_dir():
            snap[rel] = "dir"
        else:
            snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


@pytest.mark.slow
def test_demo_leaves_the_default_campaign_alone_and_starts_afresh(tmp_path: Path) -> None:
    env = _env(tmp_path)
    campaign = tmp_path / "xdg" / "helm"  # the default workspace (XDG_DATA_HOME/helm)
    _helm(env, "host", "ls")  # makes it, with its store, as a user's first command would
    (campaign / "notes.txt").write_text("my campaign\n")
    before = snapshot(campaign)
    assert "helm.db" in before

    summary, err = _demo(env)
    demo_root = (tmp_path / "xdg" / "helm-demo").resolve()
    assert summary["home"] == str(demo_root)
    assert f"demo workspace {demo_root}" in err  # said at the start
    assert (demo_root / ".helm-demo").is_file() and (demo_root / "helm.db").is_file()
    # a directive sent after the demo ended, into the demo's own folder (the trap)
    _helm(env, "--home", str(demo_root), "directive", "send", "set MATRIX_LR=0.5")
    first = (demo_root / "helm.db").stat().st_ino

    # the second demo, this time with HELM_HOME naming the user's campaign: still not there
    summary, err = _demo({**env, "HELM_HOME": str(campaign)})
    assert summary["home"] == str(demo_root) and "starting afresh" in err
    assert (demo_root / "helm.db").stat().st_ino != first
    left = json.loads(_helm(env, "--home", str(demo_root), "directive", "ls", "--json").stdout)
    assert left == []  # the earlier demo's directive is gone with it: it never runs
    assert snapshot(campaign) == before  # byte for byte, not one file more


@pytest.mark.slow
def test_reset_resume_and_folders_that_are_not_a_demos(tmp_path: Path) -> None:
    env = _env(tmp_path)
    root = tmp_path / "mydemo"
    summary, _ = _demo(env, "--home", str(root))
    assert summary["home"] == str(root.resolve())
    _helm(env, "--home", str(root), "directive", "send", "keep going")
    # --resume continues the earlier demo, with all it left
    _, err = _demo(env, "--home", str(root), "--resume")
    assert "resuming the earlier demo" in err
    ls = json.loads(_helm(env, "--home", str(root), "directive", "ls", "--json").stdout)
    assert [d["text"] for d in ls] == ["keep going"]
    # --reset: a fresh demo, the earlier one's records gone
    _, err = _demo(env, "--home", str(root), "--reset")
    assert "starting afresh" in err
    assert json.loads(_helm(env, "--home", str(root), "directive", "ls", "--json").stdout) == []

    # a folder helm did not mark as a demo's is never deleted
    mine = tmp_path / "campaign"
    mine.mkdir()
    (mine / "precious.txt").write_text("do not delete\n")
    out = _helm(env, "demo", "--headless", "--home", str(mine), "--reset", ok=False)
    assert out.returncode == 1 and "not made by `helm demo`" in out.stderr
    assert (mine / "precious.txt").read_text() == "do not delete\n"
    assert sorted(p.name for p in mine.iterdir()) == ["precious.txt"]
    # nor is the default demo path when something else sits there
    default = tmp_path / "xdg" / "helm-demo"
    default.mkdir(parents=True)
    (default / "x").write_text("x")
    out = _helm(env, "demo", "--headless", ok=False)
    assert out.returncode == 1 and "not made by `helm demo`" in out.stderr
    assert sorted(p.name for p in default.iterdir()) == ["x"]
    # the choice is stated where a user looks for it
    help_text = _helm(env, "demo", "--help").stdout
    assert "helm-demo" in help_text and "afresh" in help_text and "--resume" in help_text
    assert "hang-up" in help_text
