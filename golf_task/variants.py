"""The tokenizer variants of the challenge data and where each lives: stdlib only, so that
helm's remote launch can name the default layout without importing numpy."""

from __future__ import annotations

from typing import NamedTuple


class Variant(NamedTuple):
    """One tokenizer family: its dataset dir, its tokenizer file stem, the HF repo serving it."""

    dataset: str
    tokenizer: str
    repo: str


# The official sp1024 export is in the challenge's own repo; the sp4096 / sp8192 exports the
# records use from 2026-04-01 on are Kevin Clark's (same layout, same shard format).
VARIANTS: dict[str, Variant] = {
    "sp1024": Variant("fineweb10B_sp1024", "fineweb_1024_bpe", "willdepueoai/parameter-golf"),
    "sp4096": Variant("fineweb10B_sp4096", "fineweb_4096_bpe", "kevclark/parameter-golf"),
    "sp8192": Variant("fineweb10B_sp8192", "fineweb_8192_bpe", "kevclark/parameter-golf"),
}
# What train_gpt.py's defaults read and what helm's remote launch points jobs at.
DEFAULT_VARIANT = "sp8192"
# What the tiny preset (golf_task.presets) and its callers were built around.
TINY_VARIANT = "sp1024"


def check_variant(variant: str) -> Variant:
    """The variant's names, or a ValueError listing the known ones."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def pieces(variant: str) -> int:
    """The tokenizer's piece count, which the variant's name states (``sp8192`` -> 8192)."""
    check_variant(variant)
    return int(variant.removeprefix("sp"))


def dataset_subdir(variant: str) -> str:
    """``datasets/fineweb10B_sp<N>``: the shards' folder, relative to a data dir."""
    return f"datasets/{check_variant(variant).dataset}"


def tokenizer_subpath(variant: str) -> str:
    """``tokenizers/fineweb_<N>_bpe.model``: the tokenizer model, relative to a data dir."""
    return f"tokenizers/{check_variant(variant).tokenizer}.model"
