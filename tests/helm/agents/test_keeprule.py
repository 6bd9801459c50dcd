"""The noise-aware keep rule (autoresearch's strict `<` kept a re-seeded run)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from helm.agents.config import KeepRule
from helm.agents.keeprule import decide, pooled_spread, threshold

RULE = KeepRule(min_delta=0.001, k=2.0, default_spread=0.0)


def test_first_run_and_reference_are_kept_crashes_are_crashes() -> None:
    assert decide(1.3, None, RULE, None).status == "keep"
    assert decide(1.4, 1.3, RULE, None, baseline=True).status == "keep"
    assert decide(None, 1.3, RULE, None).status == "crash"
    assert decide(math.nan, 1.3, RULE, None).status == "crash"


def test_improvement_must_beat_min_delta_and_k_spread() -> None:
    assert decide(1.2995, 1.3, RULE, None).status == "discard"  # 0.0005 < min_delta
    assert decide(1.2980, 1.3, RULE, None).status == "keep"
    assert decide(1.2980, 1.3, RULE, 0.002).status == "discard"  # needs > 0.004
    assert decide(1.2950, 1.3, RULE, 0.002).status == "keep"
    assert threshold(RULE, None) == 0.001
    assert threshold(KeepRule(0.001, 2.0, 0.01), None) == 0.02


def test_pooled_spread() -> None:
    assert pooled_spread([[1.0]]) == (None, 0)
    s, dof = pooled_spread([[1.0, 1.2], [2.0, 2.0, 2.0], [5.0]])
    assert dof == 3
    assert math.isclose(s, math.sqrt(0.02 / 3))


@given(
    st.floats(1.0, 4.0),
    st.floats(-0.5, 0.5).filter(lambda d: abs(d) > 1e-9),
)
def test_a_reseeded_copy_of_the_best_is_never_kept(best: float, noise: float) -> None:
    """Two seeds of one config measure the spread; with k=2 the re-seed cannot clear it."""
    reseeded = best + noise
    spread, _ = pooled_spread([[best, reseeded]])
    assert decide(reseeded, best, KeepRule(0.0, 2.0, 0.0), spread).status == "discard"
