"""Loss-curve points from streamed log lines, built incrementally as the tail reads them.

``golf_task.logs`` parses a log into its summary (score, bytes, last step); the curve needs
every step instead, so this reads the two step-line shapes the records print
(``step:S/N train_loss:X ...`` and ``step:S/N val_loss:X val_bpb:Y ...``, ``key=v`` too)
and keeps a bounded number of points by thinning the oldest half when full.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_TRAIN = re.compile(rf"(?:step:\s*)?(\d+)/(\d+)\s+(?:train_)?loss[:=]\s*({_NUM})")
_VAL = re.compile(rf"(?:step:\s*)?(\d+)/(\d+)\s+val_loss[:=]\s*({_NUM})\s+val_bpb[:=]\s*({_NUM})")


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
        for line in lines:
            if "step" not in line and "/" not in line:
                continue
            if m := _VAL.search(line):
                self.val_loss.append((float(m.group(1)), float(m.group(3))))
                self.total_steps = int(m.group(2))
                added = True
            elif m := _TRAIN.search(line):
                self.train.append((float(m.group(1)), float(m.group(3))))
                self.total_steps = int(m.group(2))
                added = True
        if len(self.train) > self.max_points:  # keep the shape, drop half the old detail
            half = len(self.train) // 2
            self.train = self.train[:half:2] + self.train[half:]
        return added
