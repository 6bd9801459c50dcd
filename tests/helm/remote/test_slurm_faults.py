"""What a cluster can do to a job, on the real test cluster: Slurm requeues it, its node goes
down, the daemon is SIGKILLed while jobs run and wait there; and what an operator can get
wrong: an unknown partition, no sbatch on the login node, more nodes than the partition has.
Every numbered line of every try is accounted for: none lost, none repeated."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
from dispatch_helpers import Dispatcher, job_row, new_run, read_log, run_row, wait_state, wait_until
from slurm_helpers import (
    LINES,
    SLURM_FAST,
    add_slurm_host,
    events,
    expected,
    path_without_sbatch,
    slurm_state,
    wait_idle,
    wait_slurm,
)

from helm import daemon
from helm.models.hosts import edit_host
from helm.models.job_life import load_host
from helm.remote.jobs import submit_job
from helm.remote.loopback import LoopbackSshd
from helm.remote.slurm_conf import SlurmSettings
from helm.remote.slurmlab import PARTITION, LocalSlurm
from helm.workspace import Workspace


def _submit(ws: Workspace, body: str, **kw) -> int:
    kw.setdefault("time_limit_s", 120)
    job = submit_job(ws, ws.store, {"train_gpt.py": body}, **kw)
    assert job.id is not None
    return job.id


def _first_try_log(ws: Workspace, job_id: int) -> str:
    return (Path(ws.job_dir(job_id)) / "train.try1.log").read_text()


async def _lines_streamed(ws: Workspace, job_id: int, n: int = 20) -> str:
    job = await wait_until(
        ws, job_id, lambda j: j.state == "running" and j.log_offset > 51 * n, timeout=30
    )
    assert job.backend_id
    return job.backend_id


@pytest.mark.parametrize("how", ["scontrol requeue", "node down"])
async def test_slurm_requeue_or_dead_node_is_a_fresh_try(
    ws: Workspace, slurm_here: LocalSlurm, how: str
) -> None:
    lab = slurm_here
    wait_idle(lab)
    add_slurm_host(ws, lab)
    n = 300
    run_id = new_run(ws, description=how)
    try:
        async with Dispatcher(ws, SLURM_FAST):
            job_id = _submit(ws, LINES.format(n=n, pause=0.02), run_id=run_id)
            first = await _lines_streamed(ws, job_id)
            if how == "node down":
                lab.down_node()
            else:
                lab.command("scontrol", "requeue", first)
            again = await wait_until(ws, job_id, lambda j: j.attempts == 2, timeout=30)
            if how == "node down":
                lab.resume_node()
            done = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60)
    finally:
        lab.resume_node()
    assert done.state == "succeeded", done.error
    assert again.backend_id != first  # a fresh submission in a fresh folder ...
    assert done.remote_dir and done.remote_dir.endswith(f"/jobs/{job_id}.2")
    assert slurm_state(lab, first) == "CANCELLED"  # ... and Slurm's own rerun was cancelled
    history = events(ws, job_id)
    lost = [e for e in history if e.startswith("lost:")]
    assert len(lost) == 1 and "fresh try" in lost[0], history
    tried = _first_try_log(ws, job_id).removesuffix("Terminated\n")
    assert tried.count("\n") >= 20 and expected(n).startswith(tried)  # each line once
    assert read_log(ws, job_id) == expected(n)  # the fresh try, whole
    assert run_row(ws, run_id)["status"] == "done"


@pytest.mark.slow
def test_daemon_sigkilled_while_slurm_jobs_run_and_wait_adopts_them(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    lab = slurm_here
    wait_idle(lab)
    fast = {k: getattr(SLURM_FAST, k) for k in ("tick_s", "log_poll_s", "done_poll_s")}
    fast |= {"retry_s": 0.2, "slurm_poll_s": 0.3, "check_every_s": 0}
    ws.config_path.write_text("[remote]\n" + "".join(f"{k} = {v}\n" for k, v in fast.items()))
    add_slurm_host(ws, lab)
    n = 250
    jobs = [_submit(ws, LINES.format(n=n, pause=0.02), gpus=1) for _ in range(3)]
    pid, _ = daemon.start_detached(ws)
    try:
        asyncio.run(_two_running_one_waiting(ws, jobs))
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while daemon.is_running(ws) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the jobs run on in Slurm while nobody watches
        pid, started = daemon.start_detached(ws)
        assert started
        for job_id in jobs:
            job = asyncio.run(wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60))
            assert job.state == "succeeded", job.error
            assert job.attempts == 1  # adopted, never resubmitted
            assert read_log(ws, job_id) == expected(n)
            assert sum("submitted as Slurm job" in e for e in events(ws, job_id)) == 1
    finally:
        daemon.stop(ws)


async def _two_running_one_waiting(ws: Workspace, jobs: list[int]) -> None:
    deadline = time.monotonic() + 30
    while True:
        rows = [job_row(ws, j) for j in jobs]
        running = [r for r in rows if r.state == "running" and r.log_offset > 0]
        waiting = [r for r in rows if r.state == "staging" and r.queue_reason]
        if len(running) == 2 and len(waiting) == 1:
            return
        assert time.monotonic() < deadline, [(r.state, r.queue_reason) for r in rows]
        await asyncio.sleep(0.05)


async def test_unknown_partition_pauses_the_host_and_loses_no_job(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here, partition="nope")
    settings = dataclasses.replace(SLURM_FAST, slurm_pause_s=1.0)
    async with Dispatcher(ws, settings):
        job_id = _submit(ws, LINES.format(n=5, pause=0.01))
        waiting = await wait_until(ws, job_id, lambda j: bool(j.error), timeout=30)
        assert waiting.state == "queued" and waiting.attempts == 0  # not a try, not failed
        assert waiting.error is not None and "\n" not in waiting.error
        assert waiting.error.startswith("host cluster: ")
        assert "nope" in waiting.error and "partition" in waiting.error.lower()
        with ws.db(write=True) as db:  # the operator fixes the host: the job runs
            edit_host(db, "cluster", slurm_json=SlurmSettings(PARTITION, gpus_per_node=2).to_json())
        done = await wait_state(ws, job_id, "succeeded", "failed", timeout=30)
    assert done.state == "succeeded", done.error
    assert read_log(ws, job_id) == expected(5)


@pytest.mark.parametrize("where", ["here", "login-node"])
async def test_no_sbatch_on_the_login_node_is_one_clear_line(
    ws: Workspace,
    slurm_here: LocalSlurm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    bare = path_without_sbatch(tmp_path)
    sshd = None
    if where == "login-node":  # a login node whose shells find no Slurm commands
        sshd = LoopbackSshd.start(tmp_path / "sshd", extra_config=[f"SetEnv PATH={bare}"])
    else:
        monkeypatch.setenv("PATH", bare)
    try:
        add_slurm_host(ws, slurm_here, sshd=sshd)
        async with Dispatcher(ws, SLURM_FAST):
            job_id = _submit(ws, LINES.format(n=5, pause=0.01))
            waiting = await wait_until(ws, job_id, lambda j: bool(j.error), timeout=30)
    finally:
        if sshd is not None:
            sshd.stop()
    assert waiting.state == "queued" and waiting.attempts == 0
    assert waiting.error is not None and "\n" not in waiting.error
    assert "sbatch not found on the login node" in waiting.error, waiting.error


async def test_more_nodes_than_the_partition_has_fail_with_slurms_reason(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    """Two nodes x 2 GPUs on a one-node partition: Slurm holds it for ever (PartitionConfig
    or PartitionNodeLimit); helm says so with what it asked for, and stops."""
    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here, gpus_per_node=2, max_nodes=2)
    run_id = new_run(ws, description="2 nodes")
    async with Dispatcher(ws, SLURM_FAST) as d:
        with ws.store.read() as s:
            from helm.models.job_life import load_host

            host = load_host(s, "cluster")
        check = await d.svc.check_host(host)
        assert check["slurm"]["partition_nodes"] == 1, check
        job_id = _submit(ws, LINES.format(n=5, pause=0.01), gpus=4, run_id=run_id)
        done = await wait_state(ws, job_id, "failed", "succeeded", "lost", timeout=30)
    assert done.state == "failed"
    assert done.error is not None and "\n" not in done.error
    assert done.error.startswith("Slurm will never start it: Partition"), done.error
    assert "asked for 2 nodes x 2 GPUs in partition gpu" in done.error, done.error
    assert done.backend_id and slurm_state(slurm_here, done.backend_id) == "CANCELLED"
    assert run_row(ws, run_id)["status"] == "crash"


async def test_a_qos_that_forbids_the_request_fails_it_in_one_line(
    ws: Workspace, slurm_acct_lab: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QOS ``small`` allows 1 GPU per job and refuses more at submission (DenyOnLimit), on a
    cluster with real accounting (slurmdbd over MariaDB)."""
    lab = slurm_acct_lab
    monkeypatch.setenv("SLURM_CONF", str(lab.conf))
    add_slurm_host(ws, lab, qos="small")
    run_id = new_run(ws, description="2 GPUs under qos small")
    async with Dispatcher(ws, SLURM_FAST):
        job_id = _submit(ws, LINES.format(n=5, pause=0.01), gpus=2, run_id=run_id)
        done = await wait_state(ws, job_id, "failed", "succeeded", timeout=30)
        small = _submit(ws, LINES.format(n=5, pause=0.01), gpus=1)  # within the QOS: runs
        ok = await wait_state(ws, small, "succeeded", "failed", timeout=60)
    assert done.state == "failed", done.error
    assert done.error is not None and "\n" not in done.error
    assert done.error.startswith("launch failed: sbatch refused: "), done.error
    assert "QOS" in done.error, done.error
    assert run_row(ws, run_id)["status"] == "crash"
    assert ok.state == "succeeded", ok.error
    assert read_log(ws, small) == expected(5)


async def test_a_stray_slurm_job_of_a_try_helm_gave_up_on_is_cancelled(
    ws: Workspace, slurm_here: LocalSlurm, tmp_path: Path
) -> None:
    """A try lost while its login node was unreachable may still run in Slurm after its
    fresh try started: the reaper finds it by name (campaign + try folder) and cancels it;
    the live try, and another campaign's job, are left alone."""
    from helm.remote.local import LocalBox
    from helm.remote.slurm import cancel as cancel_job
    from helm.remote.slurm import job_name, sbatch_argv, submit

    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here)
    box = LocalBox("cluster")
    settings = SlurmSettings(PARTITION, gpus_per_node=2)

    async def sleeper(folder: str, campaign: str) -> str:
        rdir = tmp_path / campaign / folder
        rdir.mkdir(parents=True)
        (rdir / "run.sh").write_text("#!/bin/sh\nsleep 60\n")
        name = job_name(campaign, folder)
        argv = sbatch_argv(settings, name=name, rdir=str(rdir), gpus=1, time_limit_s=60,
                           script="run.sh")  # fmt: skip
        return await submit(box, str(rdir), argv, name)

    stray = await sleeper("7", ws.campaign_id)  # job 7's first try, given up on
    other = await sleeper("7", "0ther0campaign")
    reaping = dataclasses.replace(SLURM_FAST, reap_every_s=0.5)
    async with Dispatcher(ws, reaping):
        live = _submit(ws, LINES.format(n=200, pause=0.02))
        running = await wait_state(ws, live, "running")
        await wait_slurm(slurm_here, stray, "CANCELLED", timeout=20)
        assert running.backend_id and slurm_state(slurm_here, running.backend_id) == "RUNNING"
        assert slurm_state(slurm_here, other) == "RUNNING"
        done = await wait_state(ws, live, "succeeded", "failed", timeout=60)
    await cancel_job(box, other)
    assert done.state == "succeeded", done.error


async def test_a_try_submitted_while_the_reaper_reads_the_queue_is_not_a_stray(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    """The reaper lists the queue while, in the same pass, a queued job is placed and
    submitted: the try it then sees in ``squeue`` is live and stays (CI once saw the daemon
    cancel its own fresh job, 'Slurm CANCELLED (not by helm)', when the live tries were read
    before the listing). Here the listing is held until the job is in Slurm's queue, so the
    order is the one that failed, every time."""
    from helm.remote.hosts import box_key
    from helm.remote.local import LocalBox

    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here)
    live = _submit(ws, LINES.format(n=60, pause=0.02))

    class LateListing(LocalBox):
        """``squeue`` runs only once the job's try is in Slurm (its backend id recorded)."""

        async def run(self, script: str, **kw):  # type: ignore[override]
            if script.startswith("squeue -h"):
                deadline = time.monotonic() + 30
                while not job_row(ws, live).backend_id and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            return await super().run(script, **kw)

    reaping = dataclasses.replace(SLURM_FAST, reap_every_s=0.2)
    d = Dispatcher(ws, reaping)
    with ws.store.read() as s:  # connected before the first pass, which places the job
        d.svc.boxes["cluster"] = (box_key(load_host(s, "cluster")), LateListing("cluster"))
    async with d:
        done = await wait_state(ws, live, "succeeded", "failed", timeout=60)
    assert done.state == "succeeded", done.error
    assert read_log(ws, live) == expected(60)
