"""Jobs on a real Slurm cluster (slurmctld + slurmd on this machine, GPUs as GRES counts):
submitted with sbatch, pending with Slurm's reason, running, completed, streamed and scored;
cancelled with scancel; more jobs than GPUs; from this machine and through a login node over
the loopback sshd. The synthetic jobs print numbered lines, so a lost or repeated line shows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from dispatch_helpers import Dispatcher, job_row, new_run, read_log, run_row, wait_state, wait_until
from slurm_helpers import (
    LINES,
    SLURM_FAST,
    add_slurm_host,
    events,
    expected,
    slurm_state,
    wait_idle,
)

from helm.remote.jobs import request_cancel, submit_job
from helm.remote.loopback import LoopbackSshd
from helm.remote.slurmlab import LocalSlurm
from helm.workspace import Workspace

# Numbered lines like LINES, but holding after ``hold_at`` lines until a file "go" appears in
# the job's folder (the shared filesystem: the test creates it).
HOLD = """
import os, time
for i in range({n}):
    while i == {hold_at} and not os.path.exists("go"):
        time.sleep(0.05)
    print(f"line {{i:05d}} " + "x" * 40, flush=True)
    time.sleep({pause})
print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.40000000", flush=True)
"""


def _submit(ws: Workspace, body: str, **kw) -> int:
    kw.setdefault("time_limit_s", 120)
    job = submit_job(ws, ws.store, {"train_gpt.py": body}, **kw)
    assert job.id is not None
    return job.id


@pytest.fixture(params=["here", "login-node"])
def cluster_ws(request: pytest.FixtureRequest, ws: Workspace, slurm_here: LocalSlurm) -> Workspace:
    """A workspace with a Slurm host ``cluster``: commands here, or over SSH on a login node."""
    wait_idle(slurm_here)
    sshd: LoopbackSshd | None = None
    if request.param == "login-node":
        sshd = request.getfixturevalue("slurm_sshd")
    add_slurm_host(ws, slurm_here, sshd=sshd)
    return ws


async def test_pending_running_completed_streamed_and_scored(
    cluster_ws: Workspace, slurm_lab: LocalSlurm
) -> None:
    ws, lab = cluster_ws, slurm_lab
    blocker_run, waiter_run = new_run(ws, description="2 GPUs"), new_run(ws, description="1")
    n = 150
    async with Dispatcher(ws, SLURM_FAST):
        # the blocker holds both GPUs until the test has seen the second job wait (a loaded
        # machine must not let it finish first), then prints the rest
        blocker = _submit(ws, HOLD.format(n=n, hold_at=50, pause=0.01), gpus=2, run_id=blocker_run)
        running = await wait_state(ws, blocker, "running", timeout=30)
        waiter = _submit(ws, LINES.format(n=20, pause=0.01), gpus=1, run_id=waiter_run)
        # both GPUs are the blocker's: Slurm holds the second job, and helm shows why (Slurm
        # says Priority for a moment before Resources)
        pending = await wait_until(ws, waiter, lambda j: j.queue_reason == "Resources", timeout=30)
        assert pending.state == "staging" and pending.backend_id
        assert slurm_state(lab, pending.backend_id) == "PENDING"
        assert pending.started_at is None  # no GPU-time while Slurm keeps it waiting
        assert running.remote_dir
        (Path(running.remote_dir) / "go").touch()
        for job_id in (blocker, waiter):
            done = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60)
            assert done.state == "succeeded", done.error
    assert running.backend_id and slurm_state(lab, running.backend_id) == "COMPLETED"
    assert read_log(ws, blocker) == expected(n)
    assert read_log(ws, waiter) == expected(20)
    for run_id in (blocker_run, waiter_run):
        run = run_row(ws, run_id)
        assert run["status"] == "done" and run["val_bpb"] == pytest.approx(1.4)
        assert run["host"] == "cluster"
    waited = job_row(ws, waiter)
    assert waited.queue_reason is None and waited.started_at is not None
    history = events(ws, waiter)
    assert any(f"submitted as Slurm job {waited.backend_id}" in e for e in history), history
    assert any(f"Slurm job {waited.backend_id} started" in e for e in history), history


async def test_cancel_goes_through_scancel(cluster_ws: Workspace, slurm_lab: LocalSlurm) -> None:
    ws = cluster_ws
    run_id = new_run(ws, description="to cancel")
    async with Dispatcher(ws, SLURM_FAST):
        job_id = _submit(ws, LINES.format(n=2000, pause=0.05), run_id=run_id)
        job = await wait_until(  # five lines streamed before the cancel
            ws, job_id, lambda j: j.state == "running" and j.log_offset >= 5 * 51
        )
        request_cancel(ws, job_id)
        done = await wait_state(ws, job_id, "cancelled", "failed", "succeeded", timeout=30)
    assert done.state == "cancelled", done.error
    assert job.backend_id and slurm_state(slurm_lab, job.backend_id) == "CANCELLED"
    assert run_row(ws, run_id)["status"] == "cancelled"
    log = read_log(ws, job_id).removesuffix("Terminated\n")  # the wrapper's shell says so
    assert log.count("\n") >= 5 and expected(2000).startswith(log)  # each line once, in order


async def test_more_jobs_than_gpus_wait_in_helm_and_slurm_and_all_finish(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here, max_submitted=3)
    jobs = [_submit(ws, LINES.format(n=15, pause=0.02), gpus=1) for _ in range(7)]
    most_submitted = 0
    async with Dispatcher(ws, SLURM_FAST):
        pending = set(jobs)
        while pending:
            rows = [job_row(ws, j) for j in jobs]
            submitted = [r for r in rows if r.state in ("staging", "running")]
            most_submitted = max(most_submitted, len(submitted))
            assert len(submitted) <= 3  # helm keeps the rest: its priorities still act
            assert all(r.state != "failed" for r in rows), [r.error for r in rows]
            pending = {r.id for r in rows if r.state not in ("succeeded", "failed", "lost")}
            await asyncio.sleep(0.1)
    assert most_submitted == 3
    for job_id in jobs:
        assert job_row(ws, job_id).state == "succeeded"
        assert read_log(ws, job_id) == expected(15)


async def test_cancel_while_slurm_holds_it_leaves_no_environment_behind(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    """A try cancelled before Slurm started it never ran its wrapper, which is what deletes
    ``helm.env``: helm deletes it, so no secret stays on the shared filesystem."""
    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here)
    async with Dispatcher(ws, SLURM_FAST):
        # holds both GPUs until cancelled below, however slow the machine
        blocker = _submit(ws, HOLD.format(n=300, hold_at=5, pause=0.02), gpus=2)
        await wait_state(ws, blocker, "running")
        held = submit_job(
            ws, ws.store, {"train_gpt.py": LINES.format(n=5, pause=0.01)},
            env={"HF_TOKEN": "hf_never_on_disk_after"}, time_limit_s=60,
        )  # fmt: skip
        assert held.id is not None
        waiting = await wait_until(ws, held.id, lambda j: j.queue_reason is not None)
        assert waiting.remote_dir and (Path(waiting.remote_dir) / "helm.env").exists()
        request_cancel(ws, held.id)
        done = await wait_state(ws, held.id, "cancelled", "failed", "succeeded", timeout=30)
        request_cancel(ws, blocker)
        await wait_state(ws, blocker, "cancelled", "failed", "succeeded", timeout=30)
    assert done.state == "cancelled", done.error
    assert done.started_at is None  # it never held a GPU
    assert waiting.backend_id and slurm_state(slurm_here, waiting.backend_id) == "CANCELLED"
    folder = Path(waiting.remote_dir)
    assert not (folder / "helm.env").exists()
    assert all(
        b"hf_never_on_disk_after" not in p.read_bytes() for p in folder.rglob("*") if p.is_file()
    )


async def test_helms_time_limit_cancels_the_slurm_job(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here)
    run_id = new_run(ws, description="too long")
    async with Dispatcher(ws, SLURM_FAST):
        job_id = _submit(ws, LINES.format(n=3000, pause=0.02), time_limit_s=2, run_id=run_id)
        done = await wait_state(ws, job_id, "failed", "succeeded", "cancelled", timeout=30)
    assert done.state == "failed" and done.error == "time limit of 2s exceeded", done.error
    assert done.backend_id and slurm_state(slurm_here, done.backend_id) == "CANCELLED"
    assert run_row(ws, run_id)["status"] == "crash"
