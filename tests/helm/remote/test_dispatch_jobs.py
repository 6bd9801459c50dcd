"""A job's whole life on each backend (this machine, and a real sshd on 127.0.0.1):
upload, launch, stream, exit code, artifacts, result on the run, cancel, time limit, and a
process that vanishes without an exit code (lost, requeued, then given up on).

The records these write (job, run, events) are checked on both store engines; the SSH
variants run on SQLite only (the store writes are the same, see conftest)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from dispatch_helpers import (
    Dispatcher,
    job_row,
    new_run,
    read_log,
    run_row,
    wait_state,
    wait_until,
)

from helm.models.hosts import delete_host, edit_host
from helm.models.jobs import job_events
from helm.remote.jobs import request_cancel, submit_job
from helm.workspace import Workspace

pytestmark = pytest.mark.engines

OK_BODY = """
import json, os, time
os.makedirs("logs", exist_ok=True)
rid = os.environ["RUN_ID"]
keys = ["RUN_ID", "SEED", "CUDA_VISIBLE_DEVICES", "DATA_PATH", "TOKENIZER_PATH", "NASTY",
        "HF_TOKEN", "HOSTVAR", "HELM_JOB_ID", "HELM_NPROC"]
open(f"logs/{rid}.txt", "w").write(json.dumps({k: os.environ.get(k) for k in keys}))
open(f"logs/{rid}.ptz", "wb").write(b"\\x00model")
for i in range(1, 21):
    print(f"step:{i}/20 train_loss:{4 - i * 0.1:.4f} train_time:{i * 10}ms step_avg:10.00ms",
          flush=True)
    time.sleep(0.02)
print("Total submission size int8+zlib: 12345 bytes")
print("final_int8_zlib_roundtrip_exact val_loss:2.10000000 val_bpb:1.25000000")
"""


def _run(ws: Workspace) -> int:
    return new_run(ws, agent="a1", description="test")


def _submit(ws: Workspace, body: str, **kw) -> int:
    kw.setdefault("time_limit_s", 60)
    job = submit_job(ws, ws.store, {"train_gpt.py": body}, **kw)
    assert job.id is not None
    return job.id


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def test_job_runs_streams_and_records_its_result(backend_ws: Workspace) -> None:
    ws = backend_ws
    canary = ws.root / "canary"
    nasty = f"$(touch {canary}); `touch {canary}` ' \" \\ ;| & \n > {canary}"
    with ws.db(write=True) as db:
        edit_host(
            db, "box", env_json=json.dumps({"HOSTVAR": "from host"}), data_dir="/srv/golf data"
        )
    run_id = _run(ws)
    job_id = _submit(
        ws,
        OK_BODY,
        env={"NASTY": nasty, "HF_TOKEN": "hf_secret_value"},
        gpus=2,
        seed=7,
        agent="a1",
        run_id=run_id,
    )
    async with Dispatcher(ws):
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost")
        forgotten = await _forgotten(ws, "hf_secret_value")
    assert job.state == "succeeded", job.error
    assert job.exit_code == 0 and job.attempts == 1
    assert (job.step, job.total_steps, job.val_bpb) == (20, 20, 1.25)

    # the log is exactly the remote one, and the offset says so
    remote_log = Path(job.remote_dir or "") / "train.log"
    assert read_log(ws, job_id).encode() == remote_log.read_bytes()
    assert job.log_offset == len(remote_log.read_bytes())

    # artifacts fetched; the job saw its environment, nothing was executed
    art = ws.job_dir(job_id) / "artifacts"
    assert (art / f"{job_id}.ptz").read_bytes() == b"\x00model"
    assert (art / "helm.exit").read_text().strip() == "0"
    seen = json.loads((art / f"{job_id}.txt").read_text())
    assert seen == {
        "RUN_ID": str(job_id),
        "SEED": "7",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "DATA_PATH": "/srv/golf data/datasets/fineweb10B_sp8192",
        "TOKENIZER_PATH": "/srv/golf data/tokenizers/fineweb_8192_bpe.model",
        "NASTY": nasty,
        "HF_TOKEN": "hf_secret_value",
        "HOSTVAR": "from host",
        "HELM_JOB_ID": str(job_id),
        "HELM_NPROC": "2",
    }
    assert not canary.exists()

    # the secret reached the job but is nowhere in the store, and is forgotten afterwards
    if not os.environ.get("HELM_DB_URL"):  # the SQLite file (PostgreSQL: the row, below)
        assert b"hf_secret_value" not in (ws.root / "helm.db").read_bytes()
    assert forgotten
    assert json.loads(job.env_json)["HF_TOKEN"] == "***"
    assert "hf_secret_value" not in str(job.model_dump())

    run = run_row(ws, run_id)
    assert run["status"] == "done"
    assert (run["val_bpb"], run["val_loss"], run["bytes_total"], run["steps"]) == (
        1.25,
        2.1,
        12345,
        20,
    )
    assert run["host"] == "box" and run["job_id"] == job_id and run["finished_at"] is not None
    assert (run["score_line"] or "").startswith("final_int8_zlib_roundtrip_exact")
    assert [e["state"] for e in _event_rows(ws, job_id)] == ["staging", "running", "succeeded"]


async def test_failed_job_keeps_exit_code_and_tail(backend_ws: Workspace) -> None:
    ws = backend_ws
    run_id = _run(ws)
    body = "for i in range(60):\n    print(f'line {i}')\nprint('boom', flush=True)\nraise SystemExit(3)\n"
    job_id = _submit(ws, body, run_id=run_id)
    async with Dispatcher(ws):
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost")
    assert job.state == "failed" and job.exit_code == 3
    assert job.error == "exit code 3: boom"
    run = run_row(ws, run_id)
    assert run["status"] == "crash"
    tail = (run["tail"] or "").splitlines()
    assert len(tail) == 50 and tail[-1] == "boom" and tail[0] == "line 11"


async def test_cancel_kills_the_whole_process_group(backend_ws: Workspace) -> None:
    ws = backend_ws
    run_id = _run(ws)
    body = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    job_id = _submit(ws, body, run_id=run_id)
    async with Dispatcher(ws):
        job = await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        child = int((Path(job.remote_dir or "") / "child.pid").read_text())
        assert not _dead(child) and not _dead(job.pid or 0)
        request_cancel(ws, job_id)
        job = await wait_state(ws, job_id, "cancelled", "failed", "succeeded", timeout=15)
    assert job.state == "cancelled"
    assert job.exit_code == 128 + signal.SIGTERM  # the wrapper outlived TERM and said so
    assert _dead(child) and _dead(job.pid or 0)
    assert run_row(ws, run_id)["status"] == "cancelled"


async def test_time_limit_kills_and_fails(backend_ws: Workspace) -> None:
    ws = backend_ws
    job_id = _submit(ws, "import time\nprint('go', flush=True)\ntime.sleep(60)\n", time_limit_s=1)
    async with Dispatcher(ws):
        job = await wait_state(ws, job_id, "failed", "succeeded", "cancelled", timeout=20)
    assert job.state == "failed"
    assert job.error == "time limit of 1s exceeded"
    assert job.finished_at and job.started_at and job.finished_at - job.started_at < 10


async def test_term_ignored_then_killed(backend_ws: Workspace) -> None:
    ws = backend_ws
    body = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn', flush=True)\n"
        "time.sleep(60)\n"
    )
    job_id = _submit(ws, body)
    async with Dispatcher(ws):
        job = await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        request_cancel(ws, job_id)
        job = await wait_state(ws, job_id, "cancelled", "failed", timeout=15)
    assert job.state == "cancelled"
    assert _dead(job.pid or 0)
    events = _events(ws, job_id)
    assert events[-1] == "cancelled"


async def _forgotten(ws: Workspace, secret: str, timeout: float = 5.0) -> bool:
    """Whether ``secrets.json`` loses ``secret`` (dropped just after the job's final row)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while secret in (ws.root / "secrets.json").read_text():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _event_rows(ws: Workspace, job_id: int) -> list[dict]:
    with ws.db(write=False) as db:
        return job_events(db, job_id)


def _events(ws: Workspace, job_id: int) -> list[str]:
    return [e["state"] for e in _event_rows(ws, job_id)]


async def test_vanished_process_is_lost_requeued_then_given_up(backend_ws: Workspace) -> None:
    ws = backend_ws
    run_id = _run(ws)
    body = (
        "import os, time\n"
        "print('alive', os.environ.get('HF_TOKEN') == 'hf_retry', flush=True)\n"
        "time.sleep(60)\n"
    )
    job_id = _submit(ws, body, run_id=run_id, max_attempts=2, env={"HF_TOKEN": "hf_retry"})
    async with Dispatcher(ws):
        for attempt in (1, 2):
            job = await wait_until(
                ws,
                job_id,
                lambda j, a=attempt: j.state == "running" and j.attempts == a and j.log_offset > 0,
            )
            os.killpg(job.pid or 0, signal.SIGKILL)  # wrapper and job die: no exit code
        job = await wait_state(ws, job_id, "lost", timeout=15)
        forgotten = await _forgotten(ws, "hf_retry")
    assert job.attempts == 2 and "no exit code" in (job.error or "")
    assert _events(ws, job_id) == [
        "staging",
        "running",
        "lost",
        "queued",
        "staging",
        "running",
        "lost",
    ]
    # the retry still had the secret; once the job was final it was forgotten
    assert (ws.job_dir(job_id) / "train.try1.log").read_text() == "alive True\n"
    assert read_log(ws, job_id) == "alive True\n"
    assert forgotten
    run = run_row(ws, run_id)
    assert run["status"] == "crash" and run["tail"] == "alive True"


async def test_job_whose_host_row_is_gone_is_lost_and_forgets_its_secrets(ws: Workspace) -> None:
    """A host deleted behind helm's back (``helm host rm`` refuses while a job runs there):
    the next dispatcher has nothing to reconnect to and records the job lost."""
    from dispatch_helpers import add_local_host

    add_local_host(ws, gpus=1)
    body = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    job_id = _submit(ws, body, max_attempts=1, env={"HF_TOKEN": "hf_gone"})
    async with Dispatcher(ws):
        job = await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
    try:
        assert "hf_gone" in (ws.root / "secrets.json").read_text()
        with ws.db(write=True) as db:
            delete_host(db, "box")
        async with Dispatcher(ws):
            done = await wait_state(ws, job_id, "lost", "queued", timeout=10)
            forgotten = await _forgotten(ws, "hf_gone")
    finally:
        os.killpg(job.pid or 0, signal.SIGKILL)
    assert done.state == "lost" and done.error == "lost after 1 tries: host box removed"
    assert forgotten


async def test_queued_cancel_and_unplaceable_job(backend_ws: Workspace) -> None:
    ws = backend_ws
    big = _submit(ws, "print(1)\n", gpus=8)
    from dispatch_helpers import add_local_host

    add_local_host(ws, "nowhere")  # submit_job refuses an unknown host: this one goes after
    queued = _submit(ws, "print(1)\n", host="nowhere")
    with ws.db(write=True) as db:
        delete_host(db, "nowhere")
    async with Dispatcher(ws):
        await wait_until(ws, big, lambda j: bool(j.error))
        await wait_until(ws, queued, lambda j: bool(j.error))
        request_cancel(ws, queued)
    assert job_row(ws, big).state == "queued"
    assert job_row(ws, big).error == "needs 8 GPUs on one host; the largest host has 4"
    assert job_row(ws, queued).state == "cancelled"


SLOW_BODY = """
import time
print("step:1/2 train_loss:3.0000 train_time:5ms step_avg:5.00ms", flush=True)
time.sleep(1.5)
print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.30000000", flush=True)
"""


async def test_disabled_host_drains_and_survives_a_restart(ws: Workspace, helm) -> None:
    """``helm host disable``: the running job finishes (watched, even by a new dispatcher),
    no new job is placed there until ``helm host enable``."""
    from dispatch_helpers import add_local_host

    add_local_host(ws, gpus=1)
    async with Dispatcher(ws):
        first = _submit(ws, SLOW_BODY)
        await wait_state(ws, first, "running")
        res = helm("host", "disable", "box")
        assert res.code == 0 and "disabled" in res.out
    second = _submit(ws, SLOW_BODY)
    async with Dispatcher(ws):  # a restarted daemon reattaches to the disabled host's job
        done = await wait_state(ws, first, "succeeded", "failed", "lost", timeout=30)
        assert done.state == "succeeded", done.error
        await asyncio.sleep(1.0)  # several scheduling passes with a free GPU
        assert job_row(ws, second).state == "queued"
        assert "(disabled)" in helm("host", "ls").out
        assert helm("host", "enable", "box").code == 0
        assert (await wait_state(ws, second, "succeeded", "failed", timeout=30)).state == (
            "succeeded"
        )
    assert helm("host", "enable", "nope").code == 1


async def test_stray_try_of_a_lost_job_is_stopped_when_its_box_answers(
    ws: Workspace, tmp_path: Path
) -> None:
    """A try declared lost (its box was unreachable past ``lost_after_s``) may still run when
    the box comes back, on GPUs the scheduler has given away: the reaper stops it, and only
    it (the retry keeps running)."""
    from dataclasses import replace

    from dispatch_helpers import FAST, add_local_host

    from helm.models import job_queue

    add_local_host(ws, gpus=1)
    release = tmp_path / "release"
    body = (
        "import os, time\n"
        f"while not os.path.exists({str(release)!r}):\n"
        "    time.sleep(0.05)\n"
        'print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.30000000")\n'
    )
    job_id = _submit(ws, body)
    try:
        async with Dispatcher(ws):
            first = await wait_state(ws, job_id, "running")
        assert first.pid is not None and not _dead(first.pid)
        # what the dispatcher records when the box stays dark past lost_after_s
        job_queue.lost(ws.store, ws.jobs_dir, job_id, "host box unreachable for 300s")
        reaping = replace(FAST, reap_every_s=0.2, reap_min_age_s=0)
        async with Dispatcher(ws, reaping):
            retry = await wait_until(
                ws, job_id, lambda j: j.state == "running" and j.pid != first.pid
            )
            await wait_until(ws, job_id, lambda j: _dead(first.pid), timeout=15)
            assert not _dead(retry.pid)  # the retry is the job helm expects: left alone
            release.write_text("go")
            done = await wait_state(ws, job_id, "succeeded", "failed", timeout=30)
        assert done.state == "succeeded" and done.attempts == 2
    finally:
        release.write_text("go")  # never leave a try waiting forever, pass or fail
