"""The SSH box under a dead network, against the real loopback sshd: a black-holed connection
leaves no orphaned task behind (asyncio would log "Task exception was never retrieved" in the
daemon log), a cancelled command closes its channel, and an SFTP call on a stalled peer ends
in a clear error within its timeout instead of hanging its job's watcher."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import sys
import time
from pathlib import Path

import pytest
from dispatch_helpers import (
    FAST,
    CutProxy,
    Dispatcher,
    add_ssh_host,
    read_log,
    trust,
    wait_state,
    wait_until,
)

from helm.remote.backend import BoxError
from helm.remote.jobs import submit_job
from helm.remote.loopback import LoopbackSshd
from helm.remote.ssh import SshBox
from helm.workspace import Workspace

LINES = (
    "import time\n"
    "for i in range({n}):\n"
    "    print(f'line {{i:05d}} ' + 'x' * 40, flush=True)\n"
    "    time.sleep({pause})\n"
)


def _expected(n: int) -> str:
    return "".join(f"line {i:05d} " + "x" * 40 + "\n" for i in range(n))


def _orphans(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio said about tasks and futures nobody awaited (collected first)."""
    gc.collect()
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asyncio" and "never retrieved" in r.getMessage()
    ]


def _box(sshd: LoopbackSshd, ws: Workspace, port: int, **kw) -> SshBox:
    return SshBox(
        "box",
        host="127.0.0.1",
        port=port,
        username=sshd.user,
        identity=str(sshd.user_key),
        known_hosts_file=ws.known_hosts_path,
        **kw,
    )


async def test_black_holed_connection_leaves_no_unretrieved_task(
    ws: Workspace, sshd: LoopbackSshd, proxy: CutProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Keep-alives declare the frozen peer dead mid-stream (twice); the job still streams
    byte-exact over the next connection, and asyncio has nothing to complain about."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    trust(ws, sshd, port=proxy.port)
    add_ssh_host(ws, sshd, port=proxy.port, gpus=1, python=sys.executable)
    n = 300
    job = submit_job(ws, ws.store, {"train_gpt.py": LINES.format(n=n, pause=0.01)})
    assert job.id is not None
    settings = dataclasses.replace(FAST, keepalive_s=0.3, sftp_timeout_s=0.8)
    async with Dispatcher(ws, settings) as d:
        await wait_until(ws, job.id, lambda j: j.state == "running" and j.log_offset > 0)
        for _ in range(2):
            connects = d.svc.boxes["box"][1].connects
            proxy.freeze()  # no reset, no FIN: only keep-alives and timeouts can tell
            deadline = time.monotonic() + 20
            while d.svc.boxes["box"][1].connects == connects:
                assert time.monotonic() < deadline, "never reconnected"
                await asyncio.sleep(0.05)
        done = await wait_state(ws, job.id, "succeeded", "failed", "lost", timeout=60)
    assert done.state == "succeeded", done.error
    assert read_log(ws, job.id) == _expected(n)
    await asyncio.sleep(0.2)  # let the aborted transports finish closing
    assert _orphans(caplog) == []


def _sleepers(tag: str) -> list[str]:
    """Processes on this machine (the loopback box) still running ``sleep <tag>``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", tag.encode()]:
            found.append(proc.name)
    return found


async def test_cancelled_run_closes_its_channel(ws: Workspace, sshd: LoopbackSshd) -> None:
    """The caller gave up (a timeout, a daemon stopping): the command is killed on the box and
    its channel closed, while the connection and the other shells carry on."""
    trust(ws, sshd)
    box = _box(sshd, ws, sshd.port)
    tag = "23.125"
    try:
        assert (await box.run("echo warm")).stdout == "warm\n"  # one idle shell, reused below
        conn = box._conn
        assert conn is not None
        before = len(conn._channels)
        task = asyncio.create_task(box.run(f"sleep {tag}"))
        deadline = time.monotonic() + 5
        while not _sleepers(tag):
            assert time.monotonic() < deadline, "the command never started"
            await asyncio.sleep(0.05)
        assert len(conn._channels) == before  # the idle shell took the command
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 5
        while (len(conn._channels) != before - 1 or _sleepers(tag)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(conn._channels) == before - 1  # that shell's channel is closed, not leaked
        assert _sleepers(tag) == []  # and its command did not run on unattended
        assert box._idle_shells == []  # nor was the shell handed to the next command
        res = await box.run("echo after")
        assert res.ok and res.stdout == "after\n"
        assert box._conn is conn  # the connection itself was fine and is kept
    finally:
        await box.close()


async def test_sftp_call_on_a_stalled_peer_times_out(
    ws: Workspace, sshd: LoopbackSshd, proxy: CutProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Keep-alives are slow here (60 s), so only the SFTP timeout can end the call."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    trust(ws, sshd, port=proxy.port)
    box = _box(sshd, ws, proxy.port, keepalive_s=60.0, sftp_timeout_s=0.5)
    log = ws.root / "grow.log"
    log.write_bytes(b"y" * 300_000)  # several SFTP read requests in flight at once
    calls = {
        "read": lambda: box.read_from(str(log), 0, 1 << 20, keep_open=True),
        "stat": lambda: box.size(str(log)),
        "listdir": lambda: box.listdir(str(ws.root)),
        "write": lambda: box.write_bytes(str(ws.root / "w.bin"), b"z" * 100_000),
    }
    try:
        for name, call in calls.items():
            assert (await box.run("echo up")).ok  # connected (again) through the proxy
            assert await box.read_from(str(log), 0, 1 << 20, keep_open=True) == b"y" * 300_000
            proxy.freeze()
            t0 = time.monotonic()
            with pytest.raises(BoxError, match="timed out after 0.5s"):
                await asyncio.wait_for(call(), 10)  # the outer bound only turns a hang into a fail
            assert time.monotonic() - t0 < 3, name
            assert not box.connected, name  # the stalled connection is dropped; the next reconnects
    finally:
        await proxy.stop()
        await box.close()
    await asyncio.sleep(0.2)
    assert _orphans(caplog) == []
