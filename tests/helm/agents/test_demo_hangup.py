"""A hang-up stops the demo, and a deleted workspace stops whatever still served it.

Real processes throughout: ``helm demo`` (the TUI, on a pseudo-terminal the test holds the
other end of) with its daemon, sweep agent and training job; and a daemon plus a sweep agent
started by ``helm swarm up`` in a workspace the test then deletes. The processes of a
workspace are found by what the kernel says about them (their command line names the
folder, or their working directory is inside it), not by what helm recorded.
"""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helm.agents import procs
from helm.daemon import is_running
from helm.workspace import Workspace

HELM = [sys.executable, "-m", "helm.cli"]


def processes_of(root: Path) -> dict[int, str]:
    """pid -> command line of every live process whose command line or cwd is in ``root``."""
    found: dict[int, str] = {}
    key = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if state == "Z":  # exited, waiting to be reaped: not running
            continue
        if key in cmd or cwd == key or cwd.startswith(key + "/"):
            found[int(entry.name)] = cmd
    return found


def wait_for(
    cond: Callable[[], object], timeout: float, what: str, left: Callable[[], object] = str
) -> None:
    """Poll ``cond``; on timeout, fail with what ``left`` says is still there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {left()}")


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HELM_HOME", "HELM_AGENT", "HELM_DB_URL") and not k.startswith("PYTEST")
    }
    return {**env, "TERM": "xterm-256color", "HOME": str(home.parent)}


def _kill_all(root: Path) -> None:
    """Never leave a swarm training behind the suite, whatever the test found."""
    for pid in processes_of(root):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _log_tail(root: Path) -> str:
    """The end of the daemon's and the agent's logs, for a failure message."""
    tails = []
    for log in sorted(root.rglob("*.log")):
        with contextlib.suppress(OSError):
            tails.append(f"--- {log.relative_to(root)}\n{log.read_text(errors='replace')[-1500:]}")
    return "\n".join(tails[-6:])


def _training(root: Path) -> bool:
    return any("train_gpt" in cmd for cmd in processes_of(root).values())


@pytest.mark.slow
def test_a_hang_up_stops_the_interactive_demo_and_all_it_started(tmp_path: Path) -> None:
    root = (tmp_path / "demo").resolve()
    argv = [*HELM, "demo", "--agents", "1", "--home", str(root)]
    pid, master = pty.fork()
    if pid == 0:  # the child: the demo, with the pty as its controlling terminal
        os.execve(argv[0], argv, _env(root))
    ws = Workspace(root)
    try:
        wait_for(lambda: root.is_dir() and procs.alive_pid(ws, "sweep-1"), 90, "the agent")
        daemon = is_running(ws)
        assert daemon and daemon > 0
        wait_for(lambda: _training(root), 90, "the agent's training job")
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the demo exited before the hang-up"
        before = processes_of(root)
        assert pid in before and daemon in before and len(before) >= 4, before

        os.close(master)  # the terminal goes away: the kernel sends SIGHUP to the demo
        master = -1
        wait_for(lambda: not processes_of(root), 30, "every process of the demo to end",
                 lambda: (processes_of(root), _log_tail(root)))  # fmt: skip
        wait_for(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, 10, "the demo to exit")
    finally:
        if master >= 0:
            os.close(master)
        _kill_all(root)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert is_running(ws) is None and procs.alive_pid(ws, "sweep-1") is None


@pytest.mark.slow
def test_an_agent_and_its_daemon_stop_when_their_workspace_is_deleted(tmp_path: Path) -> None:
    root = (tmp_path / "campaign").resolve()
    env = {**_env(root), "HELM_HOME": str(root)}
    ok = subprocess.run([*HELM, "swarm", "up", "-n", "1", "--driver", "sweep"], env=env,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    ws = Workspace(root)
    try:
        wait_for(lambda: procs.alive_pid(ws, "sweep-1"), 60, "the agent")
        daemon, agent = is_running(ws), procs.alive_pid(ws, "sweep-1")
        assert daemon and agent and {daemon, agent} <= set(processes_of(root))

        shutil.rmtree(root, ignore_errors=True)  # a live campaign deleted under its swarm
        shutil.rmtree(root, ignore_errors=True)  # (again: a write may race the first pass)

        def ended(pid: int) -> bool:
            try:
                return (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1][1] == "Z"
            except OSError:
                return True

        wait_for(lambda: ended(daemon) and ended(agent), 30, "the daemon and the agent to stop")
        assert not root.exists() or not any(root.rglob("helm.db")), "the store came back"
    finally:
        _kill_all(root)
