"""What the money bought, on a real store (both engines): ``helm directives`` (per directive
the GPU-hours and money of the runs made under it, and the best Δbpb a kept one bought
against its base) and ``helm context``'s "kept improvements" line (the campaign's best kept
run against the first base, per dollar)."""

from __future__ import annotations

import time

import pytest

from helm.models.directives import ack_directive, send_directive
from helm.models.runs import insert_run
from helm.models.tables import Agent, Job, Pin
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def _pin(ws: Workspace, commit: str) -> int:
    with ws.store.write() as s:
        pin = Pin(kind="init", ref="golf_task", commit=commit)
        s.add(pin)
        s.flush()
        assert pin.id is not None
        return pin.id


def _run(ws: Workspace, pin: int, commit: str, **kw) -> int:
    with ws.db(write=True) as db:
        return insert_run(db, agent="a1", description="r", base_pin_id=pin, commit=commit, **kw)


def _job(ws: Workspace, run_id: int, seconds: float, cost: float) -> None:
    with ws.store.write() as s:
        s.add(Job(run_id=run_id, agent="a1", state="succeeded", gpu_seconds=seconds, cost=cost))


@pytest.fixture
def campaign(ws: Workspace) -> dict[str, int]:
    """A base of two reference runs (mean 1.30), then two directives acked by a1 in turn: the
    first bought a kept run at 1.28 and a discard at 1.20, the second only a discard."""
    with ws.store.write() as s:
        s.add(Agent(name="a1"))
    pin = _pin(ws, "c0")
    ids: dict[str, int] = {}
    ids["ref1"] = _run(ws, pin, "c0", baseline=True, status="keep", val_bpb=1.29)
    ids["ref2"] = _run(ws, pin, "c0", baseline=True, status="keep", val_bpb=1.31)
    _job(ws, ids["ref1"], 3600.0, 2.0)
    with ws.db(write=True) as db:
        ids["d1"] = send_directive(db, "try int5 for MLP", targets=["a1"])["id"]
        ack_directive(db, ids["d1"], "a1")
    time.sleep(0.01)
    ids["kept"] = _run(ws, pin, "c1", status="keep", val_bpb=1.28)
    ids["lucky"] = _run(ws, pin, "c2", status="discard", val_bpb=1.20)  # discarded: no gain
    _job(ws, ids["kept"], 7200.0, 4.0)
    _job(ws, ids["lucky"], 1800.0, 1.0)
    time.sleep(0.01)
    with ws.db(write=True) as db:
        ids["d2"] = send_directive(db, "now EMA", targets=["a1"])["id"]
        ack_directive(db, ids["d2"], "a1")
        ids["d3"] = send_directive(db, "never acked", targets=["a1"])["id"]
    time.sleep(0.01)
    ids["worse"] = _run(ws, pin, "c3", status="discard", val_bpb=1.35)
    _job(ws, ids["worse"], 900.0, 0.5)
    return ids


def test_directives_show_cost_and_best_gain(campaign: dict[str, int], helm) -> None:
    r = helm("directives", "--json")
    assert r.code == 0, r.err
    by_id = {d["id"]: d for d in r.json()}
    d1, d2, d3 = by_id[campaign["d1"]], by_id[campaign["d2"]], by_id[campaign["d3"]]
    assert d1["runs"] == [campaign["kept"], campaign["lucky"]] and d1["kept"] == 1
    assert (d1["gpu_hours"], d1["money"]) == (2.5, 5.0)
    assert d1["best_run"] == campaign["kept"]
    assert d1["best_delta"] == pytest.approx(-0.02)  # 1.28 - mean(1.29, 1.31); not the discard
    assert (d2["runs"], d2["money"], d2["best_delta"], d2["best_run"]) == (
        [campaign["worse"]],
        0.5,
        None,
        None,
    )
    assert (d3["runs"], d3["gpu_seconds"], d3["best_delta"]) == ([], 0.0, None)
    lines = helm("directives").out.splitlines()
    head = lines[0].split()
    assert head[:7] == ["ID", "AGE", "RUNS", "KEPT", "GPU-H", "$", "BEST"]
    row = next(line for line in lines if "try int5 for MLP" in line)
    assert "$5.00" in row and "2.50" in row and f"\u22120.0200 (run {campaign['kept']})" in row
    assert "-" in next(line for line in lines if "now EMA" in line).split()


def test_context_tells_improvement_per_money(campaign: dict[str, int], helm) -> None:
    imp = helm("context", "--json").json()["improvement"]
    assert imp["kept"] == 1 and imp["best_run"] == campaign["kept"]  # references not counted
    assert imp["delta"] == pytest.approx(-0.02) and imp["money"] == pytest.approx(7.5)
    assert imp["per_money"] == pytest.approx(-0.02 / 7.5)
    text = helm("context", "--agent", "a1").out
    assert "kept improvements: 1, Δbpb \u22120.0200 for $7.50 (\u22120.00267 bpb per $)" in text


def test_context_without_a_scored_base_has_no_line(ws: Workspace, helm) -> None:
    _pin(ws, "c0")
    ctx = helm("context", "--json").json()
    assert ctx["improvement"] == {
        "kept": 0,
        "delta": None,
        "best_run": None,
        "money": 0.0,
        "per_money": None,
    }
    assert "kept improvements" not in helm("context").out


def test_improvements_over_time(campaign: dict[str, int], helm) -> None:
    """The one kept improvement, with everything spent up to it (the references' $2 and its
    own $4), the same figures as ``helm.models.costs.improvement_series`` and the TUI."""
    rows = helm("improvements", "--json").json()
    assert [r["run_id"] for r in rows] == [campaign["kept"]]
    (r,) = rows
    assert r["best_before"] == pytest.approx(1.30) and r["best_before_run"] is None
    assert r["delta"] == pytest.approx(-0.02) and r["money"] == pytest.approx(6.0)
    assert r["per_money"] == pytest.approx(-0.02 / 6.0)
    out = helm("improvements").out.splitlines()
    assert out[0].split() == ["RUN", "AGE", "VAL_BPB", "ΔBPB", "GPU-H", "$", "ΔBPB/$"]
    cells = out[1].split()
    assert cells[0] == str(campaign["kept"]) and "\u22120.0200" in cells and "6.00" in out[1]
    assert "\u22120.00333" in cells


def test_no_improvement_yet(ws: Workspace, helm) -> None:
    assert helm("improvements").out.strip() == "no kept improvement yet"
    assert helm("improvements", "--json").json() == []
