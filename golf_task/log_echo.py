"""Echoed source in training logs: where a script's copy of itself starts and where it ends.

Records' scripts write their own source into their log before any training output
(``log0(code)``, then a row of ``=``), so the start of a log (and, in a log that several runs
appended to, the start of each run) may be a whole Python file. Nothing in it is a result:
its docstrings show example score lines, its f-strings name every metric. The parser skips
it, and tells where it ends by the structure of Python source rather than by one marker:

- an echo starts at a line that can begin a Python file: a comment, a docstring, an import;
- a row of ``=`` at column 0 ends it only outside every string literal (a docstring may hold
  such a row, followed by an example score);
- when it began with a comment, which a console capture may also start with, a column-0
  line outside strings that no Python file can hold (a training step, a score, a size line;
  ``LOG_SHAPE_RE``) ends it too: it was a log after all, and that line is read as a log
  line. An echo that began with a docstring or an import is source for sure, and only its
  separator ends it (a lexer slip can then never turn a docstring line into a result).

The lexer follows only what decides "inside a string or not": triple- and single-quoted
strings (any prefix), backslash escapes, and comments. It never raises.
"""

from __future__ import annotations

import re

from golf_task.log_lines import ECHO_START_RE, LOG_SHAPE_RE, SEPARATOR_RE, strip_ts

__all__ = [
    "ECHO_LOG_LINE",
    "ECHO_SEPARATOR",
    "EchoScanner",
    "echoed_source",
    "scanner_for",
    "starts_echo",
]

_TOKEN_RE = re.compile(r"""\\.|'''|\"\"\"|["'#]""", re.S)

ECHO_SEPARATOR = 1  # the line is the separator after the source: the echo is over
ECHO_LOG_LINE = 2  # the line cannot be source: the echo is over and this line is a log line


def starts_echo(line: str) -> bool:
    """True when ``line`` (timestamp already dropped) can be the first line of a script."""
    return ECHO_START_RE.match(line) is not None


def scanner_for(first_line: str) -> EchoScanner:
    """The scanner for an echo whose first line is ``first_line`` (see the module doc)."""
    line = strip_ts(first_line)
    return EchoScanner(sure=not (line.startswith("#") and not line.startswith("#!")))


class EchoScanner:
    """Feed it the echo's lines one by one; it says at which line the echo ends.

    ``quote`` is the opening quote of the string still open at the end of the last line fed
    (None outside strings): a line inside a string is never an end. ``sure``: the first line
    could only be source, so log-shaped lines do not end it.
    """

    __slots__ = ("quote", "sure")

    def __init__(self, *, sure: bool = True) -> None:
        self.quote: str | None = None
        self.sure = sure

    def feed(self, line: str) -> int:
        """0 while the echo goes on; ``ECHO_SEPARATOR`` or ``ECHO_LOG_LINE`` at its end."""
        line = strip_ts(line)
        quote = self.quote
        if quote is None:
            first = line[:1]
            if first and first not in " \t#":
                if first == "=" and SEPARATOR_RE.match(line):
                    return ECHO_SEPARATOR
                if not self.sure and LOG_SHAPE_RE.match(line):
                    return ECHO_LOG_LINE
            if '"' not in line and "'" not in line:
                return 0
        elif len(quote) == 3 and quote not in line:
            return 0
        self.quote = _scan(line, quote)
        return 0


def _scan(line: str, quote: str | None) -> str | None:
    """The string still open after ``line`` (its opening quote), given the one before it.

    A one-quote string ends with its line unless a backslash continues it.
    """
    single: str | None = None
    if quote is not None and len(quote) == 1:  # continued from the line before
        quote, single = None, quote
    for m in _TOKEN_RE.finditer(line):
        tok = m.group()
        if quote is not None:  # inside a triple-quoted string: only its own quote ends it
            if tok == quote:
                quote = None
            continue
        if single is not None:  # inside a one-quote string
            if tok[0] == single:  # '"' or '"""' ("a""" is "a" then "")
                single = None
            continue
        if tok == "#":
            break  # a comment runs to the end of the line
        if len(tok) == 3:
            quote = tok
        elif tok in ('"', "'"):
            single = tok
    if single is not None and (len(line) - len(line.rstrip("\\"))) % 2:
        return single
    return quote


def echoed_source(text: str) -> str | None:
    """The script a log echoes at its start (everything before the separator), else None.

    None when the log does not start like source, or when the "source" turns out to be log
    lines, or when no separator closes it (a log cut inside its echo).
    """
    pos = 0
    scanner: EchoScanner | None = None
    while pos < len(text):
        nl = text.find("\n", pos)
        end = len(text) if nl == -1 else nl
        line = text[pos:end].rstrip("\r")
        if scanner is None and line.strip():
            if not starts_echo(strip_ts(line)):
                return None
            scanner = scanner_for(line)
        if scanner is not None:
            verdict = scanner.feed(line)
            if verdict == ECHO_SEPARATOR:
                return text[:pos]
            if verdict == ECHO_LOG_LINE:
                return None
        pos = end + 1
    return None
