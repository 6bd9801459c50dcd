"""``helm diff``: the first run named is the first column, and a run is shown against its
base's figures (the mean, spread and count of the base's runs: ``helm.models.base``)."""

from __future__ import annotations

import statistics

import pytest

from helm.models.pins import latest_pin
from helm.models.runs import insert_run
from helm.tui import data
from helm.workspace import Workspace

pytestmark = pytest.mark.engines

ENV = {"MODEL_DIM": "128"}


def _base_runs(ws: Workspace, scores: list[float]) -> list[int]:
    """Reference runs that re-ran the init pin unchanged (its commit), one per seed."""
    with ws.db(write=True) as db:
        pin = latest_pin(db)
        assert pin is not None
        return [
            insert_run(
                db,
                agent="t1",
                commit=pin["commit"],
                code_hash="base",
                status="keep",
                val_bpb=s,
                seed=i,
                base_pin_id=pin["id"],
                baseline=True,
            )  # fmt: skip
            for i, s in enumerate(scores)
        ]


def test_the_first_run_named_is_the_first_column(task_ws: Workspace, kit, helm) -> None:  # noqa: ANN001
    old = kit.commit_run(task_ws, env=ENV, status="keep", val_bpb=1.30, description="old")
    new = kit.commit_run(task_ws, env={"MODEL_DIM": "192"}, status="keep", val_bpb=1.28,
                         description="new")  # fmt: skip
    out = helm("diff", str(old), str(new)).out
    assert out.startswith(f"diff run #{old} against run #{new}\n"), out
    lines = out.splitlines()
    env_head = next(ln for ln in lines if ln.strip().startswith("KEY"))
    assert env_head.split()[1:] == ["run", f"#{old}", "run", f"#{new}"]
    res_head = next(ln for ln in lines if ln.strip().startswith("METRIC"))
    assert res_head.split()[1:] == ["run", f"#{old}", "run", f"#{new}", "DELTA"]
    bpb = next(ln for ln in lines if ln.strip().startswith("val_bpb"))
    assert bpb.split()[1:] == ["1.30000000", "1.28000000", "+0.02000000"]  # A - B
    dim = next(ln for ln in lines if "MODEL_DIM" in ln)
    assert dim.split() == ["*", "MODEL_DIM", "128", "192"]


def test_a_run_is_shown_against_its_base(task_ws: Workspace, kit, helm) -> None:  # noqa: ANN001
    ref_ids = _base_runs(task_ws, [1.30, 1.3004])
    with task_ws.db(write=False) as db:
        pin = latest_pin(db)
    assert pin is not None
    old = kit.commit_run(task_ws, env=ENV, status="keep", val_bpb=1.29, base_pin_id=pin["id"])
    new = kit.commit_run(task_ws, env={"MODEL_DIM": "192"}, status="keep", val_bpb=1.28,
                         parent=old, base_pin_id=pin["id"])  # fmt: skip
    mean, sd = 1.3002, statistics.stdev([1.30, 1.3004])
    out = helm("diff", str(new)).out
    ids = ", ".join(f"#{i}" for i in ref_ids)
    want = (
        f"base of run #{new}: pin #{pin['id']} (init golf_task): mean val_bpb {mean:.8f} "
        f"±{sd:.8f} over n=2 runs ({ids}); run #{new} {1.28 - mean:+.8f}"
    )
    assert want in out, out
    base = helm("diff", str(new), "--base", "--json").json()["base"]
    assert base["n"] == 2 and base["run_ids"] == ref_ids
    assert base["mean"] == pytest.approx(mean) and base["spread"] == pytest.approx(sd)
    # the pinned base's own column is the base's mean, with its seeds
    r = helm("diff", str(new), "--base")
    assert r.code == 0, r.err
    bpb = next(ln for ln in r.out.splitlines() if ln.strip().startswith("val_bpb"))
    assert bpb.split()[1:] == ["1.28000000", f"{mean:.8f}", f"{1.28 - mean:+.8f}"]


def test_seeds_in_diff_and_on_the_leaderboard_are_one_figure(
    task_ws: Workspace,
    kit,
    helm,  # noqa: ANN001
) -> None:
    """Same code, same environment, three seeds (one replayed); another environment apart."""
    a = kit.commit_run(task_ws, env=ENV, seed=1, status="keep", val_bpb=1.30)
    kit.commit_run(task_ws, env=ENV, seed=2, status="discard", val_bpb=1.31)
    kit.commit_run(task_ws, env=ENV, seed=2, status="discard", val_bpb=1.32)  # a replay
    other = kit.commit_run(task_ws, env={"MODEL_DIM": "192"}, seed=1, status="keep",
                           val_bpb=1.29, parent=a)  # fmt: skip
    res = {m["metric"]: m for m in helm("diff", str(other), str(a), "--json").json()["results"]}
    assert res["seeds"]["b"] == [1, 2] and res["seeds"]["a"] == [1]
    assert res["seeds_mean_val_bpb"]["b"] == pytest.approx(1.305)
    snap = data.load_snapshot(task_ws, clock=lambda: 0.0)
    board = {r["id"]: r for r in snap.leaderboard}
    assert snap.seed_count(board[a]) == 2 and snap.seed_count(board[other]) == 1
