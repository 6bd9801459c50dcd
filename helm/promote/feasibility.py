"""Can this promotion pass the record rules at all? Decided from the runs already scored.

Training seeds costs GPU-hours; the validator's verdict (significance against the current
SOTA, the 16,000,000-byte cap, the time caps; ``golf_task.validate``) comes only after them.
Most of that verdict is already written in the store: the scored runs of the same code and
configuration (the candidate and its repeats under other seeds) give a mean and a spread,
their logs give the artifact bytes and the times. So the plan states, with the numbers,
whether a record is within reach, and the promotion defaults to the non-record track when it
is not (``resolve_track``); the operator can still ask for a record, warned.

The significance rule (``golf_task.validate``): beat SOTA by at least 0.005 nats at p < 0.01,
a one-sided one-sample t-test of the seeds' val_bpb against the bar SOTA - 0.005 r, where r
is the folder's bpb per nat (val_bpb / val_loss). Projected here for the planned seeds under
the scores so far: when every planned seed is already scored the outcome is exact; otherwise
the new seeds are assumed to score like the ones measured (their mean and spread; the pooled
seed spread of the campaign, ``keeprule.seed_spread``, when only one seed is scored).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from golf_task.limits import (
    ARTIFACT_CAP_BYTES,
    EVAL_CAP_MS,
    MIN_IMPROVEMENT_NATS,
    SIGNIFICANCE_ALPHA,
    TIME_GRACE_MS,
    TRAIN_CAP_MS,
)

if TYPE_CHECKING:
    from helm.workspace import Workspace

MAX_SEEDS_SUGGESTED = 100  # beyond this "about N seeds" is no advice worth printing
TRACK_RECORD, TRACK_NON_RECORD = "record", "non-record"


class PlanLike(Protocol):
    """What ``assess`` reads of a ``helm.promote.plan.Plan`` (plan.py imports this module's
    verdict type, so this module does not import plan.py)."""

    scored: dict[int, dict[str, Any]]
    slots: Sequence[Any]


@dataclass(frozen=True)
class Evidence:
    """One scored seed of the candidate's code and configuration, as the store and log say."""

    run_id: int
    seed: int
    val_bpb: float
    val_loss: float | None = None
    bytes_total: int | None = None
    train_time_ms: float | None = None
    eval_time_ms: float | None = None


@dataclass
class Feasibility:
    """The verdict (``reachable``: True, False, or None when the numbers cannot tell) and
    every figure behind it; ``reasons`` say why a record is out of reach."""

    reachable: bool | None
    reasons: list[str]
    basis: str  # the sentence behind a verdict of "within reach" (or why it cannot tell)
    sota: float
    seeds_planned: int
    runs: list[int]
    seeds: list[int]
    mean: float | None = None
    std: float | None = None  # sample std of the scores the projection uses
    spread: float | None = None  # the spread assumed for the planned seeds
    spread_source: str = ""
    exact: bool = False  # every planned seed is scored: the test's outcome is known
    bpb_per_nat: float | None = None
    bar: float | None = None  # SOTA - 0.005 nats, in bpb
    gain_nats: float | None = None
    p_value: float | None = None
    max_std: float | None = None  # the largest seed std at which the planned seeds pass
    seeds_needed: int | None = None
    bytes_max: int | None = None
    train_ms_max: float | None = None
    eval_ms_max: float | None = None
    non_record_ok: bool = True  # the cap and the eval time hold on every track
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.reachable is False:
            return "a record is out of reach because " + "; ".join(self.reasons)
        if self.reachable is None:
            return f"a record may or may not be within reach: {self.basis}"
        return f"a record is within reach: {self.basis}"

    def lines(self) -> list[str]:
        """The plan's lines: what was measured, against what, and the verdict."""
        runs = ", ".join(f"#{r}" for r in self.runs) or "-"
        out = []
        if self.mean is not None:
            std = f", std {self.std:.5f}" if self.std is not None else ""
            out.append(
                f"scored so far: {len(self.runs)} seed(s) of this code and config "
                f"(runs {runs}): mean val_bpb {self.mean:.5f}{std}"
            )
        if self.bar is not None and self.bpb_per_nat is not None:
            out.append(
                f"SOTA {self.sota:.5f}: the bar is {self.bar:.5f} bpb "
                f"({MIN_IMPROVEMENT_NATS} nats below it at {self.bpb_per_nat:.4f} bpb/nat), "
                f"p < {SIGNIFICANCE_ALPHA} over {self.seeds_planned} seed(s)"
            )
        else:
            out.append(f"SOTA {self.sota:.5f}")
        if self.bytes_max is not None:
            out.append(
                f"artifact: {self.bytes_max:,} bytes (largest) of the {ARTIFACT_CAP_BYTES:,} cap"
            )
        out.append(self.verdict)
        out += self.notes
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        return data


def resolve_track(asked: str | None, feas: Feasibility | None) -> tuple[str, str]:
    """The track to promote on and the line that says why (``asked`` None: the default)."""
    out = feas is not None and feas.reachable is False
    if asked is None:
        if out:
            return TRACK_NON_RECORD, "non-record (the default, since a record is out of reach)"
        return TRACK_RECORD, "record (the default: a record is not ruled out)"
    if asked == TRACK_RECORD and out:
        return asked, (
            "record, as asked. WARNING: a record is out of reach, so the validator will "
            "refuse the folder"
        )
    return asked, f"{asked}, as asked"


# Arithmetic ------------------------------------------------------------------------------
def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _t_crit(n: int) -> float:
    """The one-sided critical t for ``n`` seeds (df n - 1) at the rule's alpha."""
    from scipy import stats  # heavy; only this module's projections need it

    return float(stats.t.ppf(1.0 - SIGNIFICANCE_ALPHA, n - 1))


def _p_value(mean: float, std: float, n: int, bar: float) -> float:
    """One-sided p of "mean below bar" for n seeds with sample std ``std`` (the validator's
    ``ttest_1samp(..., alternative="less")`` on scores with these moments)."""
    if std == 0.0:
        return 0.0 if mean < bar else 1.0
    from scipy import stats

    t_stat = (mean - bar) / (std / math.sqrt(n))
    return float(stats.t.cdf(t_stat, n - 1))


def _seeds_needed(mean: float, std: float, bar: float) -> int | None:
    for n in range(2, MAX_SEEDS_SUGGESTED + 1):
        if _p_value(mean, std, n, bar) < SIGNIFICANCE_ALPHA:
            return n
    return None


def judge(
    evidence: list[Evidence],
    *,
    sota: float,
    seeds_planned: int,
    planned_scores: list[float] | None = None,
    pooled_spread: float | None = None,
) -> Feasibility:
    """The verdict from the scored seeds (``evidence``) for ``seeds_planned`` seeds.

    ``planned_scores``: the val_bpb of every planned seed when all are scored already (the
    outcome is then exact); ``pooled_spread``: the campaign's seed spread, used when the
    evidence alone has no spread (a single seed).
    """
    feas = Feasibility(
        reachable=True,
        reasons=[],
        basis="",
        sota=sota,
        seeds_planned=seeds_planned,
        runs=[e.run_id for e in evidence],
        seeds=[e.seed for e in evidence],
    )
    _limits(feas, evidence)
    if not evidence:
        feas.reachable = None
        feas.basis = "no seed of this code and config has a score yet"
        return feas
    scores = planned_scores if planned_scores else [e.val_bpb for e in evidence]
    feas.exact = bool(planned_scores)
    feas.mean, feas.std = _mean(scores), _std(scores)
    ratios = [e.val_bpb / e.val_loss for e in evidence if e.val_loss]
    if not ratios:
        if feas.reachable:  # a limit already broken stays the verdict
            feas.reachable = None
        feas.basis = "no run has a val_loss, so 0.005 nats cannot be converted to bpb"
        return feas
    feas.bpb_per_nat = r = _mean(ratios)
    feas.bar = bar = sota - MIN_IMPROVEMENT_NATS * r
    feas.gain_nats = (sota - feas.mean) / r
    _significance(feas, feas.mean, bar, pooled_spread)
    return feas


def _out(feas: Feasibility, reason: str) -> None:
    feas.reachable = False
    feas.reasons.append(reason)


def _limits(feas: Feasibility, evidence: list[Evidence]) -> None:
    """The cap and the time caps: a scored seed over one is a folder the validator refuses."""
    sized = [e for e in evidence if e.bytes_total is not None]
    if sized:
        top = max(sized, key=lambda e: e.bytes_total or 0)
        feas.bytes_max = top.bytes_total
        if (top.bytes_total or 0) > ARTIFACT_CAP_BYTES:
            feas.non_record_ok = False
            _out(
                feas,
                f"the artifact of run #{top.run_id} (seed {top.seed}) is {top.bytes_total:,} "
                f"bytes, over the {ARTIFACT_CAP_BYTES:,}-byte cap (on every track)",
            )
    for attr, cap, what, every in (
        ("train_time_ms", TRAIN_CAP_MS, "trained", False),
        ("eval_time_ms", EVAL_CAP_MS, "evaluated", True),
    ):
        timed = [e for e in evidence if getattr(e, attr) is not None]
        if not timed:
            continue
        top = max(timed, key=lambda e: getattr(e, attr))
        ms = float(getattr(top, attr))
        setattr(feas, attr.replace("_time_ms", "_ms_max"), ms)
        if ms > cap + TIME_GRACE_MS:
            where = "on every track" if every else "the non-record track allows it"
            if every:
                feas.non_record_ok = False
            _out(
                feas,
                f"run #{top.run_id} (seed {top.seed}) {what} for {ms / 1000:.1f}s, over the "
                f"{cap / 1000:.0f}s cap ({where})",
            )


def _significance(feas: Feasibility, mean: float, bar: float, pooled: float | None) -> None:
    n = feas.seeds_planned
    counted = "the planned seeds' scores" if feas.exact else f"{len(feas.runs)} scored seed(s)"
    head = (
        f"mean val_bpb {mean:.5f} over {counted} is {abs(mean - bar):.5f} bpb "
        f"{'under' if mean < bar else 'over'} the bar {bar:.5f} "
        f"(SOTA {feas.sota:.5f} less {MIN_IMPROVEMENT_NATS} nats; the gain on SOTA is "
        f"{feas.gain_nats:+.5f} nats, {MIN_IMPROVEMENT_NATS} needed)"
    )
    if mean >= bar:
        _out(feas, f"{head}; new seeds score around this mean, so no number of them passes")
        return
    if n < 2:
        _out(feas, f"one seed cannot show p < {SIGNIFICANCE_ALPHA} (plan 3 seeds)")
        return
    spread, source = feas.std, "the scores'"
    if spread is None and pooled is not None:
        spread, source = pooled, "the campaign's pooled seed"
    feas.spread = spread
    feas.spread_source = source if spread is not None else "unknown"
    feas.max_std = (bar - mean) * math.sqrt(n) / _t_crit(n)
    if spread is None:
        if feas.reachable:
            feas.basis = (
                f"{head}; no repeat measures the seed spread yet, and {n} seeds pass if "
                f"their std stays under {feas.max_std:.5f}"
            )
        return
    feas.p_value = p = _p_value(mean, spread, n, bar)
    projected = "gives" if feas.exact else "would give"
    test = (
        f"{n} seeds at {source} std {spread:.5f} {projected} p={p:.2g} "
        f"{'<' if p < SIGNIFICANCE_ALPHA else '>='} {SIGNIFICANCE_ALPHA}"
    )
    if p >= SIGNIFICANCE_ALPHA:
        feas.seeds_needed = _seeds_needed(mean, spread, bar)
        more = (
            f", about {feas.seeds_needed} seeds at this spread"
            if feas.seeds_needed and not feas.exact
            else ""
        )
        _out(feas, f"{head}, but {test} (it needs std <= {feas.max_std:.5f}{more})")
    elif feas.reachable:
        feas.basis = f"{head}, and {test}"


# From the store ----------------------------------------------------------------------------
def assess(ws: Workspace, plan: PlanLike, sota: float) -> Feasibility:
    """The verdict for ``plan`` against ``sota``, from its scored runs of the same config."""
    from helm.agents.keeprule import seed_spread
    from helm.models.runs import seed_scores
    from helm.promote import sources as src

    evidence = []
    for seed, run in sorted(plan.scored.items(), key=lambda kv: kv[1]["id"]):
        facts = src.log_facts(ws, run)
        evidence.append(
            Evidence(
                run_id=int(run["id"]),
                seed=seed,
                val_bpb=float(run["val_bpb"]),
                val_loss=run.get("val_loss"),
                bytes_total=run.get("bytes_total"),
                train_time_ms=run.get("train_time_ms"),
                eval_time_ms=facts.eval_time_ms,
            )
        )
    known = [s.val_bpb for s in plan.slots if s.action == "reuse" and s.val_bpb is not None]
    planned = known if len(known) == len(plan.slots) else None
    pooled = None
    if planned is None and len(evidence) < 2:
        with ws.db(write=False) as db:
            pooled, _dof = seed_spread(seed_scores(db))
    return judge(
        evidence,
        sota=sota,
        seeds_planned=len(plan.slots),
        planned_scores=planned,
        pooled_spread=pooled,
    )
