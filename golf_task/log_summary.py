"""``LogSummary``: what a training log says, as the parser reports it.

The result type is shared by the parser, the validator, the dispatcher and the promotion
flow; it lives on its own so they can name it without reading the parser's internals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LogSummary:
    """What a log says right now; every field is None until the log has said it."""

    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    last_val_loss: float | None = None
    last_val_bpb: float | None = None
    train_time_ms: float | None = None
    step_avg_ms: float | None = None
    eta_s: float | None = None
    wallclock_stopped: bool = False
    score_line: str | None = None
    val_loss: float | None = None
    val_bpb: float | None = None
    bytes_total: int | None = None
    total_label: str | None = None
    bytes_code: int | None = None
    bytes_model: int | None = None
    stop_step: int | None = None
    eval_time_ms: float | None = None
    peak_memory_mib: float | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)
    # Extras the validator uses: the uncompressed code size when a log prints both, and the
    # model's own label (e.g. ``int8+zlib``).
    bytes_code_raw: int | None = None
    model_label: str | None = None
    # Why the last score line was refused (a value that is not one whole finite number, a
    # control byte in the line); None when the score, if any, was read cleanly.
    score_rejected: str | None = None
    # The score's values as the log printed them: the decimals a claim is checked against.
    val_bpb_text: str | None = None
    val_loss_text: str | None = None
    # A run header (hyperparameters, model_params, warmup), echoed script or training step
    # was read: the log shows a run, not merely a quoted result line.
    has_run: bool = False
    # What runs after the last training step (``eval``, ``quantize``, ``round trip``,
    # ``sliding``, ``ttt``, ``done``; None while training; golf_task.log_phase). When it
    # began is the reader's clock (the dispatcher stamps the job row): most logs carry none.
    phase: str | None = None

    @property
    def seed(self) -> int | None:
        """The run's seed from its hyperparameters, if the log printed one."""
        for key in ("seed", "s"):
            value = self.hyperparameters.get(key)
            if value is not None and value.isdigit():
                return int(value)
        return None

    @property
    def has_score(self) -> bool:
        return self.val_bpb is not None

    @property
    def is_training_log(self) -> bool:
        """True when any line had a training log's shape: a run, a score (even one refused),
        a size line or a wallclock stop. A README or a data file parses to nothing."""
        sizes = (self.bytes_total, self.bytes_model, self.bytes_code, self.bytes_code_raw)
        return (
            self.has_run
            or self.has_score
            or self.score_rejected is not None
            or self.wallclock_stopped
            or any(v is not None for v in sizes)
        )

    def to_json(self) -> dict:
        """Fields named as in ``expected.json`` first, then the progress fields; absent = None."""
        out: dict = {}
        for key in _JSON_ORDER:
            value = getattr(self, key)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            out[key] = value
        out["wallclock_stopped"] = self.wallclock_stopped
        if self.hyperparameters:
            out["hyperparameters"] = dict(self.hyperparameters)
        return out


_JSON_ORDER = [
    "val_bpb",
    "val_loss",
    "score_line",
    "bytes_total",
    "total_label",
    "bytes_code",
    "bytes_model",
    "stop_step",
    "train_time_ms",
    "eval_time_ms",
    "peak_memory_mib",
    "bytes_code_raw",
    "model_label",
    "score_rejected",
    "step",
    "total_steps",
    "train_loss",
    "last_val_loss",
    "last_val_bpb",
    "step_avg_ms",
    "eta_s",
    "phase",
]
