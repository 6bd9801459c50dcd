"""Agent processes: start one detached, tell whether it lives, stop it.

An agent process (``python -m helm.agents.runner``) holds an ``flock`` on
``<home>/agents/<name>/agent.lock`` for its whole life. The kernel drops the lock when the
process dies however it dies, so "is the agent alive" is a lock probe, never a guess from a
pid that may have been reused. Agents run in their own session: they outlive the daemon, the
TUI and the terminal that started them, and a restarted daemon adopts them as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from helm.workspace import Workspace


def agent_dir(ws: Workspace, agent: str) -> Path:
    """The agent's folder, made if missing, but never the workspace itself: a probe of a
    deleted campaign (the supervisor's, in its last second) must not bring its folder back."""
    path = ws.agents_dir / agent
    if ws.root.is_dir():
        path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_file(ws: Workspace, agent: str) -> Path:
    return agent_dir(ws, agent) / "agent.pid"


def alive_pid(ws: Workspace, agent: str) -> int | None:
    """The pid of the agent's process if it holds its lock, else None (-1: pid not written)."""
    lock = agent_dir(ws, agent) / "agent.lock"
    if not lock.exists():
        return None
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(_pid_file(ws, agent).read_text().strip())
            except (OSError, ValueError):
                return -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def acquire(ws: Workspace, agent: str) -> IO[str] | None:
    """Take the agent's lock for this process (None: another process has it)."""
    fh = open(agent_dir(ws, agent) / "agent.lock", "a+")  # noqa: SIM115  (held for life)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    _pid_file(ws, agent).write_text(f"{os.getpid()}\n")
    return fh


def agent_env(ws: Workspace, agent: str) -> dict[str, str]:
    """The environment of an agent process and of the CLI it runs: ``helm`` on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["HELM_HOME"] = str(ws.root)
    env["HELM_AGENT"] = agent
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(ws: Workspace, agent: str, cwd: Path) -> int:
    """Start the agent's process detached (own session); returns its pid."""
    log = agent_dir(ws, agent) / "runner.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "helm.agents.runner", "--home", str(ws.root), "--agent", agent],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=agent_env(ws, agent),
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def terminate(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop(ws: Workspace, agent: str, *, timeout_s: float = 90.0) -> bool:
    """SIGTERM the agent, wait for its lock to drop, SIGKILL its group after ``timeout_s``.

    The agent cancels the job in flight on SIGTERM; True if it ended within the timeout.
    """
    pid = alive_pid(ws, agent)
    if pid is None:
        return True
    if pid > 0:
        terminate(pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive_pid(ws, agent) is None:
            return True
        time.sleep(0.2)
    pid = alive_pid(ws, agent)
    if pid and pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return False
