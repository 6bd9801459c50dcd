"""Parser for every known Parameter Golf training-log format, whole-file or streaming.

The leaderboard, the live progress bars and the promotion gate all read scores through this
module, so it is strict about what counts as a score and lenient about everything else: an
unknown, garbled or truncated line is ignored, never fatal, and a score is only ever taken
from a complete line of the score family.

Rules (shared with ``../shared/golf_fixtures/expected.json``'s ``semantics``):

- every line may carry a unix-timestamp prefix (``1776142348.135 ...``), which is dropped;
- the score is the LAST line whose first token starts with ``final_``, ``legal_ttt`` or
  ``quantized``, followed by ``key:value`` fields, one of them ``val_bpb`` (``final_eval_mode``
  and lines holding quotes or braces, i.e. source code, are not scores); values may be
  written ``key:v`` or ``key=v``;
- a score value is the whole blank-delimited token after its key and must be one finite
  number; a score line whose value is not (cut by corrupt bytes, NaN, infinity) or that holds
  a control byte is refused, and the score is then unknown (``score_rejected`` says why)
  until a later score line reads cleanly: the line above it is another figure;
- echoed source (a script's copy of itself; see ``golf_task.log_echo``) is skipped whole;
- the artifact is the LAST labeled ``Total submission size <label>: N bytes`` or
  ``budget:N/16000000`` line; unlabeled totals are raw (unquantized) sizes, not the artifact;
- code bytes come from ``Code size (compressed): N bytes``, else ``Code size: N bytes``;
- model bytes come from the LAST labeled ``Serialized model <label>: N bytes``;
- stop step and train time come from ``stopping_early: wallclock_cap train_time:Nms step:S/N``
  (a run that finishes its iterations uses its last step once training has ended);
- eval time is ``total_eval_time:Xs`` when logged, else the sum of ``eval_time`` over the
  score-family lines of the current run (the whole post-training evaluation phase);
- the phase after the last step (``phase``: ``eval``, ``quantize``, ``round trip``,
  ``sliding``, ``ttt``, ``done``; None while training) is named by the line that starts it
  (``golf_task.log_phase``).

Why two speeds: helm streams many logs at once, and most of a log is step lines of which only
the newest matters. Lines before training starts (the header, where the hyperparameters live)
are read one by one; once steps flow, each chunk is scanned with C-speed substring searches for
the few keywords that can start an interesting line, plus a backward search for the last step
line. A new run header inside the same file (logs that concatenate several runs) switches
back to line-by-line reading and resets the progress fields. What each line means is
``golf_task.log_reader.LineReader``'s part; this module decides which lines reach it.

    python -m golf_task.logs FILE... [--json]

Exit status: 0 when every file is a training log, 1 when one is not (it has no run header,
step, score or size line: one line on stderr says so), 2 when one cannot be read. A log of a
run that crashed (header and steps, no score) is a training log.
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys
from pathlib import Path

from golf_task.log_echo import (
    ECHO_LOG_LINE,
    ECHO_SEPARATOR,
    EchoScanner,
    scanner_for,
    starts_echo,
)
from golf_task.log_lines import (
    BUDGET_LABEL,
    ECHO_MARKERS,
    EVENT_KEYWORDS,
    HP_BLOCK_RE,
    HP_HEAD_RE,
    PARAMS_RE,
    RUN_MARKERS,
    STEP_TRAIN_RE,
    TRAIN_KEYWORDS,
    strip_ts,
)
from golf_task.log_phase import PhaseTracker
from golf_task.log_reader import LineReader
from golf_task.log_summary import LogSummary

__all__ = [
    "BUDGET_LABEL",
    "LogParser",
    "LogSummary",
    "parse_file",
    "parse_text",
]

NOT_A_LOG = "not a training log (no run header, step, score or size line)"
_MAX_LINE = 256 * 1024  # longer "lines" are garbage (binary noise); they are dropped
_HEADER_LINE_LIMIT = 5000  # a header longer than this is not a header; scan in bulk
_CHUNK = 1 << 20

_INIT, _ECHO, _HEADER, _BULK = range(4)


class LogParser(LineReader):
    """Incremental parser: feed it bytes or text as they arrive; it never raises on any input.

    ``summary`` reflects complete lines only, so a line cut mid-number can never be read as a
    score; ``finish`` treats the trailing partial line as complete (the stream has ended).
    """

    def __init__(self) -> None:
        super().__init__()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._discard_partial = False
        self._mode = _INIT
        self._header_lines = 0
        self._echo = EchoScanner()  # the lexer state while in _ECHO

    # ------------------------------------------------------------------ phases

    def _reset_run(self) -> None:
        super()._reset_run()
        self._phases = PhaseTracker()  # a new run in the same file starts in training

    def _line(self, line: str, *, header: bool, partial: bool = False) -> bool:
        """A line as ``LineReader`` reads it, then for the phase after the last step.

        A partial line (the stream's end) never marks a phase: the marker lines are whole
        lines of a logger, and the end of the stream leaves the phase as it was.
        """
        is_step = super()._line(line, header=header, partial=partial)
        if partial:
            return is_step
        text = strip_ts(line.rstrip())
        if is_step:
            if self._step is not None and self._total is not None:
                self._phases.step(text, self._step, self._total)
        elif text:
            self._phases.line(text, self.hyperparameters)
        return is_step

    @property
    def summary(self) -> LogSummary:
        """``LineReader``'s summary, with the phase after the last step."""
        out = super().summary
        out.phase = self._phases.phase
        return out

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
            first = line[:1]
            if self._mode == _INIT:
                if not line.strip():
                    continue
                self._mode = _HEADER
                if starts_echo(strip_ts(line)):
                    return self._start_echo(line, pos - len(line) - 1)
            elif first and first in "#\"'if" and starts_echo(line):  # a later run's script
                return self._start_echo(line, pos - len(line) - 1)
            self._header_lines += 1
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

    def _start_echo(self, line: str, pos: int) -> int:
        """Skip source from ``pos``, the start of ``line``, its first line."""
        self._mode = _ECHO
        self._echo = scanner_for(line)
        return pos

    def _skip_echo(self, text: str, pos: int, end: int) -> int:
        """Skip echoed source line by line (``log_echo.EchoScanner`` says where it ends).

        At its separator the echo was a script's copy of itself: a new run starts. At a line
        no source can hold, it was not: that line and the rest are read as log lines.
        """
        scanner = self._echo
        while pos < end:
            if scanner.quote is not None and len(scanner.quote) == 3:  # to where it can close
                q = text.find(scanner.quote, pos, end)
                if q == -1:
                    return end
                pos = max(pos, text.rfind("\n", pos, q) + 1)
            nl = text.find("\n", pos, end)
            verdict = scanner.feed(text[pos:nl])
            if verdict == ECHO_SEPARATOR:
                self._reset_run()
                self.hyperparameters = {}
                self._has_run = True
                self._mode = _HEADER
                self._header_lines = 0
                return nl + 1
            if verdict == ECHO_LOG_LINE:
                self._mode = _HEADER
                return pos
            pos = nl + 1
        return end

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
        echo = self._echo_start(text, pos, stop)
        if echo is not None:
            stop = echo
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
        if echo is not None:  # a later run's copy of its script (or what starts like one)
            self._start_echo(text[echo : text.find("\n", echo)], echo)
        elif stop < end:  # a new run's header: read it line by line from a clean slate
            self._reset_run()
            self.hyperparameters = {}
            self._mode = _HEADER
            self._header_lines = 0
        return stop

    def _echo_start(self, text: str, pos: int, stop: int) -> int | None:
        """Where the first column-0 comment or docstring in text[pos:stop] begins, if any.

        Single-character finds run at memchr speed, where a two-character one such as
        ``"\\n#"`` costs as much as the rest of the bulk scan; imports are left to the
        line-by-line modes (scripts open with a docstring or a comment).
        """
        best = stop
        for ch in ECHO_MARKERS:
            p = text.find(ch, pos, best)
            while p != -1:
                if (p == pos or text[p - 1] == "\n") and starts_echo(text[p : text.find("\n", p)]):
                    best = p
                    break
                p = text.find(ch, p + 1, best)
        return best if best < stop else None

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
    refused = f"  (refused: {summary.score_rejected})" if summary.score_rejected else ""
    parts = [
        f"  score       {fmt(summary.score_line)}  val_bpb={fmt(summary.val_bpb)}"
        f"  val_loss={fmt(summary.val_loss)}{refused}",
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
        if not summary.is_training_log:
            print(f"{name}: {NOT_A_LOG}", file=sys.stderr)
            status = max(status, 1)
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
