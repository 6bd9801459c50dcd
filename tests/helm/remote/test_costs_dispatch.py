"""GPU-seconds and money per try, through the real dispatcher: a local host running tiny
synthetic jobs (processes that sleep), a try lost and requeued so that two tries are summed,
a host without a price, and a Slurm try that waits behind another and must not count its wait.

The sums are checked against the job's own recorded times (``staged_at``, ``started_at``,
``finished_at``), so the test knows exactly what each try held.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from dispatch_helpers import (
    Dispatcher,
    add_local_host,
    job_row,
    new_run,
    wait_state,
    wait_until,
)
from slurm_helpers import LAUNCHER, LINES, SLURM_FAST, add_slurm_host, wait_idle

from helm.models.costs import campaign_usage, run_usage
from helm.remote.jobs import submit_job
from helm.remote.slurmlab import LocalSlurm
from helm.workspace import Workspace

PRICE = 3.6  # USD per GPU-hour: one GPU-second costs a tenth of a cent

SLEEP = """
import time
time.sleep({s})
print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.40000000", flush=True)
"""

HANG = "import time\nprint('alive', flush=True)\ntime.sleep(60)\n"


def _submit(ws: Workspace, body: str, **kw) -> int:
    kw.setdefault("time_limit_s", 60)
    job = submit_job(ws, ws.store, {"train_gpt.py": body}, **kw)
    assert job.id is not None
    return job.id


@pytest.mark.engines
async def test_a_try_counts_gpus_times_seconds_from_placement_and_costs_the_hosts_price(
    ws: Workspace,
) -> None:
    add_local_host(ws, gpus=4, launcher=LAUNCHER, price=PRICE)
    run_id = new_run(ws, agent="a1", description="sleeps")
    async with Dispatcher(ws):
        job_id = _submit(ws, SLEEP.format(s=1.5), gpus=2, run_id=run_id, agent="a1")
        running = await wait_state(ws, job_id, "running")
        assert running.gpu_seconds == 0  # nothing stored until the try ends ...
        with ws.db(write=False) as db:  # ... but the campaign counts it while it runs
            assert campaign_usage(db).gpu_seconds > 0
        done = await wait_state(ws, job_id, "succeeded", "failed", "lost")
    assert done.state == "succeeded", done.error
    assert done.staged_at is not None and done.finished_at is not None
    held = 2 * (done.finished_at - done.staged_at)
    assert done.gpu_seconds == pytest.approx(held)
    assert done.gpu_seconds >= 2 * 1.5
    assert done.cost == pytest.approx(held / 3600 * PRICE)
    with ws.db(write=False) as db:
        usage = run_usage(db, [run_id])[run_id]
        total = campaign_usage(db)
    assert usage.gpu_seconds == pytest.approx(held) and usage.money_known
    assert usage.money == pytest.approx(done.cost)
    assert total.gpu_seconds == pytest.approx(held) and total.cost == pytest.approx(done.cost)


@pytest.mark.engines
async def test_a_lost_and_requeued_try_is_summed_with_the_next_one(ws: Workspace) -> None:
    add_local_host(ws, gpus=4, launcher=LAUNCHER, price=PRICE)
    job_id = _submit(ws, HANG, gpus=1, max_attempts=2, time_limit_s=3)
    async with Dispatcher(ws):
        first = await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        os.killpg(first.pid or 0, signal.SIGKILL)  # wrapper and job die: no exit code
        second = await wait_until(ws, job_id, lambda j: j.attempts == 2 and j.state == "running")
        # the lost try was added as it ended, before its times were reset for the next
        assert first.staged_at is not None and second.staged_at is not None
        assert second.staged_at > first.staged_at
        lost_try = second.gpu_seconds
        assert 0 < lost_try <= second.staged_at - first.staged_at
        assert second.cost == pytest.approx(lost_try / 3600 * PRICE)
        done = await wait_state(ws, job_id, "failed", "succeeded", "lost", timeout=20)
    assert done.state == "failed"  # its time limit (3 s) stopped the second try
    assert done.finished_at is not None
    second_try = done.finished_at - second.staged_at
    assert second_try >= 3
    assert done.gpu_seconds == pytest.approx(lost_try + second_try)
    assert done.cost == pytest.approx((lost_try + second_try) / 3600 * PRICE)


@pytest.mark.engines
async def test_a_host_without_a_price_gives_gpu_hours_but_unknown_money(ws: Workspace) -> None:
    add_local_host(ws, "priced", gpus=1, price=PRICE)
    add_local_host(ws, "free", gpus=1)
    async with Dispatcher(ws):
        a = _submit(ws, SLEEP.format(s=0.3), host="priced")
        b = _submit(ws, SLEEP.format(s=0.3), host="free")
        done = {j: await wait_state(ws, j, "succeeded", "failed") for j in (a, b)}
    assert done[a].cost is not None and done[a].cost > 0
    assert done[b].cost is None  # never a guessed zero
    assert done[b].gpu_seconds == pytest.approx(done[b].finished_at - done[b].staged_at)
    with ws.db(write=False) as db:
        total = campaign_usage(db)
    assert total.gpu_seconds == pytest.approx(done[a].gpu_seconds + done[b].gpu_seconds)
    assert not total.money_known and total.cost is None
    assert total.money == pytest.approx(done[a].cost)  # the known part, a lower bound


async def test_a_slurm_try_counts_from_slurms_start_not_its_submission(
    ws: Workspace, slurm_here: LocalSlurm
) -> None:
    wait_idle(slurm_here)
    add_slurm_host(ws, slurm_here, price=PRICE)
    async with Dispatcher(ws, SLURM_FAST):
        blocker = _submit(ws, LINES.format(n=100, pause=0.03), gpus=2, time_limit_s=120)
        await wait_state(ws, blocker, "running", timeout=30)
        waiter = _submit(ws, LINES.format(n=10, pause=0.01), gpus=1, time_limit_s=120)
        await wait_until(ws, waiter, lambda j: j.queue_reason is not None, timeout=30)
        pending = job_row(ws, waiter)
        assert pending.state == "staging" and pending.started_at is None
        b = job_row(ws, blocker)
        assert b.started_at is not None
        before = time.time()
        with ws.db(write=False) as db:  # pending in Slurm: the running total leaves it out
            live = campaign_usage(db).gpu_seconds
        after = time.time()
        assert 2 * (before - b.started_at) <= live <= 2 * (after - b.started_at)  # blocker's
        done = {
            j: await wait_state(ws, j, "succeeded", "failed", timeout=60) for j in (blocker, waiter)
        }
    w = done[waiter]
    assert w.state == "succeeded", w.error
    assert w.started_at is not None and w.staged_at is not None and w.finished_at is not None
    assert w.started_at - w.staged_at > 1.0  # it waited behind the blocker ...
    assert w.gpu_seconds == pytest.approx(w.finished_at - w.started_at)  # ... not counted
    assert w.cost == pytest.approx(w.gpu_seconds / 3600 * PRICE)
    b = done[blocker]
    assert b.gpu_seconds == pytest.approx(2 * (b.finished_at - b.started_at))
