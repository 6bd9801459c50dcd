"""How helm prints numbers for people: scores, bytes, deltas, ages and durations.

One module for the command line, the TUI and the reports, so that a score reads the same
everywhere and a missing value is always printed one way (``MISSING``). A leaf: it imports
only the standard library and ``golf_task.limits``, so that the agents' fast commands
(``helm context``, ``helm feed post``) can use it for free.
"""

from __future__ import annotations

import time

from golf_task.limits import ARTIFACT_CAP_BYTES

MISSING = "-"
"""What every table and line prints for a value that is not there: no score, no size, no
time. Prose may say more (``no scored runs yet``) but never a second placeholder."""

SCORE_DIGITS = 4
"""val_bpb differences that matter are around 1e-3; four decimals show them."""


def num(value: float | int | None, spec: str = "") -> str:
    """Any number with a ``format`` spec, or ``MISSING``."""
    return MISSING if value is None else format(value, spec)


def score(value: float | None, digits: int = SCORE_DIGITS) -> str:
    """A val_bpb (or any bits-per-byte score): ``1.2244``; ``MISSING`` when unscored."""
    return MISSING if value is None else f"{value:.{digits}f}"


def loss(value: float | None) -> str:
    """A training or validation loss in nats: ``2.880``."""
    return MISSING if value is None else f"{value:.3f}"


def signed(value: float, digits: int = SCORE_DIGITS, *, true_minus: bool = False) -> str:
    """``+0.0012`` / ``-0.0031``; ``true_minus`` writes U+2212 for text read by people."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", "\u2212") if true_minus else text


def delta(value: float | None, base: float | None, digits: int = SCORE_DIGITS) -> str:
    """``value - base`` signed (negative is better for a score), or ``MISSING``."""
    if value is None or base is None:
        return MISSING
    return signed(value - base, digits)


def byte_count(n: int | None) -> str:
    """Exact bytes with thousands separators: ``15,090,000`` (the cap is decimal bytes)."""
    return MISSING if n is None else f"{n:,}"


def megabytes(n: int | None) -> str:
    """Decimal megabytes, two places: ``15.09M``."""
    return MISSING if n is None else f"{n / 1e6:.2f}M"


def headroom(n: int, cap: int = ARTIFACT_CAP_BYTES) -> int:
    """Bytes left under the artifact cap (negative when over)."""
    return cap - n


def artifact_size(n: int | None, cap: int = ARTIFACT_CAP_BYTES) -> str:
    """An artifact's size with its room under the cap: ``15.09M +910k``, ``16.10M over``."""
    if n is None:
        return MISSING
    room = headroom(n, cap)
    if room < 0:
        return f"{megabytes(n)} over"
    return f"{megabytes(n)} +{room / 1e3:.0f}k"


def age(seconds: float | None) -> str:
    """``42s``, ``7m``, ``3h``, ``2d``: ages and ETAs at a glance, never wider than 4."""
    if seconds is None:
        return MISSING
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def since(ts: float | None, now: float | None = None) -> str:
    """The age of a timestamp (``now`` defaults to the wall clock)."""
    if ts is None:
        return MISSING
    return age((time.time() if now is None else now) - ts)


def duration(seconds: float | None) -> str:
    """A length of time to the second: ``42s``, ``9m50s``, ``1h02m``."""
    if seconds is None:
        return MISSING
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def gpu_hours(seconds: float | None) -> str:
    """GPU-seconds as GPU-hours: ``0.62``, ``12.4``, ``<0.01`` for a few seconds."""
    if seconds is None:
        return MISSING
    hours = max(0.0, seconds) / 3600.0
    if 0 < hours < 0.005:
        return "<0.01"
    return f"{hours:.1f}" if hours >= 10 else f"{hours:.2f}"


def money(value: float | None) -> str:
    """USD to the cent: ``$12.40``; ``-`` when unknown (a try ran on a host without a price)."""
    return MISSING if value is None else f"${value:,.2f}"
