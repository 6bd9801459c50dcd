"""The daemon: one per workspace, clean stop, no stale lock after a SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from helm.daemon import is_running, read_state
from helm.workspace import Workspace


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a killed child of ours may linger as a zombie until reaped; it was started detached
        # (new session) by start_detached, so reap if it is ours
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


@pytest.fixture
def started(helm, home: Path):  # noqa: ANN201
    r = helm("daemon", "start")
    assert r.code == 0, r.err
    pid = is_running(Workspace(home))
    assert pid and pid > 0
    yield pid
    if is_running(Workspace(home)):
        helm("daemon", "stop")


def test_single_instance_and_status(helm, home: Path, started: int) -> None:
    again = helm("daemon", "start")
    assert again.code == 0 and f"already running (pid {started})" in again.out
    status = helm("daemon", "status", "--json")
    assert status.code == 0
    info = status.json()
    assert info["running"] is True and info["pid"] == started
    time.sleep(1.2)
    assert read_state(Workspace(home))["heartbeat_at"] > info["started_at"]
    # the daemon body itself refuses to run twice, even when started by hand
    from helm.daemon import main as daemon_main

    assert daemon_main(["--home", str(home)]) == 1


def test_clean_stop(helm, home: Path, started: int) -> None:
    r = helm("daemon", "stop")
    assert r.code == 0 and f"stopped (pid {started})" in r.out
    _wait_gone(started)
    assert not (home / "daemon.pid").exists()
    assert read_state(Workspace(home))["status"] == "stopped"
    log = (home / "logs" / "daemon.log").read_text()
    assert "stopped cleanly" in log
    status = helm("daemon", "status")
    assert status.code == 3 and "not running" in status.out
    assert helm("daemon", "stop").out.strip() == "daemon not running"


def test_sigkill_leaves_no_stale_lock(helm, home: Path, started: int) -> None:
    os.kill(started, signal.SIGKILL)
    _wait_gone(started)
    assert is_running(Workspace(home)) is None
    r = helm("daemon", "start")
    assert r.code == 0 and "daemon started" in r.out
    assert is_running(Workspace(home)) not in (None, started)
