"""The one definition of the base (``helm.models.base``), on both store engines: which runs
are a pin's base, its figures, Δ base, the seeds of a configuration, the best kept run, and
that the TUI's snapshot reads all of it in a fixed number of queries."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from helm.models import db as dbmod
from helm.models.base import (
    base_of,
    base_pin_id,
    bases_of,
    pin_label,
    pinned_run_id,
    seed_counts,
    seed_groups,
)
from helm.models.pins import add_pin
from helm.models.runs import best_kept_run, insert_run
from helm.models.submissions import insert_submission
from helm.workspace import Workspace

pytestmark = pytest.mark.engines

C1, C2 = "a" * 40, "b" * 40


def _run(db: dbmod.Db, **fields: Any) -> int:
    fields.setdefault("status", "keep")
    fields.setdefault("agent", "a1")
    return insert_run(db, **fields)


def test_pin_refs_and_labels() -> None:
    assert pinned_run_id({"kind": "run", "ref": "14"}) == 14
    assert pinned_run_id({"kind": "run", "ref": "run 14"}) == 14  # stores before issue 16
    assert pinned_run_id({"kind": "pr", "ref": "o/r#14"}) is None
    assert pin_label({"kind": "run", "ref": "run 14"}) == "run #14"
    assert pin_label({"kind": "pr", "ref": "o/r#374"}) == "PR o/r#374"
    assert pin_label({"kind": "file", "ref": "/x/y/new.py"}) == "file /x/y/new.py"
    assert pin_label({"kind": "file", "ref": "/x/y/new.py"}, short=True) == "file new.py"
    assert base_pin_id({"base_pin_id": 3}, 7) == 3 and base_pin_id({"base_pin_id": None}, 7) == 7


def test_the_base_is_the_pinned_run_and_its_unchanged_reference_runs(ws: Workspace) -> None:
    with ws.db(write=True) as db:
        init = add_pin(db, kind="init", ref="golf_task", commit=C1, pinned_by="helm", note=None)
        pinned = _run(db, commit="c" * 40, val_bpb=1.28, base_pin_id=init["id"])
        pin = add_pin(db, kind="run", ref=str(pinned), commit=C2, pinned_by="op", note=None)
        p = pin["id"]
        ref1 = _run(db, commit=C2, val_bpb=1.2805, base_pin_id=p, baseline=True, seed=5)
        ref2 = _run(db, agent="a2", commit=C2, val_bpb=1.2806, base_pin_id=p, baseline=True)
        # not the base: a `set` directive's reference (another commit), a crash, a plain run
        _run(db, commit="d" * 40, val_bpb=1.40, base_pin_id=p, baseline=True)
        _run(db, status="crash", commit=C2, base_pin_id=p, baseline=True)
        _run(db, status="running", commit=C2, base_pin_id=p, baseline=True)
        other = _run(db, commit=C2, val_bpb=1.2706, base_pin_id=p)
        base = base_of(db, p)
        assert base is not None and base_of(db, None) is None and base_of(db, 999) is None
        assert base.run_ids == (pinned, ref1, ref2) and base.n == 3 and not base.pooled
        scores = [1.28, 1.2805, 1.2806]
        assert base.mean == pytest.approx(statistics.mean(scores))
        assert base.spread == pytest.approx(statistics.stdev(scores))
        assert base.label == f"run #{pinned}"
        assert base.delta(pinned, 1.28) is None  # a run of the base: no Δ to itself
        assert base.delta(other, 1.2706) == pytest.approx(1.2706 - base.mean)
        assert base.delta(other, None) is None
        # the init pin's base: nothing re-ran it; the pinned run ran *on* it but is not its base
        first = base_of(db, init["id"])
        assert first is not None and first.n == 0 and first.mean is None and first.spread is None
        assert base.to_json()["run_ids"] == [pinned, ref1, ref2]


def test_one_run_takes_the_pooled_seed_spread(ws: Workspace) -> None:
    with ws.db(write=True) as db:
        pin = add_pin(db, kind="init", ref="golf_task", commit=C1, pinned_by="helm", note=None)
        _run(db, commit=C1, val_bpb=1.30, base_pin_id=pin["id"], baseline=True)
        base = base_of(db, pin["id"])
        assert base is not None and base.n == 1 and base.spread is None  # no repeats yet
        for seed, bpb in ((1, 1.40), (2, 1.42), (2, 1.50)):  # one config, seeds 1, 2 (+ a replay)
            _run(db, code_hash="h", env_json="{}", seed=seed, val_bpb=bpb, status="discard")
        base = bases_of(db, [pin["id"]])[pin["id"]]
        assert base.pooled and base.spread == pytest.approx(0.02 / 2**0.5)


def test_seeds_are_one_per_seed_of_a_code_and_environment(ws: Workspace) -> None:
    with ws.db(write=True) as db:
        for seed, env, bpb in (
            (1, "{}", 1.3),
            (2, "{}", 1.31),
            (2, "{}", 1.5),
            (1, '{"A": "1"}', 1.2),
        ):
            _run(db, code_hash="h", env_json=env, seed=seed, val_bpb=bpb)
        _run(db, code_hash="h", env_json="{}", seed=3, status="crash")  # no score: no seed
        _run(db, code_hash="g", env_json="{}", seed=None, val_bpb=1.1)
        counts = seed_counts(db, [("h", "{}"), ("h", '{"A": "1"}'), ("g", "{}"), ("x", "{}")])
    assert counts == {("h", "{}"): 2, ("h", '{"A": "1"}'): 1, ("g", "{}"): 1, ("x", "{}"): 0}
    rows = [{"code_hash": "h", "env_json": "{}", "seed": s, "val_bpb": v}
            for s, v in ((1, 1.3), (1, 1.9), (None, 1.4))]  # fmt: skip
    assert seed_groups(rows) == {("h", "{}"): {1: 1.3, None: 1.4}}  # the first score stands


def test_the_best_counts_kept_and_promoted_runs_only(ws: Workspace) -> None:
    with ws.db(write=True) as db:
        assert best_kept_run(db) is None
        kept = _run(db, val_bpb=1.30)
        low = _run(db, val_bpb=1.20, status="discard")
        _run(db, val_bpb=1.10, status="done")  # a promotion's seed run: no verdict asked
        assert best_kept_run(db)["id"] == kept
        insert_submission(db, run_id=low, name="x", track="record", path="/x", seeds=[1],
                          status="written", report={})  # fmt: skip
        assert best_kept_run(db)["id"] == low  # promoted: it counts
        assert best_kept_run(db, exclude_run=low)["id"] == kept


def test_the_snapshot_reads_bases_and_seeds_in_a_fixed_number_of_queries(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No per-row query: a board of 8 runs and one of 80 (over 4 pins) cost the same."""
    from helm.tui.data import load_snapshot

    calls = [0]
    for cls in (dbmod.SqliteDb, dbmod.SqlaDb):
        original = cls.rows

        def counted(self, sql, params=None, _original=original):  # noqa: ANN001, ANN202
            calls[0] += 1
            return _original(self, sql, params)

        monkeypatch.setattr(cls, "rows", counted)

    def fill(n: int) -> int:
        with ws.db(write=True) as db:
            pins = [
                add_pin(db, kind="init", ref=f"p{i}", commit=f"{i:040x}", pinned_by="t", note=None)
                for i in range(4)
            ]
            for i in range(n):
                p = pins[i % 4]
                _run(db, commit=p["commit"], code_hash=f"h{i % 7}", env_json=f'{{"X": "{i}"}}',
                     val_bpb=1.3 - i * 1e-4, base_pin_id=p["id"], baseline=i < 8, seed=i)  # fmt: skip
        calls[0] = 0
        snap = load_snapshot(ws, clock=time.time)
        assert len(snap.bases) >= 4 and len(snap.seeds) >= 7
        return calls[0]

    small = fill(8)
    assert fill(72) == small  # 80 runs on the board, 8 pins
