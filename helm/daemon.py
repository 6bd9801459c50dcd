"""The long-running ``helm daemon``: one per workspace, hosting the services that act.

The TUI and the agents only write intents into the store; the daemon turns them into actions
(the scheduler places jobs on boxes and streams their logs, the supervisor keeps agents
alive). One instance per workspace is enforced with an ``flock`` on ``daemon.lock``: the
kernel drops the lock when the process dies, so a SIGKILLed daemon never leaves a stale lock
behind, and ``daemon.pid`` is only informative. State (pid, start time, heartbeat, services)
is written atomically to ``daemon.json`` for ``helm daemon status`` and the TUI header.

Services are objects with ``name``, ``interval_s`` and async ``start``/``tick``/``stop``;
an exception in one tick (or start) is logged and retried next interval, never fatal to the
others. Nor is a write that fails because the workspace's disk is full or read-only, the
daemon's own included (``daemon.json``, the pid file, the store): each is told once in the
log (``FaultStreak``), retried, and told again when it works, so that jobs that ended on
their boxes meanwhile are recorded as soon as there is room.
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

from helm.models.errors import write_fault
from helm.workspace import Workspace

# "module:factory" — each factory takes (workspace, logger) and returns a Service.
SERVICE_FACTORIES: list[str] = [
    "helm.remote.service:make_service",
    "helm.agents.supervisor:make_service",
    "helm.agents.abort_service:make_service",
]


class FaultStreak:
    """One failure that repeats (every write while the disk is full) told once when it
    starts, again at most every ``every_s`` while it lasts, and once when it ends: the
    log must not fill a disk that is already full, yet must say what happened once it can."""

    def __init__(self, log: logging.Logger, what: str, *, every_s: float = 60.0) -> None:
        self.log = log
        self.what = what
        self.every_s = every_s
        self.reason: str | None = None
        self.count = 0
        self._since = 0.0
        self._told = 0.0

    def failed(self, reason: str) -> None:
        now = time.monotonic()
        self.count += 1
        if self.reason is None:
            self._since = self._told = now
            self.count = 1
            self.log.warning("%s failed: %s; retrying", self.what, reason)
        elif reason != self.reason or now - self._told >= self.every_s:
            self._told = now
            self.log.warning(
                "%s still failing (%d times in %.0f s): %s",
                self.what,
                self.count,
                now - self._since,
                reason,
            )
        self.reason = reason

    def ok(self) -> None:
        if self.reason is None:
            return
        self.log.warning(
            "%s works again, after %d failed tries in %.0f s (%s)",
            self.what,
            self.count,
            time.monotonic() - self._since,
            self.reason,
        )
        self.reason = None


class Service(Protocol):
    name: str
    interval_s: float

    async def start(self) -> None: ...

    async def tick(self) -> None: ...

    async def stop(self) -> None: ...


class RootWatch:
    """Whether the workspace folder a long-running process serves is still there.

    A campaign folder deleted under a live daemon or agent (``rm -rf`` of a finished demo)
    must not leave them running for hours on an unlinked database, nor let them recreate a
    half-empty folder at that path. Identity (device and inode) is compared, not just the
    path: a folder made again at the same place (``helm demo --reset``) is another campaign.
    One ``stat`` every ``every_s`` seconds at most, so a loop may ask on every step.
    """

    def __init__(self, root: Path, *, every_s: float = 2.0) -> None:
        self.root = root
        self.every_s = every_s
        st = root.stat()
        self._identity = (st.st_dev, st.st_ino)
        self._next = time.monotonic() + every_s
        self._gone = False

    def gone(self) -> bool:
        if self._gone:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every_s
        try:
            st = self.root.stat()
        except OSError:
            self._gone = True
        else:
            self._gone = (st.st_dev, st.st_ino) != self._identity
        return self._gone


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
    try:
        tmp.write_text(text)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a half-written temp file holds space a full disk needs
        raise
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
        self._started: list[Service] = []
        self._state_fault = FaultStreak(self.log, "writing daemon.json")
        self._pid_error: OSError | None = None
        self._root = RootWatch(ws.root, every_s=heartbeat_s)

    def acquire(self) -> bool:
        self._lock_fh = open(self.paths.lock, "a+")  # noqa: SIM115  (held for the lifetime)
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            return False
        try:
            _atomic_write(self.paths.pid, f"{os.getpid()}\n")
        except OSError as exc:  # informative only (the lock is what counts): say so in run()
            self._pid_error = exc
        return True

    def _write_state(self, status: str) -> None:
        if self._root.gone():  # writing would make the deleted folder again
            return
        state = {
            "pid": os.getpid(),
            "status": status,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            "services": [s.name for s in self.services],
        }
        try:
            _atomic_write(self.paths.state, json.dumps(state))
        except OSError as exc:  # a full or read-only workspace: keep running, try next beat
            self._state_fault.failed(write_fault(exc) or str(exc))
        else:
            self._state_fault.ok()

    async def _service_loop(self, service: Service) -> None:
        """Start the service (again, until it works), then tick it until asked to stop."""
        fault = FaultStreak(self.log, f"service {service.name}")
        while not self._stop.is_set():
            starting = service not in self._started
            try:
                if starting:
                    await service.start()
                    self._started.append(service)
                else:
                    await service.tick()
            except Exception as exc:
                reason = write_fault(exc)
                if reason is not None:  # the disk: no traceback per tick, one line per streak
                    fault.failed(reason)
                else:
                    self.log.exception(
                        "service %s: %s failed", service.name, "start" if starting else "tick"
                    )
            else:
                fault.ok()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), service.interval_s)

    async def _open_store(self) -> bool:
        """Create or migrate the store before any service touches it; while the disk is full,
        wait (False: asked to stop first)."""
        fault = FaultStreak(self.log, "opening the store")
        while not self._stop.is_set():
            try:
                self.ws.store  # noqa: B018
            except Exception as exc:
                reason = write_fault(exc)
                if reason is None:
                    raise
                fault.failed(reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)
                continue
            fault.ok()
            return True
        return False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stop.set)
        if self._pid_error is not None:
            self.log.warning("could not write %s: %s", self.paths.pid, self._pid_error)
        if not await self._open_store():
            return
        self.services = load_services(self.ws, self.log)
        for s in self.services:
            try:
                await s.start()
            except Exception:  # its loop starts it again next interval
                self.log.exception("service %s: start failed", s.name)
            else:
                self._started.append(s)
        self._write_state("running")
        self.log.info(
            "daemon running (pid %d), services: %s", os.getpid(), [s.name for s in self._started]
        )
        tasks = [asyncio.create_task(self._service_loop(s)) for s in self.services]
        while not self._stop.is_set():
            if self._root.gone():  # nothing left to serve, and nowhere to record it
                self.log.warning("workspace %s is gone: stopping", self.ws.root)
                self._stop.set()
                break
            self._write_state("running")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)
        self.log.info("stopping")
        self._write_state("stopping")
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in reversed(self._started):
            try:
                await s.stop()
            except Exception:
                self.log.exception("service %s: stop failed", s.name)
        self._write_state("stopped")
        with contextlib.suppress(OSError):
            if not self._root.gone():
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
