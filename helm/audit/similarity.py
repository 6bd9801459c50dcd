"""How close a script is to the scripts helm already knows: the copy detector.

Copies in the competition are rarely byte-identical: comments get reworded, docstrings
trimmed, blank lines moved. So both sides are normalised first (Python tokens without
comments, docstrings, blank lines or layout, one logical line each, prefixed by its block
depth) and compared with difflib over those lines. The figure is difflib's ratio,
2·matches / (lines of both), so 1.0 means the same program.

- ``identical``: byte-identical, or identical after normalisation ("near-identical": the same
  program with cosmetic edits). Such code cannot explain a different result: a copy.
- ``DERIVED`` (0.90) and above: a small edit of a known script (one changed default is
  0.9987 for helm's script). That is how everyone builds on a base, so it is not a
  copy; the audit names the original and the number of changed lines, and only a
  reproduction can tell whether those lines earn the claimed score.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import tokenize
from dataclasses import dataclass, field

DERIVED = 0.90

_SKIP_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


def normalized_lines(source: str | bytes) -> list[str]:
    """The program's logical lines without comments, docstrings or layout."""
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    try:
        return _python_lines(text)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [ln.strip() for ln in text.splitlines() if ln.strip() and ln.lstrip()[:1] != "#"]


def _python_lines(text: str) -> list[str]:
    lines: list[str] = []
    depth = 0
    current: list[tokenize.TokenInfo] = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            # a statement that is only a string literal does nothing: a docstring
            if current and not all(t.type == tokenize.STRING for t in current):
                lines.append(f"{depth}|" + " ".join(t.string for t in current))
            current = []
        elif tok.type not in _SKIP_TOKENS:
            current.append(tok)
    if current and not all(t.type == tokenize.STRING for t in current):
        lines.append(f"{depth}|" + " ".join(t.string for t in current))
    return lines


def digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


@dataclass
class KnownScript:
    """A script an audited one is compared with; ``claimed_bpb`` when its score is known."""

    label: str  # for the operator: "helm's bundled train_gpt.py", "PR openai/x#12" ...
    ref: str  # machine form: "bundled", "base:<pin ref>", an audit ref
    source: bytes
    claimed_bpb: float | None = None
    _lines: list[str] | None = field(default=None, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = normalized_lines(self.source)
        return self._lines


@dataclass(frozen=True)
class Match:
    """One comparison; ``identical`` is byte- or normalised identity (the copy rule)."""

    label: str
    ref: str
    similarity: float
    identical_bytes: bool
    identical_code: bool
    changed_lines: int
    claimed_bpb: float | None

    @property
    def identical(self) -> bool:
        return self.identical_bytes or self.identical_code

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "ref": self.ref,
            "similarity": round(self.similarity, 6),
            "identical_bytes": self.identical_bytes,
            "identical_code": self.identical_code,
            "changed_lines": self.changed_lines,
            "claimed_bpb": self.claimed_bpb,
        }


def compare(source: bytes, known: KnownScript, lines: list[str] | None = None) -> Match:
    """Compare ``source`` with one known script."""
    mine = lines if lines is not None else normalized_lines(source)
    same_bytes = source == known.source
    theirs = known.lines
    if same_bytes or mine == theirs:
        return Match(known.label, known.ref, 1.0, same_bytes, True, 0, known.claimed_bpb)
    sm = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
    changed = sum(
        max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal"
    )
    return Match(known.label, known.ref, sm.ratio(), False, False, changed, known.claimed_bpb)


def rank(source: bytes, known: list[KnownScript]) -> list[Match]:
    """Every known script, most similar first (duplicates by content compared once)."""
    lines = normalized_lines(source)
    seen: set[str] = set()
    out: list[Match] = []
    for k in known:
        key = digest(k.source)
        if key in seen:
            continue
        seen.add(key)
        out.append(compare(source, k, lines))
    out.sort(key=lambda m: (-m.similarity, not m.identical_bytes))
    return out
