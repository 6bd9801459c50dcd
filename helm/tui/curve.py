"""Loss-curve points from streamed log lines, built incrementally as the tail reads them.

``golf_task.logs`` parses a log into its summary (score, bytes, last step); the curve needs
every step instead, so it reads each line with the same grammar (``golf_task.log_lines``:
``step:S/N train_loss:X ...`` and ``step:S/N val_loss:X val_bpb:Y ...``, ``key=v`` too,
after any timestamp prefix), so a line the parser counts is a point here and nothing else
is, and keeps a bounded number of points by thinning the oldest half when full.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from golf_task.log_lines import STEP_TRAIN_RE, STEP_VAL_RE, strip_ts


@dataclass
class Curve:
    """Train-loss and validation points of one job; ``add_lines`` is cheap per line."""

    max_points: int = 2000
    train: list[tuple[float, float]] = field(default_factory=list)
    val_loss: list[tuple[float, float]] = field(default_factory=list)  # same units as train
    total_steps: int | None = None

    def add_lines(self, lines: Iterable[str]) -> bool:
        """Parse new lines; True when a point was added (the chart needs redrawing)."""
        added = False
        for raw in lines:
            if "/" not in raw:  # every step line has its S/N
                continue
            line = strip_ts(raw)
            train = STEP_TRAIN_RE.match(line)
            m = train if train is not None else STEP_VAL_RE.match(line)
            if m is None:
                continue
            loss = float(m.group(3))
            if not math.isfinite(loss):  # a diverged step (nan, inf) has no place on a chart
                continue
            (self.train if train is not None else self.val_loss).append((float(m.group(1)), loss))
            self.total_steps = int(m.group(2))
            added = True
        if len(self.train) > self.max_points:  # keep the shape, drop half the old detail
            half = len(self.train) // 2
            self.train = self.train[:half:2] + self.train[half:]
        return added
