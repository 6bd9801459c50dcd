"""The long-running ``helm daemon``: one per workspace, hosting the services that act.

The TUI and the agents only write intents into the store; the daemon turns them into actions
(the scheduler places jobs on boxes and streams their logs, the supervisor keeps agents
alive). One instance per workspace is enforced with an ``flock`` on ``daemon.lock``: the
kernel drops the lock when the process dies, so a SIGKILLed daemon never leaves a stale lock
behind, and ``daemon.pid`` is only informative. State (pid, start time, heartbeat, services)
is written atomically to ``daemon.json`` for ``helm daemon status`` and the TUI header.

Services are objects with ``name``, ``interval_s`` and async ``start``/``tick``/``stop``;
an exception in one tick is logged and retried next interval, never fatal to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from helm.workspace import Workspace

# "module:factory" — each factory takes (workspace, logger) and returns a Service.
SERVICE_FACTORIES: list[str] = [
    "helm.remote.service:make_service",
    "helm.agents.supervisor:make_service",
]


class Service(Protocol):
    name: str
    interval_s: float

    async def start(self) -> None: ...

    async def tick(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class DaemonPaths:
    lock: Path
    pid: Path
    state: Path
    log: Path

    @classmethod
    def of(cls, ws: Workspace) -> DaemonPaths:
        return cls(
            lock=ws.root / "daemon.lock",
            pid=ws.root / "daemon.pid",
            state=ws.root / "daemon.json",
            log=ws.logs_dir / "daemon.log",
        )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def is_running(ws: Workspace) -> int | None:
    """The daemon's pid if one holds the workspace lock, else None."""
    paths = DaemonPaths.of(ws)
    if not paths.lock.exists():
        return None
    with open(paths.lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(paths.pid.read_text().strip())
            except (OSError, ValueError):
                return -1  # running, pid file not written yet
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def read_state(ws: Workspace) -> dict[str, Any]:
    try:
        return json.loads(DaemonPaths.of(ws).state.read_text())
    except (OSError, ValueError):
        return {}


def load_services(ws: Workspace, log: logging.Logger) -> list[Service]:
    services: list[Service] = []
    for spec in SERVICE_FACTORIES:
        module_name, _, factory = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that capability is not built into this helm
                log.info("service %s not available", module_name)
                continue
            raise
        services.append(getattr(module, factory)(ws, log))
    return services


class Daemon:
    """The process body: hold the lock, run the services until asked to stop."""

    def __init__(self, ws: Workspace, *, heartbeat_s: float = 1.0) -> None:
        self.ws = ws
        self.paths = DaemonPaths.of(ws)
        self.heartbeat_s = heartbeat_s
        self.log = logging.getLogger("helm.daemon")
        self._stop = asyncio.Event()
        self._lock_fh: Any = None
        self.started_at = time.time()
        self.services: list[Service] = []

    def acquire(self) -> bool:
        self._lock_fh = open(self.paths.lock, "a+")  # noqa: SIM115  (held for the lifetime)
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            return False
        _atomic_write(self.paths.pid, f"{os.getpid()}\n")
        return True

    def _write_state(self, status: str) -> None:
        state = {
            "pid": os.getpid(),
            "status": status,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            "services": [s.name for s in self.services],
        }
        _atomic_write(self.paths.state, json.dumps(state))

    async def _service_loop(self, service: Service) -> None:
        while not self._stop.is_set():
            try:
                await service.tick()
            except Exception:
                self.log.exception("service %s: tick failed", service.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), service.interval_s)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stop.set)
        self.ws.store  # noqa: B018  (create or migrate before any service touches it)
        self.services = load_services(self.ws, self.log)
        started: list[Service] = []
        for s in self.services:
            await s.start()
            started.append(s)
        self._write_state("running")
        self.log.info(
            "daemon running (pid %d), services: %s", os.getpid(), [s.name for s in started]
        )
        tasks = [asyncio.create_task(self._service_loop(s)) for s in started]
        while not self._stop.is_set():
            self._write_state("running")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)
        self.log.info("stopping")
        self._write_state("stopping")
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in reversed(started):
            try:
                await s.stop()
            except Exception:
                self.log.exception("service %s: stop failed", s.name)
        self._write_state("stopped")
        with contextlib.suppress(OSError):
            self.paths.pid.unlink()
        self.log.info("stopped cleanly")


def _configure_logging(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Entry of the detached daemon process (``python -m helm.daemon --home DIR``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="helm-daemon")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    ws = Workspace(args.home).ensure()
    daemon = Daemon(ws)
    if not daemon.acquire():
        print(f"helm: daemon already running (pid {is_running(ws)})", file=sys.stderr)
        return 1
    _configure_logging(daemon.paths.log)
    asyncio.run(daemon.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())


# Control from other processes -------------------------------------------------------------------
class DaemonError(Exception):
    """The daemon could not be started or stopped."""


def start_detached(ws: Workspace, *, timeout_s: float = 20.0) -> tuple[int, bool]:
    """Start the daemon in its own session unless one runs; returns (pid, newly_started)."""
    import subprocess

    pid = is_running(ws)
    if pid is not None:
        return pid, False
    paths = DaemonPaths.of(ws)
    env = {k: v for k, v in os.environ.items() if k != "HELM_AGENT"}
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "helm.daemon", "--home", str(ws.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the terminal and the TUI that started it
            env=env,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(ws)
        if state.get("pid") == proc.pid and state.get("status") == "running":
            return proc.pid, True
        code = proc.poll()
        if code is not None:
            other = is_running(ws)
            if other is not None:  # lost a race with another starter: fine
                return other, False
            raise DaemonError(f"daemon exited with code {code}; see {paths.log}")
        time.sleep(0.05)
    raise DaemonError(f"daemon did not report running within {timeout_s:.0f}s; see {paths.log}")


def stop(ws: Workspace, *, timeout_s: float = 30.0) -> int | None:
    """Ask the running daemon to stop and wait until it has; returns its pid or None."""
    pid = is_running(ws)
    if pid is None:
        return None
    if pid <= 0:
        raise DaemonError("daemon is starting; try again in a moment")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_running(ws) is None:
            return pid
        time.sleep(0.05)
    raise DaemonError(f"daemon (pid {pid}) did not stop within {timeout_s:.0f}s")
