"""What one line of a training log means: the reader behind ``golf_task.logs.LogParser``.

``LineReader`` holds everything a log has said so far (progress, score, sizes,
hyperparameters) and applies one complete line at a time; ``LogParser`` decides which lines
reach it (line by line in headers, keyword lines only while steps stream, none inside echoed
source). Split so the grammar's consequences and the stream's mechanics read apart.
"""

from __future__ import annotations

import math

from golf_task.log_lines import (
    BUDGET_LABEL,
    BUDGET_RE,
    CODE_RE,
    CONTROL_RE,
    EVAL_TIME_RE,
    HP_BLOCK_RE,
    HP_HEAD_RE,
    KV_LINE_RE,
    KV_RE,
    NEEDS_NEWLINE,
    NUM_TOKEN_RE,
    PARAMS_RE,
    PEAK_RE,
    SCORE_LINE_RE,
    SERIALIZED_RE,
    SOURCE_CHARS_RE,
    STEP_AVG_RE,
    STEP_TRAIN_RE,
    STEP_VAL_RE,
    STOP_RE,
    TOTAL_EVAL_RE,
    TOTAL_RE,
    TRAIN_TIME_RE,
    VAL_BPB_RE,
    VAL_LOSS_RE,
    duration_ms,
    float_or_none,
    number,
    strip_ts,
)
from golf_task.log_summary import LogSummary

__all__ = ["LineReader"]


class LineReader:
    """The state of one log as of the lines applied so far; ``summary`` reports it."""

    def __init__(self) -> None:
        self._in_hp_block = False
        self._has_run = False  # a run header, echoed script or training step was read
        self.hyperparameters: dict[str, str] = {}
        # artifact/score fields: last one in the file wins, across runs
        self._score_line: str | None = None
        self._val_loss: float | None = None
        self._val_bpb: float | None = None
        self._bpb_text: str | None = None
        self._loss_text: str | None = None
        self._score_rejected: str | None = None
        self._bytes_total: int | None = None
        self._total_label: str | None = None
        self._code_plain: int | None = None
        self._code_compressed: int | None = None
        self._code_raw: int | None = None
        self._bytes_model: int | None = None
        self._model_label: str | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        """Progress belongs to one run; a new run header in the same file starts it afresh."""
        self._step: int | None = None
        self._total: int | None = None
        self._train_loss: float | None = None
        self._last_val_loss: float | None = None
        self._last_val_bpb: float | None = None
        self._train_time_ms: float | None = None
        self._step_avg_ms: float | None = None
        self._avg_logged = False
        self._stopped = False
        self._stop_step: int | None = None
        self._stop_time_ms: float | None = None
        self._training_done = False
        self._eval_sum_ms: float = 0
        self._eval_seen = False
        self._total_eval_ms: float | None = None
        self._peak_mib: float | None = None

    # ------------------------------------------------------------------ one line

    def _line(self, line: str, *, header: bool, partial: bool = False) -> bool:
        """Apply one complete line; returns True when it is a training step line."""
        line = strip_ts(line.rstrip())
        if not line:
            self._in_hp_block = False
            return False
        first = line[0]
        if first in "|+[W" or (partial and line.startswith(NEEDS_NEWLINE)):
            return False  # nvidia-smi tables and torch warnings say nothing we read
        if header and first in "wl" and line.startswith(("warmup", "loop_warmup")):
            self._has_run = True
            return False
        if (first.isdigit() or line.startswith("step:")) and self._step_line(line):
            return True
        scored = first in "flq" and line.startswith(("final_", "legal_ttt", "quantized"))
        if scored and self._score(line):
            return False
        if first in "SCTb" and CONTROL_RE.search(line):
            return False  # a damaged size line says nothing
        if first == "s" and line.startswith("stopping_early"):
            self._stopping(line)
        elif first == "S" and line.startswith("Serialized model"):
            m = SERIALIZED_RE.match(line)
            if m is not None:
                self._model_label, self._bytes_model = m.group(1), int(m.group(2))
                self._training_done = True
        elif first == "C" and line.startswith("Code size"):
            m = CODE_RE.match(line)
            if m is not None:
                kind, n = m.group(1), int(m.group(2))
                if kind == "compressed":
                    self._code_compressed = n
                elif kind == "uncompressed":
                    self._code_raw = n
                else:
                    self._code_plain = n
                self._training_done = True
        elif first == "T" and line.startswith("Total submission size"):
            m = TOTAL_RE.match(line)
            if m is not None:
                self._training_done = True
                if m.group(1):  # unlabeled totals are raw sizes, not the artifact
                    self._total_label, self._bytes_total = m.group(1), int(m.group(2))
        elif first == "b" and line.startswith("budget:"):
            m = BUDGET_RE.match(line)
            if m is not None:
                self._training_done = True
                self._total_label, self._bytes_total = BUDGET_LABEL, int(m.group(1))
        elif first == "t" and line.startswith("total_eval_time"):
            m = TOTAL_EVAL_RE.match(line)
            if m is not None:
                self._total_eval_ms = duration_ms(m.group(1), m.group(2))
        elif first == "p" and line.startswith("peak memory"):
            m = PEAK_RE.match(line)
            if m is not None:
                self._peak_mib = number(m.group(1))
        elif header:
            self._header_line(line)
        return False

    def _step_line(self, line: str) -> bool:
        """A train line sets every progress field (None when it lacks one): bulk reading
        skips all but a chunk's last train line, so no field may leak from the skipped ones.
        A periodic validation line only updates what it carries."""
        train = STEP_TRAIN_RE.match(line)
        m = train if train is not None else STEP_VAL_RE.match(line)
        if m is None:
            return False
        if train is not None:
            self._train_loss = float(m.group(3))
            rest = m.group(4)
        else:
            self._last_val_loss, self._last_val_bpb = float(m.group(3)), float(m.group(4))
            rest = m.group(5)
        step = self._step = int(m.group(1))
        self._total = int(m.group(2))
        self._has_run = True
        t = TRAIN_TIME_RE.search(rest)
        a = STEP_AVG_RE.search(rest)
        time_ms = duration_ms(t.group(1), t.group(2)) if t is not None else None
        if a is not None:
            avg: float | None = float(a.group(1))
        else:
            avg = time_ms / step if time_ms and step > 0 else None
        if train is not None or time_ms is not None:
            self._train_time_ms = time_ms
        if train is not None or avg is not None:
            self._step_avg_ms, self._avg_logged = avg, a is not None
        return True

    def _score(self, line: str) -> bool:
        """A score line is read exactly or refused; True when the line is one (either way)."""
        head = SCORE_LINE_RE.match(line)
        if head is None or SOURCE_CHARS_RE.search(line) is not None:
            return False
        name = head.group(0)
        if name.startswith("final_eval_mode"):
            return False
        bpb = VAL_BPB_RE.search(line, head.end())
        if bpb is None:
            return False
        self._training_done = True
        loss = VAL_LOSS_RE.search(line, head.end())
        problem = "a control byte in the line" if CONTROL_RE.search(line) else None
        val_bpb = val_loss = None
        if problem is None:
            val_bpb, problem = _token(bpb.group(1), "val_bpb")
        if problem is None and loss is not None:
            val_loss, problem = _token(loss.group(1), "val_loss")
        if problem is not None:  # the score is unknown: never fall back to an earlier line
            self._score_line = self._val_bpb = self._val_loss = None
            self._bpb_text = self._loss_text = None
            self._score_rejected = f"{name}: {problem}"
            return True
        self._score_line, self._val_bpb, self._val_loss = name, val_bpb, val_loss
        self._bpb_text = bpb.group(1)
        self._loss_text = loss.group(1) if loss is not None else None
        self._score_rejected = None
        ev = EVAL_TIME_RE.search(line, head.end())
        if ev is not None:
            self._eval_sum_ms += duration_ms(ev.group(1), ev.group(2))
            self._eval_seen = True
        return True

    def _stopping(self, line: str) -> None:
        self._stopped = True
        self._training_done = True
        m = STOP_RE.match(line)
        if m is not None:
            self._stop_time_ms = number(m.group(1))
            self._stop_step, self._total = int(m.group(2)), int(m.group(3))
            self._step = self._stop_step
            self._train_time_ms = self._stop_time_ms
            if not self._avg_logged and self._stop_step > 0:
                # coarse logs (train_time in minutes) get a precise average from the stop line
                self._step_avg_ms = self._stop_time_ms / self._stop_step

    def _header_line(self, line: str) -> None:
        """Best-effort hyperparameters from the three header styles seen in the records."""
        if self._in_hp_block:
            m = HP_BLOCK_RE.match(line)
            if m is not None:
                self.hyperparameters[m.group(1)] = m.group(2).strip()
                return
            self._in_hp_block = False
        if HP_HEAD_RE.match(line):
            self._in_hp_block = line.rstrip().endswith(":")
            self._has_run = True
            return
        if line[0] in "mp" and PARAMS_RE.match(line):
            self._has_run = True
        if KV_LINE_RE.match(line):
            for key, value in KV_RE.findall(line):
                if not key.endswith("step"):
                    self.hyperparameters[key] = value

    # ------------------------------------------------------------------ output

    @property
    def summary(self) -> LogSummary:
        """The state as of the last complete line (a partial line is not looked at)."""
        hp = self.hyperparameters
        step, total = self._step, self._total
        if total is None and hp.get("iterations", "").isdigit():
            total = int(hp["iterations"])
        train_time = self._stop_time_ms if self._stop_time_ms is not None else self._train_time_ms
        stop_step = self._stop_step
        if stop_step is None and self._training_done:
            stop_step = step
        done = self._stopped or self._training_done
        eta: float | None = None
        if done or (step is not None and total is not None and step >= total):
            eta = 0.0
        elif step is not None and total is not None and self._step_avg_ms:
            eta = (total - step) * self._step_avg_ms / 1000.0
            cap = float_or_none(hp.get("max_wallclock_seconds"))
            if cap and cap > 0 and self._train_time_ms is not None:
                eta = min(eta, max(0.0, cap - self._train_time_ms / 1000.0))
        if self._total_eval_ms is not None:
            eval_ms: float | None = self._total_eval_ms
        else:
            eval_ms = self._eval_sum_ms if self._eval_seen else None
        code = self._code_compressed if self._code_compressed is not None else self._code_plain
        return LogSummary(
            step=step,
            total_steps=total,
            train_loss=self._train_loss,
            last_val_loss=self._last_val_loss,
            last_val_bpb=self._last_val_bpb,
            train_time_ms=train_time,
            step_avg_ms=self._step_avg_ms,
            eta_s=eta,
            wallclock_stopped=self._stopped,
            score_line=self._score_line,
            val_loss=self._val_loss,
            val_bpb=self._val_bpb,
            bytes_total=self._bytes_total,
            total_label=self._total_label,
            bytes_code=code,
            bytes_model=self._bytes_model,
            stop_step=stop_step,
            eval_time_ms=eval_ms,
            peak_memory_mib=self._peak_mib,
            hyperparameters=dict(hp),
            bytes_code_raw=self._code_raw,
            model_label=self._model_label,
            score_rejected=self._score_rejected,
            val_bpb_text=self._bpb_text,
            val_loss_text=self._loss_text,
            has_run=self._has_run,
        )


def _token(text: str, key: str) -> tuple[float | None, str | None]:
    """A score field's whole token as a finite number, or why it is not one."""
    if NUM_TOKEN_RE.fullmatch(text) is None:
        return None, f"{key} {text[:40]!r} is not a number"
    value = float(text)
    if not math.isfinite(value):
        return None, f"{key} {text!r} is not finite"
    return value, None
