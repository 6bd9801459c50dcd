"""Keep or discard: the noise-aware rule that replaces autoresearch's strict ``<``.

A run is kept only if it beats the branch's best by more than both a fixed minimum and
``k`` times the seed-to-seed spread of val_bpb. The spread is measured, not assumed: runs of
the same code and environment under different seeds form groups, and the pooled sample
standard deviation over every group with at least two scores is the spread. Before any such
repeat exists the configured ``default_spread`` stands in. With two seeds of one config the
pooled std is |a - b| / sqrt(2), so with k = 2 a re-seeded copy of the best (the change
autoresearch kept as an "improvement") can never clear the bar.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helm.agents.config import KeepRule


@dataclass(frozen=True)
class Verdict:
    status: str  # keep | discard | crash
    note: str
    threshold: float | None = None
    improvement: float | None = None


def pooled_spread(groups: Iterable[Sequence[float]]) -> tuple[float | None, int]:
    """Pooled sample std over groups with >= 2 values; (None, 0) when there are none."""
    ss, dof = 0.0, 0
    for values in groups:
        xs = [v for v in values if v is not None and math.isfinite(v)]
        if len(xs) < 2:
            continue
        mean = sum(xs) / len(xs)
        ss += sum((x - mean) ** 2 for x in xs)
        dof += len(xs) - 1
    if dof == 0:
        return None, 0
    return math.sqrt(ss / dof), dof


def seed_spread(scores: Iterable[Mapping[str, Any]]) -> tuple[float | None, int]:
    """The pooled spread of scored runs (``code_hash``, ``env_json``, ``seed``, ``val_bpb``,
    as ``helm.models.runs.seed_scores`` reads them), and its degrees of freedom.

    Runs group by (code, env); a group counts one score per seed, since a replay of the same
    seed says nothing about seed noise (the first score of a seed stands).
    """
    groups: dict[tuple[str, str], dict[Any, float]] = {}
    for r in scores:
        groups.setdefault((r["code_hash"], r["env_json"]), {}).setdefault(r["seed"], r["val_bpb"])
    return pooled_spread(list(g.values()) for g in groups.values())


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
