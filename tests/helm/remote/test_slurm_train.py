"""The real thing under a real Slurm: golf_task's train_gpt.py on the tiny CPU preset as a
2-GPU job, which runs as ``srun`` + torchrun with its c10d rendezvous taken from Slurm's
environment (the path a 2 nodes x 8 GPUs job takes, here on the cluster's one node), from a
host whose ``--data`` holds the tiny dataset; the score lands on the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dispatch_helpers import Dispatcher, new_run, read_log, run_row, wait_state
from slurm_helpers import SLURM_FAST, add_slurm_host, events, wait_idle

from golf_task.presets import TINY_CPU_ENV
from helm.remote.jobs import submit_job
from helm.remote.slurmlab import LocalSlurm
from helm.workspace import Workspace

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
async def test_tiny_training_as_a_two_process_slurm_job(
    ws: Workspace, slurm_here: LocalSlurm, tiny_data_dir: Path
) -> None:
    wait_idle(slurm_here)
    # no --launcher: the real srun + torch.distributed.run path
    add_slurm_host(ws, slurm_here, launcher=None, data=str(tiny_data_dir), python=sys.executable)
    run_id = new_run(ws, agent="a1", description="tiny under slurm", seed=1337)
    env = dict(TINY_CPU_ENV, MAX_WALLCLOCK_SECONDS="3", TRAIN_LOG_EVERY="5")
    job = submit_job(
        ws,
        ws.store,
        [REPO / "golf_task" / "train_gpt.py"],
        env=env,
        gpus=2,
        seed=1337,
        agent="a1",
        run_id=run_id,
        time_limit_s=400,
    )
    assert job.id is not None
    async with Dispatcher(ws, SLURM_FAST):
        done = await wait_state(ws, job.id, "succeeded", "failed", "lost", timeout=300)
    log = read_log(ws, job.id)
    assert done.state == "succeeded", f"{done.error}\n{log[-3000:]}"
    assert "world_size:2 grad_accum_steps:1" in log  # two ranks met at Slurm's rendezvous
    assert sum(line.startswith("Total submission size") for line in log.splitlines()) == 1
    art = ws.job_dir(job.id) / "artifacts"
    assert (art / f"{job.id}.ptz").stat().st_size > 1000  # RUN_ID = job id on every rank
    run = run_row(ws, run_id)
    assert run["status"] == "done" and run["host"] == "cluster"
    assert run["val_bpb"] is not None and 0 < run["val_bpb"] < 10
    assert run["bytes_total"] == run["bytes_code"] + run["bytes_model"]
    assert any("Slurm job" in e and "started" in e for e in events(ws, job.id))
