"""What code a records folder ships and how many bytes it counts (the validator's code rules).

A packed ``train_gpt.py`` (golf_task.pack) counts its own bytes, as its log did; a
``train_gpt_human.py`` that is exactly its source is code already counted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from golf_task.pack import READABLE_NAME, PackError, source_text, unpack

# What counts as code a folder ships: its sources of any language the run could execute,
# and built extensions. Bytecode caches and hidden folders are not shipped.
CODE_SUFFIXES = {
    ".py", ".pyx", ".pxd", ".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".cu", ".cuh", ".so",
    ".sh",
}  # fmt: skip


def shipped(path: Path, suffixes: set[str]) -> list[Path]:
    """Files under ``path`` with one of ``suffixes``, hidden folders and caches left out."""
    found = []
    for p in sorted(path.rglob("*")):
        parts = p.relative_to(path).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue
        if p.suffix.lower() in suffixes and p.is_file():
            found.append(p)
    return found


@dataclass(frozen=True)
class ShippedCode:
    """The code a folder ships and its bytes. A packed ``train_gpt.py`` (golf_task.pack)
    counts its own bytes, as its log did; its source is ``packed``. A ``train_gpt_human.py``
    that is exactly that source is code already counted, so it is left out (``readable``)."""

    size: int
    files: list[str]
    packed: str | None = None
    readable: str | None = None


def packed_source(path: Path) -> str | None:
    """The readable source of a folder's ``train_gpt.py`` when it is the packed form."""
    try:
        return _unpacked((path / "train_gpt.py").read_bytes())
    except OSError:
        return None


@functools.lru_cache(maxsize=8)  # several checks ask; keyed on the bytes, never stale
def _unpacked(data: bytes) -> str | None:
    try:
        return unpack(source_text(data))
    except (UnicodeDecodeError, PackError):
        return None  # not UTF-8, or no packer to recognise the form by


def measure_code(path: Path) -> ShippedCode | None:
    """The code a folder ships (``train_gpt.py`` and any other source or built extension in
    it) and its bytes; None when it ships none."""
    files = shipped(path, CODE_SUFFIXES)
    if not files:
        return None
    packed = packed_source(path)
    readable = None
    twin = path / READABLE_NAME
    if packed is not None and twin in files:
        try:
            same = source_text(twin.read_bytes()) == packed
        except (OSError, UnicodeDecodeError):
            same = False
        if same:
            files.remove(twin)
            readable = READABLE_NAME
    size = 0
    for p in files:
        try:
            size += p.stat().st_size
        except OSError:
            continue
    names = [p.relative_to(path).as_posix() for p in files]
    return ShippedCode(size, names, packed, readable)
