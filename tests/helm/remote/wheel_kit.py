"""Wheels of packages already installed here, for tests that install into a fresh venv offline.

The test machine has no package index, but it has every package the task needs installed in
helm's own venv. ``repack`` turns an installed distribution back into a wheel (its RECORD's
files, bytecode left out, a fresh RECORD with hashes), so ``pip install --no-index
--find-links DIR`` installs real packages the way it would from PyPI. ``/opt/wheels`` holds
the real torch CPU wheel, which these tests link in beside them.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import zipfile
from pathlib import Path

TORCH_WHEELS = Path("/opt/wheels")
# torch's own requirements, and the task's (golf_task/train_gpt.py and golf_task.data imports)
TORCH_DEPS = (
    "filelock",
    "typing_extensions",
    "setuptools",
    "sympy",
    "mpmath",
    "networkx",
    "jinja2",
    "MarkupSafe",
    "fsspec",
)
TASK_DEPS = ("numpy", "sentencepiece", "zstandard")


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(name: str, dest: Path) -> Path:
    """Write the installed distribution ``name`` as a wheel into ``dest``; its path."""
    dist = md.distribution(name)
    info = next(p for p in dist.files or () if p.parts[0].endswith(".dist-info"))
    info_dir = info.parts[0]
    wheel_meta = (dist.read_text("WHEEL") or "").splitlines()
    tag = next(line.split(":", 1)[1].strip() for line in wheel_meta if line.startswith("Tag:"))
    norm = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    out = Path(dest) / f"{norm}-{dist.version}-{tag}.whl"
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in dist.files or ():
            if rel.parts[0] == ".." or "__pycache__" in rel.parts:
                continue
            if rel.parts[0] == info_dir and rel.name in skip:
                continue
            src = Path(dist.locate_file(rel))
            if not src.is_file():
                continue
            data = src.read_bytes()
            zf.writestr(rel.as_posix(), data)
            record.append(f"{rel.as_posix()},{_digest(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return out


def wheel_dir(dest: Path, *, torch: bool) -> Path:
    """A find-links folder with the task's dependencies (and torch with its own, if asked)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in TASK_DEPS + (TORCH_DEPS if torch else ()):
        repack(name, dest)
    if torch:
        for whl in TORCH_WHEELS.glob("torch-*.whl"):
            link = dest / whl.name
            if not link.exists():
                link.symlink_to(whl)
    return dest
