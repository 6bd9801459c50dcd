"""Money per kept improvement over time (``costs.improvement_series``) and the early-abort
service's at-risk mark (``feed.at_risk_run_ids``), on a real store (both engines)."""

from __future__ import annotations

import pytest

from helm.models.costs import improvement_series
from helm.models.feed import at_risk_run_ids, post_feed
from helm.models.runs import insert_run
from helm.models.screens import screen_run_ids
from helm.models.tables import Job, Pin
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def _run(ws: Workspace, status: str, bpb: float | None, **kw: object) -> int:
    with ws.db(write=True) as db:
        return insert_run(db, status=status, val_bpb=bpb, description="r", **kw)


def _job(ws: Workspace, run_id: int, seconds: float, cost: float | None) -> None:
    """An ended job; a cost of None is set after the insert (as an end of a try writes it)."""
    with ws.store.write() as s:
        job = Job(run_id=run_id, state="succeeded", gpus=1, gpu_seconds=seconds, cost=0.0)
        s.add(job)
        s.flush()
        job.cost = cost
        s.add(job)


def test_each_improvement_with_the_money_since_the_previous(ws: Workspace) -> None:
    r1 = _run(ws, "keep", 1.30, finished_at=100.0)  # no pin: the first kept run sets the bar
    r2 = _run(ws, "discard", 1.25)  # lower, but discarded: not an improvement, still paid for
    r3 = _run(ws, "keep", 1.28, finished_at=300.0)
    r4 = _run(ws, "keep", 1.29)  # kept on its branch, not below the best
    r5 = _run(ws, "keep", 1.20, baseline=True)  # a reference run: moves the bar, bought nothing
    r6 = _run(ws, "keep", 1.19, finished_at=600.0)
    _run(ws, "screened", 1.10)  # a screen is never an improvement
    for rid, seconds, cost in ((r1, 1000, 1.0), (r2, 2000, 2.0), (r3, 1000, 1.0)):
        _job(ws, rid, seconds, cost)
    _job(ws, r4, 500, None)  # on a host without a price
    _job(ws, r6, 100, 0.1)
    with ws.db(write=False) as db:
        first, second = improvement_series(db)
    assert first["run_id"] == r3 and first["at"] == 300.0
    assert first["best_before"] == 1.30 and first["best_before_run"] == r1
    assert first["delta"] == pytest.approx(-0.02)
    assert first["money"] == pytest.approx(4.0)  # r1 + r2 + r3: since the campaign began
    assert first["gpu_seconds"] == pytest.approx(4000)
    assert first["per_money"] == pytest.approx(-0.02 / 4.0)
    assert second["run_id"] == r6 and second["best_before_run"] == r5
    assert second["delta"] == pytest.approx(-0.01)
    assert second["gpu_seconds"] == pytest.approx(600)
    assert second["money"] is None and second["per_money"] is None  # unknown, not 0


def test_the_bar_starts_at_the_first_base(ws: Workspace) -> None:
    with ws.store.write() as s:
        s.add(Pin(kind="run", ref="1", commit="a" * 40, created_at=1.0))
    base = _run(ws, "keep", 1.30)  # the pinned run: part of the base, not an improvement
    better = _run(ws, "keep", 1.295)
    with ws.db(write=False) as db:
        (only,) = improvement_series(db)
        assert improvement_series(db)[0]["money"] == 0.0  # runs without a job cost nothing
    assert base == 1 and only["run_id"] == better
    assert only["best_before"] == pytest.approx(1.30) and only["best_before_run"] is None
    assert only["per_money"] is None  # nothing spent: no ratio, not infinity


def test_at_risk_only_while_in_flight(ws: Workspace) -> None:
    risky = _run(ws, "running", None)
    other_tag = _run(ws, "running", None)
    aborted = _run(ws, "aborted", None)
    quiet = _run(ws, "running", None)
    with ws.db(write=True) as db:
        post_feed(
            db, "looks hopeless", kind="system", run_id=risky, tags=("early-abort", "at-risk")
        )
        post_feed(db, "note", run_id=other_tag, tags=("at-risky-business",))
        post_feed(db, "was at risk", kind="system", run_id=aborted, tags=("at-risk",))
        post_feed(db, "no run", tags=("at-risk",))
        found = at_risk_run_ids(db, [risky, other_tag, aborted, quiet])
        assert at_risk_run_ids(db, []) == set()
    assert found == {risky}


def test_screen_run_ids(ws: Workspace) -> None:
    screen = _run(ws, "running", None, screen=True)
    full = _run(ws, "running", None)
    with ws.db(write=False) as db:
        assert screen_run_ids(db, [screen, full, 999]) == {screen}
        assert screen_run_ids(db, []) == set()
