"""Parser for every known Parameter Golf training-log format, whole-file or streaming.

The leaderboard, the live progress bars and the promotion gate all read scores through this
module, so it is strict about what counts as a score and lenient about everything else: an
unknown, garbled or truncated line is ignored, never fatal, and a score is only ever taken
from a complete line of the score family.

Rules (shared with ``../shared/golf_fixtures/expected.json``'s ``semantics``):

- every line may carry a unix-timestamp prefix (``1776142348.135 ...``), which is dropped;
- the score is the LAST line whose first token starts with ``final_``, ``legal_ttt`` or
  ``quantized`` and that has a ``val_bpb`` (``final_eval_mode`` and lines containing ``{``,
  i.e. echoed source code, are not scores); values may be written ``key:v`` or ``key=v``;
- the artifact is the LAST labeled ``Total submission size <label>: N bytes`` or
  ``budget:N/16000000`` line; unlabeled totals are raw (unquantized) sizes, not the artifact;
- code bytes come from ``Code size (compressed): N bytes``, else ``Code size: N bytes``;
- model bytes come from the LAST labeled ``Serialized model <label>: N bytes``;
- stop step and train time come from ``stopping_early: wallclock_cap train_time:Nms step:S/N``
  (a run that finishes its iterations uses its last step once training has ended);
- eval time is ``total_eval_time:Xs`` when logged, else the sum of ``eval_time`` over the
  score-family lines of the current run (the whole post-training evaluation phase).

Why two speeds: helm streams many logs at once, and most of a log is step lines of which only
the newest matters. Lines before training starts (the header, where the hyperparameters live)
are read one by one; once steps flow, each chunk is scanned with C-speed substring searches for
the few keywords that can start an interesting line, plus a backward search for the last step
line. A new run header inside the same file (logs that concatenate several runs) switches
back to line-by-line reading and resets the progress fields.

    python -m golf_task.logs FILE... [--json]
"""

from __future__ import annotations

import argparse
import codecs
import json
import math
import sys
from pathlib import Path

from golf_task.log_lines import (
    BUDGET_LABEL,
    BUDGET_RE,
    CODE_RE,
    EVAL_TIME_RE,
    EVENT_KEYWORDS,
    HP_BLOCK_RE,
    HP_HEAD_RE,
    KV_LINE_RE,
    KV_RE,
    NEEDS_NEWLINE,
    PARAMS_RE,
    PEAK_RE,
    PY_START_RE,
    RUN_MARKERS,
    SCORE_HEAD_RE,
    SEPARATOR_RE,
    SERIALIZED_RE,
    STEP_AVG_RE,
    STEP_TRAIN_RE,
    STEP_VAL_RE,
    STOP_RE,
    TOTAL_EVAL_RE,
    TOTAL_RE,
    TRAIN_KEYWORDS,
    TRAIN_TIME_RE,
    VAL_BPB_RE,
    VAL_LOSS_RE,
    duration_ms,
    float_or_none,
    number,
    strip_ts,
)
from golf_task.log_summary import LogSummary

__all__ = [
    "BUDGET_LABEL",
    "LogParser",
    "LogSummary",
    "parse_file",
    "parse_text",
]

_MAX_LINE = 256 * 1024  # longer "lines" are garbage (binary noise); they are dropped
_HEADER_LINE_LIMIT = 5000  # a header longer than this is not a header; scan in bulk
_CHUNK = 1 << 20

_INIT, _ECHO, _HEADER, _BULK = range(4)


class LogParser:
    """Incremental parser: feed it bytes or text as they arrive; it never raises on any input.

    ``summary`` reflects complete lines only, so a line cut mid-number can never be read as a
    score; ``finish`` treats the trailing partial line as complete (the stream has ended).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._discard_partial = False
        self._mode = _INIT
        self._header_lines = 0
        self._in_hp_block = False
        self.hyperparameters: dict[str, str] = {}
        # artifact/score fields: last one in the file wins, across runs
        self._score_line: str | None = None
        self._val_loss: float | None = None
        self._val_bpb: float | None = None
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

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes | str) -> None:
        """Consume a chunk (any size, cut anywhere, even inside a UTF-8 sequence)."""
        try:
            if isinstance(data, str):
                text = self._decoder.decode(b"", final=True) + data
                self._decoder.reset()
            else:
                text = self._decoder.decode(bytes(data))
            self._consume(text)
        except Exception:  # pragma: no cover - a parser bug must not take helm down
            self._tail = ""

    def finish(self) -> LogSummary:
        """End of stream: the trailing partial line counts as a line. Returns the summary.

        Except for score and size lines: every logger ends its lines with a newline, so an
        unterminated one was cut mid-write, and ``val_bpb:1.22436570`` cut to ``val_bpb:1.2``
        would be a fake improvement. Progress lines are taken as they are.
        """
        try:
            text = self._decoder.decode(b"", final=True)
            self._decoder.reset()
            self._consume(text)
            tail, self._tail = self._tail, ""
            if tail and not self._discard_partial and self._mode != _ECHO:
                self._line(tail, header=self._mode != _BULK, partial=True)
            self._discard_partial = False
        except Exception:  # pragma: no cover
            self._tail = ""
        return self.summary

    def _consume(self, text: str) -> None:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self._discard_partial:
            nl = text.find("\n")
            if nl == -1:
                return
            text = text[nl + 1 :]
            self._discard_partial = False
        if self._tail:
            text = self._tail + text
        cut = text.rfind("\n") + 1
        self._tail = text[cut:]
        if len(self._tail) > _MAX_LINE:
            self._tail = ""
            self._discard_partial = True
        if cut:
            self._process(text, 0, cut)

    def _process(self, text: str, pos: int, end: int) -> None:
        """Read complete lines text[pos:end] (end is just past a newline) in the current mode."""
        while pos < end:
            if self._mode == _BULK:
                pos = self._bulk(text, pos, end)
            elif self._mode == _ECHO:
                pos = self._skip_echo(text, pos, end)
            else:
                pos = self._lines(text, pos, end)

    def _lines(self, text: str, pos: int, end: int) -> int:
        """Line-by-line reading (stream start and run headers) until training steps appear."""
        # split a window, not the whole chunk: headers end after a few dozen lines
        stop = text.rfind("\n", pos, min(end, pos + 16384)) + 1 or text.find("\n", pos, end) + 1
        lines = text[pos:stop].split("\n")
        lines.pop()  # the window ends with a newline
        for line in lines:
            pos += len(line) + 1
            if self._mode == _INIT:
                if not line.strip():
                    continue
                if PY_START_RE.match(line):
                    self._mode = _ECHO
                    return pos
                self._mode = _HEADER
            self._header_lines += 1
            first = line[:1]
            if first and first in "|+[W":  # nvidia-smi tables, torch warnings: nothing to read
                self._in_hp_block = False
                continue
            if self._in_hp_block:  # the long indented blocks: one match per line, nothing else
                m = HP_BLOCK_RE.match(strip_ts(line))
                if m is not None:
                    self.hyperparameters[m.group(1)] = m.group(2).strip()
                    continue
            if self._line(line, header=True) or self._header_lines > _HEADER_LINE_LIMIT:
                self._mode = _BULK
                self._in_hp_block = False
                return pos
        return pos

    def _skip_echo(self, text: str, pos: int, end: int) -> int:
        """Skip the script's echoed source until its ``=====`` separator line."""
        while True:
            p = text.find("=" * 20, pos, end)
            if p == -1:
                return end
            ls = max(pos, text.rfind("\n", pos, p) + 1)
            nl = text.find("\n", p, end)
            if SEPARATOR_RE.match(strip_ts(text[ls:nl])):
                self._mode = _HEADER
                return nl + 1
            pos = nl + 1

    def _bulk(self, text: str, pos: int, end: int) -> int:
        """Fast path: only lines holding an event keyword, plus the last step line, are read."""
        stop = end
        for kw in RUN_MARKERS:
            p = text.find(kw, pos, stop)
            while p != -1:
                ls = max(pos, text.rfind("\n", pos, p) + 1)
                head = strip_ts(text[ls : text.find("\n", p, end)])
                if HP_HEAD_RE.match(head) or PARAMS_RE.match(head):
                    stop = ls
                    break
                p = text.find(kw, text.find("\n", p, end) + 1, stop)
        starts: set[int] = set()
        for kw in EVENT_KEYWORDS:
            p = text.find(kw, pos, stop)
            while p != -1:
                starts.add(max(pos, text.rfind("\n", pos, p) + 1))
                p = text.find(kw, text.find("\n", p, stop) + 1, stop)
        last_train = self._last_train_line(text, pos, stop)
        if last_train is not None:
            starts.add(last_train)
        for ls in sorted(starts):
            self._line(text[ls : text.find("\n", ls, stop)], header=False)
        if stop < end:  # a new run's header: read it line by line from a clean slate
            self._reset_run()
            self.hyperparameters = {}
            self._mode = _HEADER
            self._header_lines = 0
        return stop

    def _last_train_line(self, text: str, pos: int, end: int) -> int | None:
        best: int | None = None
        for kw in TRAIN_KEYWORDS:
            hi = end
            for _ in range(32):
                p = text.rfind(kw, pos, hi)
                if p == -1:
                    break
                ls = max(pos, text.rfind("\n", pos, p) + 1)
                if STEP_TRAIN_RE.match(strip_ts(text[ls : text.find("\n", p, end)])):
                    best = ls if best is None else max(best, ls)
                    break
                hi = ls
        return best

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
            return False
        if (first.isdigit() or line.startswith("step:")) and self._step_line(line):
            return True
        scored = first in "flq" and line.startswith(("final_", "legal_ttt", "quantized"))
        if scored and self._score(line):
            return False
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
        head = SCORE_HEAD_RE.match(line)
        if head is None or "{" in line:
            return False
        name = head.group(0)
        if name.startswith("final_eval_mode"):
            return False
        bpb = VAL_BPB_RE.search(line, head.end())
        if bpb is None or not math.isfinite(val_bpb := float(bpb.group(1))):
            return False
        loss = VAL_LOSS_RE.search(line, head.end())
        val_loss = float(loss.group(1)) if loss is not None else None
        if val_loss is not None and not math.isfinite(val_loss):
            val_loss = None
        self._score_line, self._val_bpb, self._val_loss = name, val_bpb, val_loss
        self._training_done = True
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
            return
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
        )


def parse_text(text: str | bytes) -> LogSummary:
    """Parse a whole log held in memory."""
    parser = LogParser()
    parser.feed(text)
    return parser.finish()


def parse_file(path: str | Path) -> LogSummary:
    """Parse a log file, streaming it in 1 MiB chunks so memory stays flat for any size."""
    parser = LogParser()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            parser.feed(chunk)
    return parser.finish()


def _describe(summary: LogSummary) -> str:
    def fmt(value: object, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    total = fmt(summary.bytes_total)
    if summary.total_label:
        total += f" ({summary.total_label})"
    parts = [
        f"  score       {fmt(summary.score_line)}  val_bpb={fmt(summary.val_bpb)}"
        f"  val_loss={fmt(summary.val_loss)}",
        f"  artifact    {total}  code={fmt(summary.bytes_code)}  model={fmt(summary.bytes_model)}",
        f"  training    step={fmt(summary.step)}/{fmt(summary.total_steps)}"
        f"  stop_step={fmt(summary.stop_step)}  train_time={fmt(summary.train_time_ms, 'ms')}"
        f"  wallclock_stopped={summary.wallclock_stopped}",
        f"  evaluation  eval_time={fmt(summary.eval_time_ms, 'ms')}"
        f"  last_val_bpb={fmt(summary.last_val_bpb)}",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m golf_task.logs", description="Summarize Parameter Golf training logs."
    )
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--json", action="store_true", help="print {path: fields} as JSON")
    args = ap.parse_args(argv)
    results: dict[str, dict] = {}
    status = 0
    for name in args.files:
        try:
            summary = parse_file(name)
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        if args.json:
            results[name] = summary.to_json()
        else:
            print(name)
            print(_describe(summary))
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
