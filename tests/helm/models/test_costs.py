"""The sums of ``helm.models.costs`` on a real store (both engines): per run (a run queued
twice has two jobs), per agent, per directive (the runs an agent made after acking it, up to
its next ack), the campaign, a running try counted up to now, and money unknown for good once
a try ran on a host without a price. Also the TUI header that shows the campaign's figure.
"""

from __future__ import annotations

import time

import pytest

from helm.models.costs import (
    Usage,
    add_try,
    agent_usage,
    campaign_usage,
    directive_runs,
    directive_usage,
    run_usage,
    try_gpu_seconds,
)
from helm.models.directives import ack_directive, send_directive
from helm.models.runs import insert_run
from helm.models.tables import Agent, Host, Job
from helm.tui import data, rows
from helm.tui.fmt import Palette
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def _job(ws: Workspace, **kw) -> int:
    """A job row as the dispatcher leaves it (cost None is written after the insert, as an
    end of a try does: an ORM insert of None would take the column's default, 0)."""
    unknown = "cost" in kw and kw["cost"] is None
    if unknown:
        del kw["cost"]
    with ws.store.write() as s:
        job = Job(**kw)
        s.add(job)
        s.flush()
        if unknown:
            job.cost = None
            s.add(job)
        assert job.id is not None
        return job.id


def _run(ws: Workspace, agent: str, created_at: float) -> int:
    with ws.db(write=True) as db:
        return insert_run(db, agent=agent, description="r", created_at=created_at)


def test_try_seconds_and_the_cost_that_stays_unknown() -> None:
    assert try_gpu_seconds(4, 100.0, 130.0, None, 160.0) == 240.0  # a box: from placement
    assert try_gpu_seconds(4, 100.0, 130.0, "17", 160.0) == 120.0  # Slurm: from its start
    assert try_gpu_seconds(2, 100.0, None, "17", 160.0) == 0.0  # pending in Slurm: nothing
    assert add_try(10.0, 0.01, 3600.0, 2.0) == (3610.0, pytest.approx(2.01))
    assert add_try(10.0, 0.01, 5.0, None) == (15.0, None)
    assert add_try(15.0, None, 3600.0, 2.0) == (3615.0, None)  # once unknown, always
    assert add_try(15.0, 0.5, 0.0, None) == (15.0, 0.5)  # a try that held nothing


def test_sums_per_run_agent_directive_and_campaign(ws: Workspace) -> None:
    with ws.store.write() as s:
        s.add(Agent(name="a1"))
        s.add(Agent(name="a2"))
        s.add(Host(name="priced", kind="local", price_per_gpu_hour=3.6))
    t0 = time.time()
    early = _run(ws, "a1", t0 - 1000)  # before any directive
    with ws.db(write=True) as db:
        d1 = send_directive(db, "try int5 for MLP", targets=["a1"])["id"]
        ack_directive(db, d1, "a1")
    under_d1 = _run(ws, "a1", time.time() + 0.001)
    time.sleep(0.01)
    with ws.db(write=True) as db:
        d2 = send_directive(db, "now EMA", targets=["a1"])["id"]
        ack_directive(db, d2, "a1")
    under_d2 = _run(ws, "a1", time.time() + 0.001)
    other = _run(ws, "a2", time.time() + 0.001)  # a2 never acked anything
    # ended tries, as the dispatcher stores them; under_d1 was queued twice (two jobs)
    _job(ws, run_id=early, agent="a1", state="succeeded", gpu_seconds=100.0, cost=0.1)
    _job(ws, run_id=under_d1, agent="a1", state="lost", gpu_seconds=3600.0, cost=3.6)
    _job(ws, run_id=under_d1, agent="a1", state="succeeded", gpu_seconds=7200.0, cost=7.2)
    _job(ws, run_id=under_d2, agent="a1", state="succeeded", gpu_seconds=60.0, cost=None)
    # a2's job runs right now on the priced host: 2 GPUs for about 30 s so far
    _job(
        ws, run_id=other, agent="a2", state="running", host="priced", gpus=2,
        staged_at=time.time() - 30, started_at=time.time() - 29,
    )  # fmt: skip
    with ws.db(write=False) as db:
        per_run = run_usage(db, [early, under_d1, under_d2, other])
        agents = agent_usage(db)
        total = campaign_usage(db)
        runs_of = directive_runs(db)
        per_directive = directive_usage(db)
    assert per_run[under_d1] == Usage(10800.0, pytest.approx(10.8), True)
    assert per_run[under_d2].gpu_seconds == 60.0 and per_run[under_d2].cost is None
    live = per_run[other]
    assert 60.0 <= live.gpu_seconds < 70.0  # 2 GPUs x ~30 s, counted up to now
    assert live.money == pytest.approx(live.gpu_seconds / 3600 * 3.6) and live.money_known
    assert agents["a1"].gpu_seconds == 100 + 3600 + 7200 + 60
    assert not agents["a1"].money_known and agents["a1"].money == pytest.approx(10.9)
    assert 60.0 <= agents["a2"].gpu_seconds < 70.0 and agents["a2"].money_known
    assert total.gpu_seconds == pytest.approx(10960 + agents["a2"].gpu_seconds, abs=1.0)
    assert total.cost is None
    assert runs_of == {d1: [under_d1], d2: [under_d2]}
    assert per_directive[d1] == Usage(10800.0, pytest.approx(10.8), True)
    assert per_directive[d2].gpu_seconds == 60.0 and per_directive[d2].cost is None
    assert per_directive[d1].to_json() == {"gpu_seconds": 10800.0, "gpu_hours": 3.0, "money": 10.8}


def test_an_empty_campaign_costs_nothing_and_the_header_shows_it(ws: Workspace) -> None:
    with ws.db(write=False) as db:
        assert campaign_usage(db) == Usage()
        assert agent_usage(db) == {} and run_usage(db, []) == {} and directive_usage(db) == {}
    pal = Palette.from_variables({})
    header = rows.header_text(
        data.load_snapshot(ws, clock=time.time), pal, rate=1.0, paused=False, marked=None
    ).plain
    assert "spent $0.00 · 0.00 GPU-h" in header
    _job(ws, state="succeeded", gpu_seconds=2232.0, cost=12.4)  # 0.62 GPU-h
    snap = data.load_snapshot(ws, clock=time.time)
    assert snap.usage == Usage(2232.0, 12.4, True)
    header = rows.header_text(snap, pal, rate=1.0, paused=False, marked=None).plain
    assert "spent $12.40 · 0.62 GPU-h" in header
    _job(ws, state="succeeded", gpu_seconds=36000.0, cost=None)  # a host without a price
    snap = data.load_snapshot(ws, clock=time.time)
    header = rows.header_text(snap, pal, rate=1.0, paused=False, marked=None).plain
    assert "spent - · 10.6 GPU-h" in header
