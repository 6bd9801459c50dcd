"""Keep or discard: the noise-aware rule that replaces autoresearch's strict ``<``.

A run is kept only if it beats the branch's best by more than both a fixed minimum and
``k`` times the seed-to-seed spread of val_bpb. The spread is measured, not assumed: runs of
the same code and environment under different seeds form groups, and the pooled sample
standard deviation over every group with at least two scores is the spread. Before any such
repeat exists the configured ``default_spread`` stands in. With two seeds of one config the
pooled std is |a - b| / sqrt(2), so with k = 2 a re-seeded copy of the best (the change
autoresearch kept as an "improvement") can never clear the bar.

The branch's best a run must beat starts, on a new base, at the base's mean
(``helm.agents.report.branch_start``); the spread's arithmetic and the grouping of runs into
seeds live with the base in ``helm.models.base`` (every reader of seeds uses them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from helm.agents.config import KeepRule
from helm.models.base import pooled_spread, seed_spread

__all__ = ["Verdict", "decide", "pooled_spread", "seed_spread", "threshold"]


@dataclass(frozen=True)
class Verdict:
    status: str  # keep | discard | crash
    note: str
    threshold: float | None = None
    improvement: float | None = None


def threshold(rule: KeepRule, spread: float | None) -> float:
    s = rule.default_spread if spread is None else spread
    return max(rule.min_delta, rule.k * s)


def decide(
    val_bpb: float | None,
    best: float | None,
    rule: KeepRule,
    spread: float | None,
    *,
    baseline: bool = False,
) -> Verdict:
    """The verdict for a finished run (``val_bpb`` None or not finite: it crashed)."""
    if val_bpb is None or not math.isfinite(val_bpb):
        return Verdict("crash", "no finite score")
    if baseline or best is None:
        why = "reference run" if baseline else "first run on this base"
        return Verdict("keep", f"{why}: the branch's best is measured from here")
    bar = threshold(rule, spread)
    gain = best - val_bpb
    spread_s = "default" if spread is None else f"{spread:.5f}"
    if gain > bar:
        return Verdict("keep", f"improves by {gain:.5f} > {bar:.5f} (spread {spread_s})", bar, gain)
    return Verdict(
        "discard", f"improvement {gain:+.5f} is within {bar:.5f} (spread {spread_s})", bar, gain
    )
