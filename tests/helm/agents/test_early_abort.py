"""Early abort: the rule on synthetic curves, on real tiny CPU runs and on the record logs.

The tiny runs (two references with their own seeds, and one candidate with a matrix learning
rate 100x the default) are made once per module and cached; the record logs are the
competition's own, replayed as the daemon would have seen them grow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import golf_task
from golf_task.logs import parse_file
from golf_task.presets import tiny_env
from helm.agents.early_abort import (
    ABORT,
    AT_RISK,
    OK,
    AbortRule,
    Curve,
    CurveReader,
    band_at,
    first_abort,
    judge,
    read_curve,
)

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "golf_fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/golf_fixtures")
SCRIPT = Path(golf_task.__file__).parent / "train_gpt.py"


# Synthetic curves -----------------------------------------------------------------------------
def _log(losses: dict[int, float], total: int = 100, *, ms: float = 100.0, head: str = "") -> str:
    lines = [head] if head else []
    for step, loss in sorted(losses.items()):
        lines.append(
            f"step:{step}/{total} train_loss:{loss:.4f} train_time:{step * ms:.0f}ms "
            f"step_avg:{ms:.2f}ms"
        )
    return "\n".join(lines) + "\n"


def _curve(fn, total: int = 100, every: int = 5, **kw) -> Curve:  # noqa: ANN001
    return read_curve(_log({s: fn(s) for s in range(every, total + 1, every)}, total, **kw))


def _ref(shift: float = 0.0) -> Curve:
    return _curve(lambda s: 6.0 - 2.0 * s / 100 + shift)


def test_band_has_a_floor_so_one_reference_is_not_a_zero_band() -> None:
    rule = AbortRule(spread_floor=0.01)
    one = band_at([4.0], rule)
    assert one is not None and one.spread == pytest.approx(0.04) and one.n == 1
    assert one.low < 4.0 < one.high
    wide = band_at([4.0, 4.2], rule)
    assert wide is not None and wide.spread == pytest.approx(0.1414, abs=1e-4)
    assert band_at([], rule) is None


def test_a_curve_like_the_base_is_never_aborted_and_a_worse_one_is_after_warm_up() -> None:
    refs = [_ref(-0.01), _ref(0.01)]
    rule = AbortRule(warmup_frac=0.3, patience=3, patience_frac=0.05)
    assert first_abort(_ref(0.005), refs, rule) is None
    worse = _ref(1.0)  # far worse from the very first step
    verdict = first_abort(worse, refs, rule)
    assert verdict is not None and verdict.state == ABORT
    # the first checks are at step 30 (warm-up), the third bad one at step 40
    assert verdict.step == 40 and verdict.bad_checks == 3
    assert verdict.value > verdict.band_high + verdict.margin
    assert verdict.frac_left == pytest.approx(0.6)
    assert verdict.gpu_seconds_saved == pytest.approx(60 * 0.1)  # 60 steps x 100 ms
    # one bad check is "at risk", not yet an abort
    early = judge(worse.upto(30), refs, rule)
    assert early.state == AT_RISK and early.bad_checks == 1
    assert judge(worse.upto(25), refs, rule).state == OK  # still in warm-up


def test_protected_runs_and_a_disabled_rule_never_abort() -> None:
    refs, worse = [_ref()], _ref(2.0)
    assert judge(worse, refs, protected=True).state == OK
    assert judge(worse, refs, AbortRule(enabled=False)).state == OK
    assert judge(worse, refs).state == ABORT


def test_references_are_interpolated_between_logged_steps_and_never_extrapolated() -> None:
    sparse = [_curve(lambda s: 6.0 - 2.0 * s / 100, every=20)]  # logged every 20 steps
    cand = _curve(lambda s: 6.0 - 2.0 * s / 100 + 0.001, every=5)
    verdict = judge(cand.upto(50), sparse, AbortRule(smooth=1))
    assert verdict.state == OK and verdict.step == 50
    assert (verdict.band_low + verdict.band_high) / 2 == pytest.approx(5.0)
    short = [_curve(lambda s: 6.0 - 2.0 * s / 100, total=100, every=5).upto(40)]
    late = judge(_ref(3.0), short)  # nothing to compare past step 40
    assert late.step == 40


def test_a_diverged_run_logging_nan_is_worse_than_any_band() -> None:
    cand = read_curve(_log({s: float("nan") for s in range(5, 101, 5)}))
    assert first_abort(cand, [_ref()]) is not None


def test_in_training_val_bpb_can_veto_a_train_loss_verdict() -> None:
    val = "step:{s}/100 val_loss:{v:.4f} val_bpb:{b:.4f} train_time:{t}ms step_avg:100.00ms"

    def with_val(fn_train, fn_val) -> Curve:  # noqa: ANN001
        lines = []
        for s in range(5, 101, 5):
            lines.append(f"step:{s}/100 train_loss:{fn_train(s):.4f} train_time:{s * 100}ms")
            if s % 10 == 0:
                v = fn_val(s)
                lines.append(val.format(s=s, v=v, b=v * 0.5, t=s * 100))
        return read_curve("\n".join(lines) + "\n")

    refs = [with_val(lambda s: 6 - s / 50, lambda s: 6 - s / 50)]
    # a worse train loss (say, more regularization) but a validation as good as the base's
    vetoed = with_val(lambda s: 7 - s / 50, lambda s: 6 - s / 50)
    assert first_abort(vetoed, refs) is None
    # a validation at step 0 (every run starts alike) vetoes nothing
    lines = ["step:0/100 val_loss:6.0000 val_bpb:3.0000 train_time:0ms"]
    lines += [
        f"step:{s}/100 train_loss:{7 - s / 50:.4f} train_time:{s * 100}ms" for s in range(5, 101, 5)
    ]
    ref0 = read_curve(
        "\n".join(
            [lines[0]]
            + [
                f"step:{s}/100 train_loss:{6 - s / 50:.4f} train_time:{s * 100}ms"
                for s in range(5, 101, 5)
            ]
        )
        + "\n"
    )
    assert first_abort(read_curve("\n".join(lines) + "\n"), [ref0]) is not None
    both = with_val(lambda s: 7 - s / 50, lambda s: 7 - s / 50)
    verdict = first_abort(both, refs)
    assert verdict is not None and verdict.val_bpb is not None
    assert verdict.unit == "bpb" and verdict.val_bpb > verdict.val_band_high


def test_per_token_losses_of_another_tokenizer_are_not_compared() -> None:
    head8k = "train_loader:dataset:fineweb10B_sp8192"
    head1k = "train_loader:dataset:fineweb10B_sp1024"
    ref = _curve(lambda s: 3.0 - s / 100, head=head1k)
    cand = _curve(lambda s: 5.0 - s / 100, head=head8k)  # larger tokens, larger loss per token
    assert cand.vocab == {"fineweb10B_sp8192"}
    verdict = judge(cand, [ref])
    assert verdict.state == OK and "tokenizer" in verdict.reason
    assert judge(_curve(lambda s: 5.0 - s / 100, head=head1k), [ref]).state == ABORT


def test_the_reader_streams_chunks_cut_anywhere_and_keeps_the_last_run() -> None:
    text = _log({1: 7.0, 2: 6.5, 3: 6.0}, 3) + _log({1: 5.0, 2: 4.0}, 2)
    whole = read_curve(text)
    assert whole.train == [(1, 5.0), (2, 4.0)] and whole.total_steps == 2
    reader = CurveReader()
    data = text.encode()
    for i in range(0, len(data), 7):
        reader.feed(data[i : i + 7])
    assert reader.curve.train == whole.train and reader.curve.step_ms == pytest.approx(100.0)
    stamped = read_curve("1776142719.400 5/20 train_loss: 9.0089 train_time: 0.1m tok/s: 1\n")
    assert stamped.train == [(5, 9.0089)] and stamped.train_time_ms == pytest.approx(6000.0)


# Real tiny CPU runs ---------------------------------------------------------------------------
TINY = {"TRAIN_LOG_EVERY": "2", "VAL_LOSS_EVERY": "25", "GPTQ": "0", "TTT": "0"}
TINY |= {"EVAL_STRIDE": "0", "PREQUANT_EVAL": "0", "FINAL_VAL": "0"}  # only the curve matters


DEFAULT_MATRIX_LR = 0.025  # the script's default (the broken run's header is checked for it)
RUNS = {
    "ref1": (1, {}),
    "ref2": (2, {}),
    "broken": (3, {"MATRIX_LR": str(DEFAULT_MATRIX_LR * 100)}),
}


@pytest.fixture(scope="module")
def tiny_logs(tiny_data_dir: Path, cross_process_lock) -> dict[str, Path]:  # noqa: ANN001
    """Two references and the broken candidate, run side by side once for every xdist
    worker: cached beside tiny_data_dir (its key covers the script; this folder's name
    covers TINY)."""
    key = hashlib.sha256(json.dumps(TINY, sort_keys=True).encode()).hexdigest()[:12]
    root = tiny_data_dir.parent / f"early_abort-{key}"
    done = root / "done"
    logs = {n: root / n / "logs" / f"{n}.txt" for n in RUNS}
    with cross_process_lock(Path(str(root) + ".lock")):
        if done.is_file():
            return logs
        shutil.rmtree(root, ignore_errors=True)
        procs = {}
        for name, (seed, extra) in RUNS.items():
            (root / name).mkdir(parents=True)
            env = tiny_env(tiny_data_dir, RUN_ID=name, SEED=seed, **TINY, **extra)
            procs[name] = subprocess.Popen(
                [sys.executable, str(SCRIPT)],
                cwd=root / name,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        for name, proc in procs.items():
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        done.write_text("")
        return logs


def test_a_learning_rate_100x_too_high_is_aborted_before_the_end(tiny_logs) -> None:  # noqa: ANN001
    refs = [read_curve(tiny_logs[n].read_bytes()) for n in ("ref1", "ref2")]
    broken = read_curve(tiny_logs["broken"].read_bytes())
    default = float(parse_file(tiny_logs["ref1"]).hyperparameters["matrix_lr"])
    header = parse_file(tiny_logs["broken"]).hyperparameters
    assert default == DEFAULT_MATRIX_LR and float(header["matrix_lr"]) == pytest.approx(
        100 * default
    )
    verdict = first_abort(broken, refs, time_cap_s=120)
    assert verdict is not None, judge(broken, refs)
    assert verdict.step is not None and verdict.step < broken.total_steps
    assert verdict.unit == "bpb" and verdict.value > verdict.band_high + verdict.margin
    assert verdict.band_low < verdict.band_high and verdict.margin > 0
    assert 0 < verdict.frac_left < 1 and verdict.gpu_seconds_saved > 0
    evidence = verdict.evidence()
    assert {"step", "value", "band_low", "band_high", "margin", "gpu_seconds_saved"} <= set(
        evidence
    )
    json.dumps(evidence)  # the store and the feed keep it as JSON
    # marked at risk before it was stopped
    earlier = [judge(broken.upto(s), refs, time_cap_s=120) for s, _ in broken.train]
    first_risk = next(v for v in earlier if v.state != OK)
    assert first_risk.state == AT_RISK and first_risk.step < verdict.step
    assert judge(broken, refs, protected=True).state == OK


def test_a_reference_rerun_with_another_seed_is_never_aborted(tiny_logs) -> None:  # noqa: ANN001
    ref1, ref2 = (read_curve(tiny_logs[n].read_bytes()) for n in ("ref1", "ref2"))
    assert ref1.train != ref2.train  # other seeds, other curves
    assert first_abort(ref1, [ref2], time_cap_s=120) is None
    assert first_abort(ref2, [ref1], time_cap_s=120) is None
    assert judge(ref2, [ref1]).step is not None  # compared, not skipped


# The record logs ------------------------------------------------------------------------------
def _records() -> dict[str, list[tuple[str, Curve, float]]]:
    expected = json.loads((FIXTURES / "expected.json").read_text())["records"]
    out: dict[str, list[tuple[str, Curve, float]]] = {}
    for folder, rec in sorted(expected.items()):
        seen: set[str] = set()
        for name, info in rec["logs"].items():
            data = (FIXTURES / "records" / folder / name).read_bytes()
            digest = hashlib.sha1(data).hexdigest()
            if digest in seen:  # train.log that duplicates a seed's log
                continue
            seen.add(digest)
            out.setdefault(folder, []).append((name, read_curve(data), float(info["val_bpb"])))
    return out


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the record logs are not here")
def test_no_record_run_would_have_been_aborted_against_a_base_it_beat() -> None:
    records = _records()
    pairs = compared = 0
    for cand_folder, cand_logs in records.items():
        for base_folder, base_logs in records.items():
            for name, cand, score in cand_logs:
                base = [
                    (n, c, b) for n, c, b in base_logs if (base_folder, n) != (cand_folder, name)
                ]
                if not base:
                    continue
                base_mean = sum(b for _, _, b in base) / len(base)
                if base_folder != cand_folder and score >= base_mean:
                    continue  # a record vs a base it did not beat: not the claim
                pairs += 1
                refs = [c for _, c, _ in base]
                verdict = first_abort(cand, refs, time_cap_s=600)
                assert verdict is None, (cand_folder, name, base_folder, verdict)
                compared += judge(cand, refs, time_cap_s=600).step is not None
    assert pairs >= 120  # every later-vs-earlier record and every seed vs its folder's others
    assert compared == pairs  # each pair was really compared (in bpb), none skipped
