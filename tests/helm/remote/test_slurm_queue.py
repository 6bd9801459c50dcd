"""helm's Slurm commands against the real test cluster: submission at most once per try
folder (also when cut off halfway), the host's squeue read as JSON and as text alike, and
sacct for what squeue forgot (on the cluster with accounting)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from helm.remote.local import LocalBox
from helm.remote.slurm import ID_FILE, SlurmQueue, cancel, job_name, sbatch_argv, submit
from helm.remote.slurm_conf import SlurmSettings
from helm.remote.slurmlab import PARTITION, LocalSlurm


def _try_folder(tmp_path: Path, body: str = "sleep 0.2; echo done > out.txt") -> Path:
    rdir = tmp_path / "jobs" / "7"
    rdir.mkdir(parents=True)
    (rdir / "run.sh").write_text(f"#!/bin/sh\n{body}\n")
    return rdir


def _argv(rdir: Path, name: str, gpus: int = 1) -> list[str]:
    settings = SlurmSettings(PARTITION, gpus_per_node=2)
    return sbatch_argv(
        settings, name=name, rdir=str(rdir), gpus=gpus, time_limit_s=60, script="run.sh"
    )


async def _until_ended(queue: SlurmQueue, sid: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        job = await queue.get(sid, fresh=True)
        busy = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")
        if job is not None and job.state not in busy and "COMPLETING" not in job.flags:
            return job.state
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.1)


async def test_submission_happens_once_per_try_folder_even_when_cut_off(
    slurm_here: LocalSlurm, tmp_path: Path
) -> None:
    box = LocalBox("cluster")
    rdir = _try_folder(tmp_path, "sleep 30")
    name = job_name("c0ffee00aa", "7")
    argv = _argv(rdir, name)
    first = await submit(box, str(rdir), argv, name)
    assert await submit(box, str(rdir), argv, name) == first  # retried: the same job
    # cut off after sbatch but before its id was kept: found again by the try's job name
    (rdir / ID_FILE).unlink()
    assert await submit(box, str(rdir), argv, name) == first
    out = slurm_here.command("squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i")
    assert out.stdout.split() == [first]  # never a second submission
    await cancel(box, first)


@pytest.mark.parametrize("form", ["json", "text"])
async def test_queue_reads_states_as_json_and_as_text(
    slurm_here: LocalSlurm, tmp_path: Path, form: str
) -> None:
    box = LocalBox("cluster")
    queue = SlurmQueue(box, poll_s=0.0, foreign_limit=10**6)  # earlier tests' jobs: fine
    queue._json = form == "json"  # the text form is what a squeue without --json gets
    ok_dir = _try_folder(tmp_path / "ok")
    ok = await submit(box, str(ok_dir), _argv(ok_dir, f"q-{form}-ok"), f"q-{form}-ok")
    bad_dir = _try_folder(tmp_path / "bad", "exit 3")
    bad = await submit(box, str(bad_dir), _argv(bad_dir, f"q-{form}-bad"), f"q-{form}-bad")
    assert await _until_ended(queue, ok) == "COMPLETED"
    assert await _until_ended(queue, bad) == "FAILED"
    done = await queue.get(ok)
    assert done is not None and done.restarts == 0 and done.nodes == slurm_here.node
    assert queue._json == (form == "json")  # json stayed json: no silent fallback
    assert await queue.get("999999", fresh=True) is None  # an id Slurm never had


async def test_sacct_answers_for_jobs_squeue_forgot(
    slurm_acct_lab: LocalSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm_acct_lab.conf))
    box = LocalBox("cluster")
    rdir = _try_folder(tmp_path, "exit 3")
    sid = await submit(box, str(rdir), _argv(rdir, "acct-fail"), "acct-fail")
    queue = SlurmQueue(box, poll_s=0.0)
    assert await _until_ended(queue, sid) == "FAILED"
    deadline = time.monotonic() + 30
    while True:  # accounting records the end a moment after squeue shows it, its code later
        jobs = await queue._sacct_read([sid])
        if sid in jobs and jobs[sid].state == "FAILED" and jobs[sid].exit_code is not None:
            break
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.2)
    assert jobs[sid].exit_code == 3
    assert queue._sacct  # the cluster has accounting: sacct stays in use


async def test_a_json_that_ignores_the_job_filter_switches_to_the_text_form(
    slurm_here: LocalSlurm, tmp_path: Path
) -> None:
    """Slurm 22.05's ``squeue --json`` answers with every job of the cluster whatever -j
    says: on a shared controller that is thousands of jobs every poll, so helm reads the
    text form (which honours -j) once the answer carries more jobs than it asked for."""
    box = LocalBox("cluster")
    sids = []
    for i in range(3):
        rdir = _try_folder(tmp_path / str(i))
        sids.append(await submit(box, str(rdir), _argv(rdir, f"foreign-{i}"), f"foreign-{i}"))
    queue = SlurmQueue(box, poll_s=0.0, foreign_limit=1)
    mine = await queue.get(sids[0], fresh=True)
    assert mine is not None and mine.slurm_id == sids[0]
    assert queue._jobs.keys() == {sids[0]}  # only what was asked for is kept
    assert queue._json is False  # the others' jobs came along: text form from now on
    again = await queue.get(sids[0], fresh=True)
    assert again is not None and again.slurm_id == sids[0]
    for sid in sids:
        await _until_ended(queue, sid)
