"""Helpers for dispatch tests: hosts on the loopback sshd, an in-process dispatcher with
short timeouts, waiting on job states, and a TCP proxy whose connections can be cut."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helm.models import runs
from helm.models.db import Row
from helm.models.job_life import load_job
from helm.models.tables import Job
from helm.remote.hosts import add_host
from helm.remote.loopback import LoopbackSshd
from helm.remote.service import DispatchService
from helm.remote.settings import RemoteSettings
from helm.workspace import Workspace

FAST = RemoteSettings(
    tick_s=0.05,
    log_poll_s=0.1,
    done_poll_s=0.05,
    alive_every_s=0.3,
    cancel_grace_s=1.0,
    lost_after_s=3.0,
    retry_s=0.2,
    check_every_s=0,
    heartbeat_s=1.0,
    agent_gpu_share=1.0,
)


def trust(ws: Workspace, sshd: LoopbackSshd, port: int | None = None) -> None:
    """Record sshd's host key (for ``port``, when reached through a proxy) as trusted."""
    line = sshd.known_hosts_line()
    if port is not None:
        line = line.replace(f"[127.0.0.1]:{sshd.port}", f"[127.0.0.1]:{port}")
    with ws.known_hosts_path.open("a") as fh:
        fh.write(line)


def add_ssh_host(
    ws: Workspace, sshd: LoopbackSshd, name: str = "box", *, port: int | None = None, **kw
) -> None:
    kw.setdefault("workdir", str(ws.root / "remote" / name))
    with ws.store.write() as s:
        add_host(
            ws,
            s,
            name,
            ssh=f"{sshd.user}@127.0.0.1:{port or sshd.port}",
            identity=str(sshd.user_key),
            **kw,
        )


def add_local_host(ws: Workspace, name: str = "box", **kw) -> None:
    with ws.store.write() as s:
        add_host(ws, s, name, local=True, **kw)


class Dispatcher:
    """The daemon's dispatch service, ticking inside the test's event loop."""

    def __init__(self, ws: Workspace, settings: RemoteSettings = FAST) -> None:
        self.ws = ws
        self.svc = DispatchService(ws, settings=settings)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Dispatcher:
        await self.svc.start()
        self._task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            await self.svc.tick()
            await asyncio.sleep(self.svc.interval_s)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.svc.stop()


def job_row(ws: Workspace, job_id: int) -> Job:
    with ws.store.read() as s:
        return load_job(s, job_id)


def new_run(ws: Workspace, **fields: Any) -> int:
    """A queued run for a job to report to; returns its id."""
    with ws.db(write=True) as db:
        return runs.insert_run(db, **fields)


def run_row(ws: Workspace, run_id: int) -> Row:
    with ws.db(write=False) as db:
        return runs.get_run(db, run_id)


async def wait_until(
    ws: Workspace, job_id: int, pred: Callable[[Job], bool], timeout: float = 30.0
) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = job_row(ws, job_id)
        if pred(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} timed out in state {job.state}: {job.error}")
        await asyncio.sleep(0.05)


async def wait_state(ws: Workspace, job_id: int, *states: str, timeout: float = 30.0) -> Job:
    return await wait_until(ws, job_id, lambda j: j.state in states, timeout)


def read_log(ws: Workspace, job_id: int) -> str:
    path = Path(ws.job_dir(job_id) / "train.log")
    return path.read_text() if path.exists() else ""


class CutProxy:
    """A TCP forwarder to sshd whose live connections can be cut (a network drop)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.frozen: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> CutProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    if w in self.frozen:
                        continue  # a black hole: nothing arrives, nothing is reset
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def freeze(self) -> None:
        """Silently drop everything on the live connections (a dead peer, no RST)."""
        self.frozen.update(self.writers)

    def cut(self) -> None:
        """Abort every live connection (both sides see a reset)."""
        for w in self.writers:
            with contextlib.suppress(Exception):
                w.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        """Stop listening and cut: the box is now unreachable."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        self.cut()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
