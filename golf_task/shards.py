"""Token shards in the official format and where one variant's data sits in a data dir.

The bottom of the data code: the tiny maker (``golf_task.data``) and the downloader
(``golf_task.data_fetch``) both build on it, so neither imports the other's module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golf_task.variants import TINY_VARIANT, check_variant, dataset_subdir, tokenizer_subpath

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4


class ShardError(ValueError):
    """A file that is not a valid token shard; the message says which check failed."""


# --------------------------------------------------------------------------------------------
# Shard I/O
# --------------------------------------------------------------------------------------------


def write_shard(path: Path, tokens: Sequence[int] | np.ndarray) -> None:
    """Write tokens as one shard, atomically, so a crash never leaves a half shard behind."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
        raise ValueError("token ids must fit in uint16 (0..65535)")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(arr.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)


def read_header(path: Path) -> int:
    """Validate a shard's header and size; return its token count.

    Checks in the order a corrupted download would fail them, so the error names the real
    problem: too short for a header, wrong magic, wrong version, body size not as declared.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: truncated shard: {size} bytes, header alone is {HEADER_BYTES}")
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    if int(header[0]) != SHARD_MAGIC:
        raise ShardError(f"{path}: bad magic {int(header[0])}, expected {SHARD_MAGIC}")
    if int(header[1]) != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {int(header[1])}")
    num_tokens = int(header[2])
    expected = HEADER_BYTES + 2 * num_tokens
    if num_tokens < 0 or size != expected:
        what = "truncated" if size < expected else "oversized"
        raise ShardError(
            f"{path}: {what} shard: header says {num_tokens} tokens ({expected} bytes), "
            f"file has {size} bytes"
        )
    return num_tokens


def read_shard(path: Path) -> np.ndarray:
    """Read a validated shard into a uint16 array."""
    num_tokens = read_header(path)
    return np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)


def shard_paths(data_path: Path, split: str) -> list[Path]:
    """The split's shards in order (the order the trainer streams them)."""
    return sorted(Path(data_path).glob(f"fineweb_{split}_*.bin"))


@dataclass(frozen=True)
class DataLayout:
    """Where the trainer finds one variant's data and tokenizer inside a data dir.

    The same for tiny and real data, so a dir can hold several variants side by side.
    ``DataLayout(root)`` is the tiny preset's sp1024, as callers written before the variants
    expect.
    """

    root: Path
    variant: str = TINY_VARIANT

    def __post_init__(self) -> None:
        check_variant(self.variant)

    @property
    def dataset_dir(self) -> Path:
        return self.root / dataset_subdir(self.variant)

    @property
    def tokenizer_model(self) -> Path:
        return self.root / tokenizer_subpath(self.variant)

    @property
    def tokenizer_vocab(self) -> Path:
        return self.tokenizer_model.with_suffix(".vocab")

    @property
    def tiny_stamp(self) -> Path:
        """The tiny build's manifest: one per variant, so rebuilding one leaves the rest."""
        return self.root / f"tiny_manifest_{self.variant}.json"
