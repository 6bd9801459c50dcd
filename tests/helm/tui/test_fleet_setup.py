"""The fleet pane's readiness column and the setup key (issue 18).

Hosts go in through ``helm.models.hosts.insert_host`` and their checks through
``helm.models.job_life.save_check`` (what the daemon and ``helm host check`` call), judged
by ``helm.remote.check.judge`` (what ``probe_host`` calls), so the pane reads exactly what a
real check leaves on the row. The setup command runs a stand-in for ``helm host setup``
(``setup_standin.py``, handed to the app through its ``setup_argv`` parameter, which exists
for this): the real command needs an SSH box and is tested in tests/helm/remote/
test_host_setup.py; here what matters is that the TUI runs it off the UI loop, streams its
lines, interrupts it with SIGINT and refreshes the pane after.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from setup_standin import good_check
from textual.widgets import Log, RadioButton
from tui_campaign import SIZE, T0, settle

from helm.models.hosts import insert_host
from helm.models.job_life import save_check
from helm.remote.check import judge
from helm.tui import commands as cmds
from helm.tui.app import HelmApp
from helm.tui.data import load_snapshot
from helm.tui.readiness import readiness
from helm.tui.screens.host_setup import HostSetupScreen
from helm.tui.widgets.tables import KeyedTable
from helm.workspace import Workspace

STANDIN = Path(__file__).with_name("setup_standin.py")


def _fleet(ws: Workspace) -> None:
    """One host of each readiness: ready, a blocker, CPU-only, unreachable, unchecked, and a
    Slurm cluster whose check found a problem."""
    with ws.db(write=True) as db:
        for name in ("ready-box", "full-box", "cpu-box", "gone-box", "new-box"):
            insert_host(db, name=name, kind="ssh", gpus=8, workdir="/w", ssh_host="10.0.0.1")
        insert_host(db, name="lab", kind="slurm", gpus=16, workdir="/w", ssh_host="10.0.0.2")
    checks = {
        "ready-box": good_check(),
        "full-box": good_check(disk_free_gb=1.5, disk_free_kb=1572864),
        "cpu-box": good_check(nvidia_smi=False, gpus=[], cuda=False, torch="2.6.0+cpu"),
    }
    for name, check in checks.items():
        save_check(ws.store, name, True, judge(check, host=name, declared_gpus=8))
    save_check(ws.store, "gone-box", False, {"reachable": False, "error": "Connection refused"})
    save_check(ws.store, "lab", True, {"reachable": True, "problems": ["partition gpu is down"]})


def test_readiness_of_each_kind_of_check(ws: Workspace) -> None:
    _fleet(ws)
    hosts = {h.name: h for h in load_snapshot(ws, clock=lambda: T0).hosts}
    got = {name: readiness(h) for name, h in hosts.items()}
    assert got["ready-box"] == ("ready", "success")
    assert got["full-box"] == ("not ready: low disk space", "error")
    assert got["cpu-box"] == ("CPU-only", "warning")
    assert got["gone-box"] == ("not ready: unreachable", "error")
    assert got["new-box"] == ("unchecked", "muted")
    assert got["lab"] == ("not ready: partition gpu is down", "error")


def test_a_blocker_wins_over_cpu_only_and_long_problems_are_cut(ws: Workspace) -> None:
    with ws.db(write=True) as db:
        insert_host(db, name="b", kind="ssh", gpus=8, workdir="/w", ssh_host="h")
    check = good_check(nvidia_smi=False, gpus=[], python=None, torch=None)
    save_check(ws.store, "b", True, judge(check, host="b", declared_gpus=8))
    (host,) = load_snapshot(ws, clock=lambda: T0).hosts
    assert readiness(host) == ("not ready: python not found", "error")
    save_check(ws.store, "b", True, judge(good_check(write_error="Read-only file system"),
                                          host="b", declared_gpus=8))  # fmt: skip
    (host,) = load_snapshot(ws, clock=lambda: T0).hosts
    label, _ = readiness(host)
    assert label.startswith("not ready: work folder /w") and len(label) <= 32
    assert label.endswith("…")


def _standin(mode: str) -> Callable[[Workspace, str, str], list[str]]:
    def argv(ws: Workspace, name: str, variant: str) -> list[str]:
        return [sys.executable, str(STANDIN), str(ws.root), name, variant, mode]

    return argv


def _app(ws: Workspace, mode: str = "wait") -> HelmApp:
    return HelmApp(ws, start_daemon=False, clock=lambda: T0, refresh_rate=3600, keymap={},
                   setup_argv=_standin(mode))  # fmt: skip


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def _select_host(app: HelmApp, pilot, name: str) -> None:  # noqa: ANN001
    await pilot.press("4")
    table = app.main.query_one("#fleet", KeyedTable)
    table.move_cursor(row=table.keys.index(f"host:{name}"))
    await pilot.pause()


def _messages(app: HelmApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def _log(screen: HostSetupScreen) -> str:
    return "\n".join(screen.query_one("#setup-log", Log).lines)


async def test_fleet_pane_shows_each_hosts_readiness(ws: Workspace) -> None:
    _fleet(ws)
    app = _app(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.main.query_one("#fleet", KeyedTable)
        ready = {k: str(table.get_row(k)[2]) for k in table.keys}
    assert ready == {
        "host:cpu-box": "CPU-only",
        "host:full-box": "not ready: low disk space",
        "host:gone-box": "not ready: unreachable",
        "host:lab": "not ready: partition gpu is down",
        "host:new-box": "unchecked",
        "host:ready-box": "ready",
    }


def test_the_setup_command_is_in_the_registry_for_the_main_screen() -> None:
    command = cmds.BY_ID["host_setup"]
    assert cmds.MAIN in command.contexts and command.palette
    assert "host_setup" in {c.id for c in cmds.commands_for(cmds.MAIN)}


async def test_setup_streams_progress_and_cancel_interrupts_it(ws: Workspace) -> None:
    _fleet(ws)
    app = _app(ws, mode="wait")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await _select_host(app, pilot, "full-box")
        await pilot.press(cmds.BY_ID["host_setup"].key)
        screen = app.screen
        assert isinstance(screen, HostSetupScreen)
        plan = str(screen.query_one("#setup-plan").render())
        assert "full-box" in plan and "sp8192" in plan and "6/6 check" in plan
        assert "low disk space" in plan  # what the last check found, with its fix
        assert screen.proc is None  # nothing runs before the operator confirms
        await pilot.press("y")
        await until(lambda: "ETA 1m 30s" in _log(screen))
        text = _log(screen)
        assert "step 1/6 driver: done" in text and "step 2/6 venv: done" in text
        assert "--data sp8192" in text
        proc = screen.proc
        assert proc is not None and proc.poll() is None
        await pilot.press("escape")  # cancel: SIGINT, the setup's own resumable interrupt
        await until(lambda: proc.poll() is not None)
        await until(lambda: "interrupted" in str(screen.query_one("#setup-status").render()))
        assert proc.returncode == 1  # the stand-in's KeyboardInterrupt path, not a kill
        assert "again to continue" in _log(screen)
        await pilot.press("escape")  # finished: escape closes
        await until(lambda: app.screen is app.main)


async def test_setup_to_the_end_refreshes_the_pane(ws: Workspace) -> None:
    _fleet(ws)
    app = _app(ws, mode="done")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await _select_host(app, pilot, "new-box")
        await pilot.press(cmds.BY_ID["host_setup"].key)
        screen = app.screen
        assert isinstance(screen, HostSetupScreen)
        screen.query_one("#variant-sp1024", RadioButton).value = True  # not the default
        await pilot.pause()
        await pilot.press("y")
        await until(lambda: "finished" in str(screen.query_one("#setup-status").render()))
        assert "step 6/6 check: done" in _log(screen) and "--data sp1024" in _log(screen)
        table = app.main.query_one("#fleet", KeyedTable)
        await until(lambda: str(table.get_row("host:new-box")[2]) == "ready")


@pytest.mark.parametrize(
    ("host", "says"),
    [("lab", "setup is for SSH boxes"), ("ready-box", "ready-box is ready")],
)
async def test_setup_is_not_offered_where_it_does_nothing(ws: Workspace, host: str, says: str):
    _fleet(ws)
    app = _app(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await _select_host(app, pilot, host)
        await pilot.press(cmds.BY_ID["host_setup"].key)
        await pilot.pause()
        assert app.screen is app.main  # no dialog, so no subprocess
        assert any(says in m for m in _messages(app))


async def test_setup_needs_a_host_selected(ws: Workspace) -> None:
    _fleet(ws)
    app = _app(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("1", cmds.BY_ID["host_setup"].key)
        await pilot.pause()
        assert app.screen is app.main
        assert any("select a host" in m for m in _messages(app))
