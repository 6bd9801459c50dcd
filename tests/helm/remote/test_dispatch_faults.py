"""What a network and a crash can do, against a real sshd: connections cut and silently
dead while a log streams, the daemon SIGKILLed and restarted, a box gone dark for longer
than the timeout, and host keys nobody trusted."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
from dispatch_helpers import (
    FAST,
    CutProxy,
    Dispatcher,
    add_local_host,
    add_ssh_host,
    job_row,
    new_run,
    read_log,
    run_row,
    trust,
    wait_state,
    wait_until,
)

from helm import daemon
from helm.remote.jobs import submit_job
from helm.remote.loopback import LoopbackSshd
from helm.workspace import Workspace

# Numbered lines at a steady pace: any lost or repeated byte shows in the comparison.
LINES = """
import sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else {n}
for i in range(n):
    print(f"line {{i:05d}} " + "x" * 40, flush=True)
    time.sleep({pause})
"""


def expected(n: int) -> str:
    return "".join(f"line {i:05d} " + "x" * 40 + "\n" for i in range(n))


def _submit(ws: Workspace, body: str, **kw) -> int:
    kw.setdefault("time_limit_s", 120)
    job = submit_job(ws, ws.store, {"train_gpt.py": body}, **kw)
    assert job.id is not None
    return job.id


async def test_connection_cut_while_streaming_loses_and_repeats_nothing(
    ws: Workspace, sshd: LoopbackSshd, proxy: CutProxy
) -> None:
    trust(ws, sshd, port=proxy.port)
    add_ssh_host(ws, sshd, port=proxy.port, gpus=1, python=sys.executable)
    job_id = _submit(ws, LINES.format(n=400, pause=0.008))
    async with Dispatcher(ws) as d:
        await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        for _ in range(3):
            await asyncio.sleep(0.5)
            proxy.cut()
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60)
        box = d.svc.boxes["box"][1]
        assert box.connects >= 3  # it really did reconnect
    assert job.state == "succeeded", job.error
    assert read_log(ws, job_id) == expected(400)
    assert job.log_offset == len(expected(400))


async def test_dead_peer_is_detected_by_keepalive(
    ws: Workspace, sshd: LoopbackSshd, proxy: CutProxy
) -> None:
    trust(ws, sshd, port=proxy.port)
    add_ssh_host(ws, sshd, port=proxy.port, gpus=1, python=sys.executable)
    job_id = _submit(ws, LINES.format(n=250, pause=0.01))
    settings = dataclasses.replace(FAST, keepalive_s=0.3)
    async with Dispatcher(ws, settings) as d:
        await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        proxy.freeze()  # no reset, no FIN: only keep-alives can tell
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60)
        assert d.svc.boxes["box"][1].connects >= 2
    assert job.state == "succeeded", job.error
    assert read_log(ws, job_id) == expected(250)


async def test_unreachable_box_past_timeout_is_lost_and_requeued_elsewhere(
    ws: Workspace, sshd: LoopbackSshd, proxy: CutProxy
) -> None:
    trust(ws, sshd, port=proxy.port)
    add_ssh_host(ws, sshd, "far", port=proxy.port, gpus=1, python=sys.executable)
    body = (
        "import os, time\n"
        "print('try', os.path.basename(os.getcwd()), flush=True)\n"
        "time.sleep(0.2 if os.getcwd().endswith('.2') else 8)\n"
        "print('final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.5', flush=True)\n"
    )
    run_id = new_run(ws, description="x")
    job_id = _submit(ws, body, run_id=run_id)
    async with Dispatcher(ws):
        await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        add_local_host(ws, "near", gpus=1)
        await proxy.stop()
        t0 = time.monotonic()
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=30)
        assert time.monotonic() - t0 >= FAST.lost_after_s - 0.5
    assert job.state == "succeeded" and job.host == "near" and job.attempts == 2
    assert read_log(ws, job_id).startswith(f"try {job_id}.2\n")
    assert (ws.job_dir(job_id) / "train.try1.log").read_text() == f"try {job_id}\n"
    run = run_row(ws, run_id)
    assert run["status"] == "done" and run["host"] == "near" and run["val_bpb"] == 1.5


@pytest.mark.slow
def test_daemon_sigkilled_and_restarted_reattaches(ws: Workspace, sshd: LoopbackSshd) -> None:
    ws.config_path.write_text(
        "[remote]\n"
        + "".join(
            f"{k} = {getattr(FAST, k)}\n"
            for k in ("tick_s", "log_poll_s", "done_poll_s", "alive_every_s", "retry_s")
        )
        + "check_every_s = 0\n"
    )
    trust(ws, sshd)
    add_ssh_host(ws, sshd, gpus=2, python=sys.executable)
    n = 500
    run_ids = [new_run(ws, description="survives") for _ in range(2)]
    body = LINES.format(n=n, pause=0.008) + (
        "print('final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.4', flush=True)\n"
    )
    jobs = [_submit(ws, body, run_id=r) for r in run_ids]
    pid, _ = daemon.start_detached(ws)
    try:
        asyncio.run(_both_streaming(ws, jobs))
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while daemon.is_running(ws) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the jobs keep writing while nobody watches
        pid, started = daemon.start_detached(ws)
        assert started
        for job_id in jobs:
            job = asyncio.run(wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60))
            assert job.state == "succeeded", job.error
            assert job.attempts == 1  # reattached, not rerun
            assert read_log(ws, job_id) == expected(n) + (
                "final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.4\n"
            )
        assert all(run_row(ws, r)["status"] == "done" for r in run_ids)
    finally:
        daemon.stop(ws)


async def _both_streaming(ws: Workspace, jobs: list[int]) -> None:
    for job_id in jobs:
        await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)


def _fingerprint(sshd: LoopbackSshd) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.root / "host_ed25519.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]  # SHA256:...


def test_unknown_host_key_is_refused_then_trusted(ws: Workspace, sshd: LoopbackSshd, helm) -> None:
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable)
    res = helm("host", "check", "box")
    assert res.code == 1
    assert "unknown host key" in res.err and _fingerprint(sshd) in res.err
    assert "helm host trust box" in res.err

    res = helm("host", "trust", "box")  # not a terminal: refuses to decide for the user
    assert res.code == 1 and "--yes" in res.err
    res = helm("host", "trust", "box", "--yes")
    assert res.code == 0 and _fingerprint(sshd) in res.out
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in ws.known_hosts_path.read_text()
    res = helm("host", "check", "box", "--json")
    assert res.code == 0, res.err
    assert res.json()["reachable"] is True and res.json()["gpus"] == []


def test_changed_host_key_is_refused(ws: Workspace, sshd: LoopbackSshd, helm) -> None:
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIKNbHJ+b5+q20ey55O2bDYDMDQQsKy2xnGWvUQhnWiuK"
    ws.known_hosts_path.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    add_ssh_host(ws, sshd, gpus=1)
    res = helm("host", "check", "box")
    assert res.code == 1 and "CHANGED host key" in res.err and _fingerprint(sshd) in res.err


async def test_untrusted_host_gets_no_jobs(ws: Workspace, sshd: LoopbackSshd) -> None:
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable)
    job_id = _submit(ws, "print('hi')\n")
    async with Dispatcher(ws):
        await asyncio.sleep(1.0)
        assert job_row(ws, job_id).state == "queued"
        trust(ws, sshd)
        # the refused connection is retried after its backoff, now with the trusted key
        job = await wait_state(ws, job_id, "succeeded", "failed", timeout=60)
    assert job.state == "succeeded" and read_log(ws, job_id) == "hi\n"
