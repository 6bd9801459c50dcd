"""What ``helm`` (the TUI) says as it closes: the campaign keeps running (issue 18).

``run_tui`` is run whole, with the real ``HelmApp`` on a real workspace; only the terminal
cannot exist here, so ``run_app`` (``HelmApp(ws).run()``) is replaced by the same app run
headless under ``App.run_test`` and closed with ``q``, as an operator closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
from pathlib import Path

import pytest

from helm.cli.tui_cmd import closing_note, run_tui
from helm.tui import app as tui_app
from helm.workspace import Workspace


def _headless(ws: Workspace) -> int:
    async def go() -> None:
        app = tui_app.HelmApp(ws, start_daemon=False, keymap={})
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("q")

    asyncio.run(go())
    return 0


def test_closing_the_tui_says_the_campaign_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "my campaign"
    monkeypatch.setattr(tui_app, "run_app", _headless)
    assert run_tui(argparse.Namespace(home=str(home))) == 0
    err = capsys.readouterr().err
    assert "the daemon, the agents and their jobs keep running" in err
    quoted = shlex.quote(str(home))
    assert f"`helm --home {quoted} swarm down`" in err
    assert f"`helm --home {quoted} daemon stop`" in err


def test_the_note_quotes_the_home_for_a_shell() -> None:
    note = closing_note("/tmp/a b;rm -rf x")
    assert "helm --home '/tmp/a b;rm -rf x' swarm down" in note
    assert shlex.split(note.split("`")[1]) == ["helm", "--home", "/tmp/a b;rm -rf x"]
