"""Whether a record can pass at all, told in the plan before any GPU time is spent.

Issue 16: the wizard trained seeds first and only then reported "significance: mean 2.944 vs
SOTA 1.061 ... p=1", and ``--dry-run`` did not warn. The plan now judges the record rules
from the runs already scored (the candidate and its repeats of the same code and
configuration) and defaults to the non-record track when a record is out of reach.

The runs are committed in a real task repository and carry hand-written logs in the
baseline's format (no training): planning reads them as it reads a campaign's.
"""

from __future__ import annotations

import math

import pytest

from golf_task.limits import ARTIFACT_CAP_BYTES
from golf_task.validate import DEFAULT_SOTA
from helm.promote.feasibility import Evidence, judge, resolve_track
from helm.workspace import Workspace

R = 0.59  # bpb per nat of these logs (val_bpb / val_loss)


def _ev(seed: int, bpb: float, **kw: object) -> Evidence:
    return Evidence(run_id=seed, seed=seed, val_bpb=bpb, val_loss=bpb / R, **kw)  # type: ignore[arg-type]


def scored_run(
    ws: Workspace,
    kit,
    *,
    seed: int,
    bpb: float,
    job_id: int,
    total: int = 1_000_000,
    train_ms: int = 1000,
) -> int:  # noqa: ANN001
    """A finished run of the tiny config on ``seed`` with its log (same code, same env)."""
    loss = bpb / R
    run_id = kit.commit_run(
        ws, env=kit.FAST_ENV, seed=seed, status="done", val_bpb=bpb, val_loss=loss,
        bytes_total=total, train_time_ms=train_ms, job_id=job_id, description="candidate",
    )  # fmt: skip
    code = (ws.task_dir / "train_gpt.py").stat().st_size
    log = ws.job_dir(job_id) / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        f"Hyperparameters:\n  seed: {seed}\n"
        f"step:10/10 val_loss:{loss:.4f} val_bpb:{bpb:.4f} train_time:{train_ms}ms "
        "step_avg:100.00ms\n"
        f"Code size: {code} bytes\n"
        f"Total submission size int8+zlib: {total} bytes\n"
        f"final_int8_zlib_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}\n"
    )
    return run_id


# ---------------------------------------------------------------------------- the arithmetic


def test_a_mean_above_the_bar_is_out_of_reach_whatever_the_seeds() -> None:
    feas = judge([_ev(42, 2.944)], sota=1.061, seeds_planned=3)
    assert feas.reachable is False
    bar = 1.061 - 0.005 * R
    assert feas.bar == pytest.approx(bar)
    assert feas.verdict.startswith("a record is out of reach because mean val_bpb 2.94400")
    assert f"over the bar {bar:.5f}" in feas.verdict
    assert f"{2.944 - bar:.5f} bpb over" in feas.verdict


def test_one_scored_seed_below_the_bar_is_within_reach_under_a_stated_spread() -> None:
    feas = judge([_ev(42, 1.00)], sota=1.061, seeds_planned=3)
    assert feas.reachable is True and feas.spread is None
    # the largest std at which 3 seeds at this mean still give p < 0.01 (df 2: t = 6.965)
    max_std = (1.061 - 0.005 * R - 1.00) * math.sqrt(3) / 6.964557
    assert feas.max_std == pytest.approx(max_std, rel=1e-4)
    assert "no repeat measures the seed spread yet" in feas.verdict
    assert f"std stays under {max_std:.5f}" in feas.verdict


def test_a_spread_too_wide_for_the_planned_seeds_is_out_of_reach_with_the_seeds_it_needs() -> None:
    # mean 1.05, std 0.0707 against a bar of 1.19705: p = 0.035 with 3 seeds
    feas = judge([_ev(1, 1.00), _ev(2, 1.10)], sota=1.2, seeds_planned=3)
    assert feas.reachable is False
    assert feas.std == pytest.approx(0.0707107, rel=1e-5)
    assert feas.p_value == pytest.approx(0.0350, abs=5e-4)
    assert "3 seeds at the scores' std 0.07071 would give p=0.035 >= 0.01" in feas.verdict
    # 4 seeds: t = 0.14705 * 2 / 0.07071 = 4.16 < 4.54 (df 3); 5 seeds: 4.65 > 3.75 (df 4)
    assert feas.seeds_needed == 5 and "about 5 seeds at this spread" in feas.verdict


def test_the_pooled_seed_spread_stands_in_for_a_single_seed() -> None:
    feas = judge([_ev(42, 1.00)], sota=1.2, seeds_planned=3, pooled_spread=0.001)
    assert feas.reachable is True
    assert "the campaign's pooled seed std 0.00100" in feas.verdict and "p=" in feas.verdict


def test_every_seed_scored_gives_the_exact_outcome() -> None:
    evidence = [_ev(1, 1.00), _ev(2, 1.0002), _ev(3, 0.9998)]
    feas = judge(evidence, sota=1.2, seeds_planned=3, planned_scores=[1.00, 1.0002, 0.9998])
    assert feas.exact and feas.reachable is True
    from scipy import stats

    bar = 1.2 - 0.005 * R
    p = stats.ttest_1samp([1.00, 1.0002, 0.9998], bar, alternative="less").pvalue
    assert feas.p_value == pytest.approx(float(p), rel=1e-6)  # the validator's own test


def test_one_planned_seed_cannot_be_significant() -> None:
    feas = judge([_ev(42, 1.0)], sota=1.2, seeds_planned=1)
    assert feas.reachable is False and "one seed cannot show p < 0.01" in feas.verdict


def test_an_artifact_over_the_cap_rules_out_every_track() -> None:
    feas = judge([_ev(42, 1.0, bytes_total=ARTIFACT_CAP_BYTES + 1)], sota=1.2, seeds_planned=3)
    assert feas.reachable is False and not feas.non_record_ok
    assert f"{ARTIFACT_CAP_BYTES + 1:,} bytes, over the 16,000,000-byte cap" in feas.verdict


def test_training_over_the_time_cap_rules_out_only_a_record() -> None:
    feas = judge([_ev(42, 1.0, train_time_ms=700_000.0)], sota=1.2, seeds_planned=3)
    assert feas.reachable is False and feas.non_record_ok
    assert "trained for 700.0s, over the 600s cap (the non-record track allows it)" in feas.verdict


def test_the_default_track_follows_the_verdict_and_an_explicit_record_is_warned() -> None:
    out = judge([_ev(42, 2.944)], sota=1.061, seeds_planned=3)
    inside = judge([_ev(42, 1.0)], sota=1.2, seeds_planned=3)
    assert resolve_track(None, out)[0] == "non-record"
    assert resolve_track(None, inside)[0] == "record"
    track, line = resolve_track("record", out)
    assert track == "record" and "WARNING: a record is out of reach" in line
    assert "WARNING" not in resolve_track("record", inside)[1]


# ---------------------------------------------------------------------------- the plan (CLI)


def test_dry_run_says_a_record_is_out_of_reach_and_defaults_to_non_record(
    task_ws: Workspace, helm, kit
) -> None:  # noqa: ANN001
    run_id = scored_run(task_ws, kit, seed=42, bpb=2.944, job_id=71)
    r = helm("promote", str(run_id), "--dry-run")
    assert r.code == 0, r.err
    bar = DEFAULT_SOTA - 0.005 * R
    assert "a record is out of reach because mean val_bpb 2.94400 over 1 scored seed(s)" in r.out
    assert f"over the bar {bar:.5f}" in r.out and f"SOTA {DEFAULT_SOTA:.5f}" in r.out
    assert "track: non-record (the default, since a record is out of reach)" in r.out
    assert "/records/track_non_record_16mb/" in r.out  # the folder it would write

    data = helm("promote", str(run_id), "--dry-run", "--json").json()
    assert data["track"] == "non-record"
    assert data["feasibility"]["reachable"] is False
    assert data["feasibility"]["mean"] == pytest.approx(2.944)
    assert data["feasibility"]["bar"] == pytest.approx(bar, rel=1e-6)
    assert data["feasibility"]["runs"] == [run_id]


def test_an_explicit_record_out_of_reach_is_planned_with_the_warning(
    task_ws: Workspace, helm, kit
) -> None:  # noqa: ANN001
    run_id = scored_run(task_ws, kit, seed=42, bpb=2.944, job_id=72)
    r = helm("promote", str(run_id), "--dry-run", "--track", "record")
    assert r.code == 0, r.err
    assert "track: record, as asked. WARNING: a record is out of reach" in r.out
    assert "/records/track_10min_16mb/" in r.out


def test_the_question_before_queueing_repeats_the_warning(task_ws: Workspace, helm, kit) -> None:  # noqa: ANN001
    run_id = scored_run(task_ws, kit, seed=42, bpb=2.944, job_id=77)
    r = helm(
        "promote", str(run_id), "--track", "record", "--author", "A", "--github-id", "a",
    )  # fmt: skip
    assert r.code == 1  # no terminal and no --yes: it asks nothing and queues nothing
    question = r.err.strip().splitlines()[-1]
    assert "a record is out of reach: the validator will refuse the folder after 2 new run(s)" in (
        question
    )
    assert "Queue 2 run(s)" in question and "pass --yes" in question
    with task_ws.db(write=False) as db:
        assert db.rows("SELECT COUNT(*) AS n FROM job")[0]["n"] == 0


def test_repeats_of_the_same_config_give_the_mean_and_spread(task_ws: Workspace, helm, kit) -> None:  # noqa: ANN001
    a = scored_run(task_ws, kit, seed=42, bpb=1.00, job_id=73)
    b = scored_run(task_ws, kit, seed=7, bpb=1.10, job_id=74)
    r = helm("promote", str(a), "--dry-run", "--json", "--sota", "1.2")
    feas = r.json()["feasibility"]
    assert (feas["runs"], feas["seeds"]) == ([a, b], [42, 7])
    assert feas["mean"] == pytest.approx(1.05) and feas["std"] == pytest.approx(0.0707107)
    assert feas["reachable"] is False and r.json()["track"] == "non-record"
    text = helm("promote", str(a), "--dry-run", "--sota", "1.2").out
    assert "scored so far: 2 seed(s) of this code and config (runs " in text
    assert "would give p=0.035 >= 0.01" in text


def test_within_reach_keeps_the_record_track(task_ws: Workspace, helm, kit) -> None:  # noqa: ANN001
    run_id = scored_run(task_ws, kit, seed=42, bpb=4.0, job_id=75)
    r = helm("promote", str(run_id), "--dry-run", "--sota", "10")
    assert r.code == 0, r.err
    assert "a record is within reach: mean val_bpb 4.00000" in r.out
    assert "track: record (the default" in r.out and "/records/track_10min_16mb/" in r.out


def test_a_missing_author_names_the_flag_on_the_command_line(
    task_ws: Workspace, helm, kit, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("HOME", str(task_ws.root))  # no git identity to fall back on
    monkeypatch.delenv("HELM_AUTHOR", raising=False)
    run_id = scored_run(task_ws, kit, seed=42, bpb=4.0, job_id=76)
    r = helm("promote", str(run_id), "--yes", "--github-id", "x")
    assert r.code == 1
    assert "an author is required" in r.err and "(set --author" in r.err
