"""Where the sweep agent looks next: small steps around the best, sometimes a random pair.

Local search first (one knob, one neighbouring value: the measurable kind of change the
operator can read as an effect size), random search with probability ``random_prob`` (two
knobs at once, to get out of a flat neighbourhood). Integer knobs keep their power-of-two
granularity (MODEL_DIM 512 goes to 384 or 640, not 511) so that shapes stay divisible;
booleans are toggled (an ablation).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from helm.agents.knobs import Knob, format_value, parse_value


@dataclass(frozen=True)
class Proposal:
    changes: dict[str, str]
    description: str
    baseline: bool = False
    seed: int | None = None
    kind: str = "local"  # reference | noise | fixed | queued | local | random
    directive_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _granule(v: int) -> int:
    g = 1
    while g < 64 and v % (g * 2) == 0:
        g *= 2
    return g


def neighbours(knob: Knob, value: int | float | bool) -> list[int | float | bool]:
    """Nearby values of one knob, nearest first, without the current one."""
    if knob.kind is bool:
        return [not value]
    if knob.kind is int:
        v = int(value)
        if abs(v) < 16:
            cands = [v + 1, v - 1, v + 2, v - 2]
            return [c for c in cands if c >= 0 and c != v]
        g = _granule(v)
        out: list[int | float | bool] = []
        for f in (1.25, 0.75, 2.0, 0.5):
            c = max(g, round(v * f / g) * g)
            if c != v and c not in out:
                out.append(c)
        return out
    v = float(value)
    if v == 0.0:
        return [1e-3, 1e-2]
    factors = (1.25, 0.8, 1.6, 0.6, 2.0, 0.5)
    if 0.5 <= v < 1.0:
        # momenta, betas, decays: step in 1 - v, so 0.99 goes to 0.9875 or 0.992, never past 1
        return [1.0 - (1.0 - v) * f for f in factors]
    return [v * f for f in factors]


def current_values(knobs: dict[str, Knob], env: dict[str, str]) -> dict[str, int | float | bool]:
    out: dict[str, int | float | bool] = {}
    for name, knob in knobs.items():
        try:
            out[name] = parse_value(knob, env[name]) if name in env else knob.default
        except ValueError:
            out[name] = knob.default
    return out


def candidate_keys(
    knobs: dict[str, Knob], *, only: Iterable[str], exclude: Iterable[str], focus: Iterable[str]
) -> list[str]:
    names = set(knobs) - set(exclude)
    only_s, focus_s = set(only), set(focus)
    if only_s:
        names &= only_s
    if focus_s:
        names &= focus_s
    return sorted(names)


def propose(
    knobs: dict[str, Knob],
    env: dict[str, str],
    keys: list[str],
    rng: random.Random,
    *,
    random_prob: float,
    seen: Callable[[dict[str, str]], bool],
    avoid: Callable[[str, str], bool] = lambda key, value: False,
    tries: int = 60,
) -> Proposal | None:
    """A change of one knob (or two, at random) that has not been run from this point.

    ``avoid(key, value)`` vetoes a value known to be bad wherever it is tried (one that
    crashed the script, such as a head count the model dimension does not divide).
    """
    if not keys:
        return None
    values = current_values(knobs, env)
    for attempt in range(tries):
        pair = attempt % 3 == 0 and rng.random() < random_prob and len(keys) > 1
        picked = rng.sample(keys, 2) if pair else [rng.choice(keys)]
        changes: dict[str, str] = {}
        for key in picked:
            near = neighbours(knobs[key], values[key])
            if not near:
                break
            # nearest values first for local steps; random steps may jump further
            choice = rng.choice(near) if pair else near[min(len(near) - 1, attempt // 6)]
            changes[key] = format_value(choice)
        if len(changes) != len(picked) or all(env.get(k) == v for k, v in changes.items()):
            continue
        if any(avoid(k, v) for k, v in changes.items()):
            continue
        if seen({**env, **changes}):
            continue
        desc = ", ".join(
            f"{k} {format_value(values[k])}\u2192{v}" for k, v in sorted(changes.items())
        )
        return Proposal(changes, desc, kind="random" if pair else "local")
    return None
