"""The line grammar of training logs: every pattern the parser recognises, and small
number helpers.

Kept apart from the parser (``golf_task.logs``) so that the shapes of the competition's log
lines, which change whenever a record invents a new format, sit in one place, readable as a
list, while the parser keeps only the logic of reading a stream.
"""

from __future__ import annotations

import re

# A ``budget:N/16000000`` line carries no label of its own; this is the name the fixtures'
# reference parser gives such totals (the ternary record's base-3 packing).
BUDGET_LABEL = "budget/legendre"


NUM = r"[-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,4})?|[-+]?(?:nan|inf)"
INT = r"\d{1,15}"
TS_RE = re.compile(r"\d{9,12}(?:\.\d{1,9})?[ \t]")  # one separator: keep indentation
STEP_TRAIN_RE = re.compile(
    rf"(?:step:[ \t]*)?({INT})/({INT})[ \t]+(?:train_)?loss[:=][ \t]*({NUM})(.*)"
)
STEP_VAL_RE = re.compile(
    rf"(?:step:[ \t]*)?({INT})/({INT})[ \t]+val_loss[:=][ \t]*({NUM})[ \t]+"
    rf"val_bpb[:=][ \t]*({NUM})(.*)"
)
TRAIN_TIME_RE = re.compile(rf"(?<![\w/])(?:train_time|t)[:=][ \t]*({NUM})[ \t]*(ms|s|m)(?!\w)")
STEP_AVG_RE = re.compile(rf"(?<![\w/])(?:step_avg|avg)[:=][ \t]*({NUM})[ \t]*ms")
SCORE_HEAD_RE = re.compile(r"(?:final_|legal_ttt|quantized)[\w.+\-]*")
# A score line is its name, blanks, then ``key:value`` fields: ``final_x = "..val_bpb:0.9"``
# (source code) has a name but no fields after it, so it is no score line.
SCORE_LINE_RE = re.compile(r"(?:final_|legal_ttt|quantized)[\w.+\-]*(?=[ \t]+[A-Za-z_]\w*[:=])")
SOURCE_CHARS_RE = re.compile(r"[{}\"']")  # quotes and braces: code, never a logger's line
# A score value is the whole blank-delimited token after its key, and that token must be one
# number: ``1.22`` then NUL bytes, ``1.2\ufffd436570``, ``1,2243`` or ``1.22step:5/9`` (two
# writers' lines run together) are corrupt lines, not scores of 1.22, 1.2 or 1.
VAL_BPB_RE = re.compile(r"(?<!\w)val_bpb[:=][ \t]*([^ \t]*)")
VAL_LOSS_RE = re.compile(r"(?<!\w)val_loss[:=][ \t]*([^ \t]*)")
NUM_TOKEN_RE = re.compile(NUM)  # fullmatch a token
# Bytes no logger writes inside a line: C0/C1 controls (tab aside), DEL, and U+FFFD, which
# stands for bytes that were not UTF-8. A score or size line holding one was damaged.
CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
EVAL_TIME_RE = re.compile(rf"(?<!\w)eval_time[:=][ \t]*({NUM})[ \t]*(ms|s)(?!\w)")
STOP_RE = re.compile(
    rf"stopping_early:[ \t]*wallclock_cap[ \t]+train_time:[ \t]*({NUM})ms[ \t]+"
    rf"step:[ \t]*({INT})/({INT})"
)
SERIALIZED_RE = re.compile(rf"Serialized model ([^\s:][^:]*?):[ \t]*({INT}) bytes")
CODE_RE = re.compile(rf"Code size(?: \((compressed|uncompressed)\))?:[ \t]*({INT}) bytes")
TOTAL_RE = re.compile(rf"Total submission size(?: ([^\s:][^:]*?))?:[ \t]*({INT}) bytes")
BUDGET_RE = re.compile(rf"budget:[ \t]*({INT})/({INT})")
TOTAL_EVAL_RE = re.compile(rf"total_eval_time:[ \t]*({NUM})[ \t]*(ms|s)")
PEAK_RE = re.compile(rf"peak memory allocated:[ \t]*({NUM}) MiB")
PARAMS_RE = re.compile(rf"(?:model_)?params:[ \t]*({INT})\b")
HP_HEAD_RE = re.compile(r"(?:-+[ \t]*)?Hyperparameters\b")
HP_BLOCK_RE = re.compile(r"[ \t]+([A-Za-z_][\w.]*):[ \t]*(.*)$")  # indented
KV_LINE_RE = re.compile(r"(?:[A-Za-z_][\w.]*[:=] ?\S+[ \t]*)+$")
KV_RE = re.compile(r"([A-Za-z_][\w.]*)[:=] ?(\S+)")
SEPARATOR_RE = re.compile(r"={20,}[ \t]*$")
PY_START_RE = re.compile(r"(?:\"\"\"|'''|#!|from\s+[\w.]+\s+import\b|import\s+\w)")
# Where a script's copy of itself may start (see golf_task.log_echo): a comment, a docstring
# (with a string prefix or not), an import.
ECHO_START_RE = re.compile(
    r"(?:#|[rRuUbBfF]{0,2}(?:\"\"\"|''')|from\s+[\w.]+\s+import\b|import\s+\w)"
)
ECHO_MARKERS = ("#", '"', "'")  # the first characters of comments and docstrings
# Column-0 lines that no Python file can hold outside a string literal: a training step, a
# wallclock stop, a score, a size line. Inside an echo, one of these means the echo is over.
LOG_SHAPE_RE = re.compile(
    r"(?:step:[ \t]*)?\d{1,15}/\d{1,15}[ \t]+(?:train_|val_)?loss[:=]"
    r"|stopping_early:[ \t]*wallclock_cap[ \t]"
    r"|(?:Serialized model|Code size|Total submission size|peak memory allocated)\b"
    r"|(?:final_|legal_ttt|quantized)[\w.+\-]*[ \t]+[A-Za-z_]\w*[:=]"
)

# The phases of a run after its last training step, as the TUI's progress cell names them
# (golf_task.log_phase reads them from the lines below and from the score lines). A marker
# line names what runs *after* it: the export (EMA, calibration, quantization) after training
# ends, the round trip (reload and score the artifact) once its size is printed, and so on.
EVAL, QUANTIZE, ROUND_TRIP, SLIDING, TTT, DONE = (
    "eval",
    "quantize",
    "round trip",
    "sliding",
    "ttt",
    "done",
)
TRAIN_END_PREFIXES = ("stopping_early", "peak memory")
# The records' scripts score the reloaded artifact in a line of their own before TTT.
ROUND_TRIP_DIAGNOSTIC = "diagnostic quantized"

# Substrings that every interesting non-step line contains (bulk scanning looks only at lines
# holding one of these), and the substrings that may open a new run's header.
EVENT_KEYWORDS = ["val_bpb", "bytes", "budget:", "stopping_early", "total_eval_time", "peak"]
RUN_MARKERS = ("Hyperparameters", "params:")
TRAIN_KEYWORDS = ("train_loss", " loss:")
NEEDS_NEWLINE = (
    "final_",
    "legal_ttt",
    "quantized",
    "Serialized model",
    "Code size",
    "Total submission size",
    "budget:",
)
TIME_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60000.0}


def number(text: str) -> float | int:
    """A logged number as int when it is written as one (so ``600038ms`` stays ``600038``)."""
    if text.isdigit():
        return int(text)
    return float(text)


# Data lines: what a run trained and validated on (the audit compares them with the official
# layout). Not part of a LogSummary: a log that holds several runs prints these before each
# run's header, so readers take the last match in the raw text.
DATASET_RE = re.compile(r"train_loader:dataset:(\S+)|datasets_dir:[ \t]*(\S+)")
TRAIN_SHARDS_RE = re.compile(r"train_shards:[ \t]*(\d+)")
VAL_TOKENS_RE = re.compile(r"val_loader:shards\b.*?\btokens:(\d+)|val_tokens:[ \t]*(\d+)")


def duration_ms(value: str, unit: str) -> float | int:
    """A duration in ms; whole milliseconds stay ints, other units are rounded to the µs."""
    if unit == "ms":
        return number(value)
    return round(float(value) * TIME_UNIT_MS[unit], 3)


def strip_ts(line: str) -> str:
    if line[:1].isdigit():
        m = TS_RE.match(line)
        if m is not None:
            return line[m.end() :]
    return line


def float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
