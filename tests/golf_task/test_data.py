"""Shard format, the tokenizer variants and their layout, and the tiny dataset maker.

The downloader of the published exports is tested in test_data_fetch.py."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from golf_task import data, shards, variants
from golf_task.data import make_tiny
from golf_task.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    DataLayout,
    ShardError,
    read_header,
    read_shard,
    write_shard,
)
from golf_task.variants import DEFAULT_VARIANT, VARIANTS

REPO = Path(__file__).resolve().parents[2]


def test_shard_round_trip_keeps_every_token(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 2, 1023, 65535, 40000], dtype=np.uint16)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [SHARD_MAGIC, 1, tokens.size]
    got = read_shard(path)
    assert got.dtype == np.uint16
    assert got.tolist() == tokens.tolist()


def test_empty_shard_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    write_shard(path, [])
    assert read_shard(path).size == 0


@pytest.mark.parametrize("bad", [[-1], [65536], [[1, 2]]])
def test_write_shard_rejects_values_that_do_not_fit(tmp_path: Path, bad: list) -> None:
    with pytest.raises(ValueError):
        write_shard(tmp_path / "x.bin", bad)
    assert not (tmp_path / "x.bin").exists()


def _corrupt(path: Path, kind: str) -> None:
    write_shard(path, np.arange(100, dtype=np.uint16))
    raw = bytearray(path.read_bytes())
    if kind == "magic":
        raw[0:4] = np.array([12345], dtype="<i4").tobytes()
    elif kind == "version":
        raw[4:8] = np.array([7], dtype="<i4").tobytes()
    elif kind == "truncated":
        raw = raw[:-10]
    elif kind == "short_header":
        raw = raw[:100]
    elif kind == "oversized":
        raw += b"\0\0"
    path.write_bytes(bytes(raw))


CORRUPTIONS = {
    "magic": "bad magic 12345",
    "version": "unsupported shard version 7",
    "truncated": "truncated shard",
    "short_header": "truncated shard",
    "oversized": "oversized shard",
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_bad_shards_fail_with_a_message_naming_the_problem(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    _corrupt(path, kind)
    with pytest.raises(ShardError, match=CORRUPTIONS[kind]) as err:
        read_shard(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_train_script_reader_mirrors_data_module(tmp_path: Path, kind: str, train_gpt) -> None:
    good = tmp_path / "good.bin"
    tokens = np.random.default_rng(0).integers(0, 1024, size=5000).astype(np.uint16)
    write_shard(good, tokens)
    assert train_gpt.read_shard(good).tolist() == read_shard(good).tolist()
    bad = tmp_path / "bad.bin"
    _corrupt(bad, kind)
    with pytest.raises(ValueError, match=CORRUPTIONS[kind]):
        train_gpt.read_shard(bad)


def test_tiny_data_layout_and_splits(tiny_data_dir: Path) -> None:
    import sentencepiece as spm

    ds = tiny_data_dir / "datasets" / "fineweb10B_sp1024"
    sp = spm.SentencePieceProcessor(
        model_file=str(tiny_data_dir / "tokenizers" / "fineweb_1024_bpe.model")
    )
    assert sp.vocab_size() == 1024
    assert (tiny_data_dir / "tokenizers" / "fineweb_1024_bpe.vocab").is_file()
    val = np.concatenate([read_shard(p) for p in sorted(ds.glob("fineweb_val_*.bin"))])
    train = np.concatenate([read_shard(p) for p in sorted(ds.glob("fineweb_train_*.bin"))])
    assert 10_000 <= val.size <= 99_999, "val split should be tens of thousands of tokens"
    assert train.size > 10 * val.size
    for split in (val, train):
        assert split[0] == sp.bos_id(), "documents start with BOS, as in the official shards"
        assert int(split.max()) < 1024

    # No validation document appears in training: compare document hashes.
    def docs(tokens: np.ndarray) -> set[str]:
        cuts = np.flatnonzero(tokens == sp.bos_id()).tolist() + [tokens.size]
        return {
            hashlib.sha1(tokens[a:b].tobytes()).hexdigest()
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        }

    assert not docs(val) & docs(train)


def test_tiny_maker_is_a_no_op_on_a_complete_dir(tiny_data_dir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in tiny_data_dir.rglob("*") if p.is_file()}
    messages: list[str] = []
    make_tiny(tiny_data_dir, log=messages.append)
    after = {p: p.stat().st_mtime_ns for p in tiny_data_dir.rglob("*") if p.is_file()}
    assert before == after
    assert any("already complete" in m for m in messages)


def test_tiny_maker_is_deterministic_and_repairs_a_broken_dir(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tiny"
    make_tiny(out)
    stamp = DataLayout(out).tiny_stamp.name
    assert stamp == "tiny_manifest_sp1024.json"
    ref = json.loads((tiny_data_dir / stamp).read_text())["files"]
    new = json.loads((out / stamp).read_text())["files"]
    assert {k: v["sha256"] for k, v in new.items()} == {k: v["sha256"] for k, v in ref.items()}
    # A truncated shard makes the dir incomplete; the next call rebuilds it cleanly and
    # drops shards it did not write (a stale extra shard would silently join training).
    shard = out / "datasets" / "fineweb10B_sp1024" / "fineweb_val_000000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    stale = out / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000099.bin"
    write_shard(stale, [1, 2, 3])
    make_tiny(out)
    assert read_header(shard) > 0
    assert not stale.exists(), "a rebuild removes shards it did not write"


def test_check_command_reports_bad_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 2, 3])
    assert data.main(["check", "--out", str(tmp_path)]) == 0
    assert "3 tokens" in capsys.readouterr().out
    _corrupt(tmp_path / "fineweb_train_000000.bin", "magic")
    assert data.main(["check", "--out", str(tmp_path)]) == 1
    assert "bad magic" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Tokenizer variants
# --------------------------------------------------------------------------------------------


def test_variants_name_the_official_layout() -> None:
    assert VARIANTS == {
        "sp1024": ("fineweb10B_sp1024", "fineweb_1024_bpe", "willdepueoai/parameter-golf"),
        "sp4096": ("fineweb10B_sp4096", "fineweb_4096_bpe", "kevclark/parameter-golf"),
        "sp8192": ("fineweb10B_sp8192", "fineweb_8192_bpe", "kevclark/parameter-golf"),
    }
    assert DEFAULT_VARIANT == "sp8192"
    assert [variants.pieces(v) for v in VARIANTS] == [1024, 4096, 8192]
    root = Path("/d")
    # DataLayout(root) stays the tiny preset's sp1024, as golf_task.presets.tiny_env expects.
    assert DataLayout(root).dataset_dir == root / "datasets" / "fineweb10B_sp1024"
    big = DataLayout(root, "sp8192")
    assert big.dataset_dir == root / "datasets" / "fineweb10B_sp8192"
    assert big.tokenizer_model == root / "tokenizers" / "fineweb_8192_bpe.model"
    assert big.tokenizer_vocab == root / "tokenizers" / "fineweb_8192_bpe.vocab"
    assert big.tiny_stamp != DataLayout(root, "sp4096").tiny_stamp
    with pytest.raises(ValueError, match="unknown variant 'sp2048'"):
        DataLayout(root, "sp2048")
    with pytest.raises(ValueError, match="unknown variant"):
        variants.pieces("byte260")


def test_tiny_preset_reads_the_sp1024_layout(tiny_data_dir: Path) -> None:
    from golf_task.presets import tiny_env

    env = tiny_env(tiny_data_dir)
    assert env["DATA_PATH"] == str(tiny_data_dir / "datasets" / "fineweb10B_sp1024")
    assert env["TOKENIZER_PATH"] == str(tiny_data_dir / "tokenizers" / "fineweb_1024_bpe.model")
    assert Path(env["TOKENIZER_PATH"]).is_file()


def _hyperparameter_defaults(script: Path) -> dict[str, object]:
    """``Hyperparameters``' class-level defaults, read from the source (the script is not
    imported: this must hold whatever torch can or cannot do here)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Hyperparameters")
    return {
        n.target.id: ast.literal_eval(n.value)
        for n in cls.body
        if isinstance(n, ast.AnnAssign)
        and isinstance(n.target, ast.Name)
        and isinstance(n.value, ast.Constant)
    }


def test_train_script_defaults_read_the_default_variant() -> None:
    """train_gpt.py's DATA_PATH / TOKENIZER_PATH defaults are the DEFAULT_VARIANT layout under
    ./data (where ``python -m golf_task.data fineweb --out ./data`` puts it); helm's remote
    launch derives its defaults from the same variant."""
    defaults = _hyperparameter_defaults(REPO / "golf_task" / "train_gpt.py")
    layout = DataLayout(Path("data"), DEFAULT_VARIANT)
    assert defaults["data_path"] == f"./{layout.dataset_dir.as_posix()}"
    assert defaults["tokenizer_path"] == f"./{layout.tokenizer_model.as_posix()}"
    assert defaults["data_path"] == "./data/datasets/fineweb10B_sp8192"
    assert defaults["tokenizer_path"] == "./data/tokenizers/fineweb_8192_bpe.model"


@pytest.fixture(scope="module")
def variants_dir(tiny_data_dir: Path, cross_process_lock) -> Path:  # noqa: ANN001 - root conftest
    """One dir holding the tiny sp1024, sp4096 and sp8192 builds, cached beside tiny_data_dir
    (same source-hash key). Read-only: tests that change it work on a copy."""
    out = tiny_data_dir.parent / "data_variants"
    with cross_process_lock(Path(str(out) + ".lock")):
        for variant in ("sp1024", "sp4096", "sp8192"):
            make_tiny(out, variant=variant)
    return out


def _docs(sp, tokens: np.ndarray) -> list[str]:  # noqa: ANN001 - a SentencePieceProcessor
    cuts = np.flatnonzero(tokens == sp.bos_id()).tolist() + [tokens.size]
    return [sp.decode(tokens[a + 1 : b].tolist()) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def test_tiny_variants_live_side_by_side_on_the_same_text(variants_dir: Path) -> None:
    import sentencepiece as spm

    val_text, train_sizes = {}, {}
    for variant in ("sp1024", "sp4096", "sp8192"):
        layout = DataLayout(variants_dir, variant)
        n = variants.pieces(variant)
        sp = spm.SentencePieceProcessor(model_file=str(layout.tokenizer_model))
        assert sp.vocab_size() == n
        assert layout.tokenizer_vocab.read_text(encoding="utf-8").count("\n") == n
        assert json.loads(layout.tiny_stamp.read_text())["recipe"]["vocab_size"] == n
        val = np.concatenate([read_shard(p) for p in shards.shard_paths(layout.dataset_dir, "val")])
        train = np.concatenate(
            [read_shard(p) for p in shards.shard_paths(layout.dataset_dir, "train")]
        )
        assert val[0] == train[0] == sp.bos_id()
        assert int(max(val.max(), train.max())) < n
        assert val.size >= 10_000, "enough validation tokens for the tiny preset's eval"
        # The corpus is big enough for the tokenizer: training uses most of its merged pieces
        # (all but the 256 byte-fallback pieces and unk/bos/eos), not a padded smaller set.
        assert np.unique(train).size > 0.85 * (n - 259)
        val_text[variant], train_sizes[variant] = _docs(sp, val), train.size
    # Every variant holds out the same documents, so their bpb compare on the same bytes.
    assert val_text["sp1024"] == val_text["sp4096"] == val_text["sp8192"]
    assert train_sizes["sp1024"] > train_sizes["sp4096"] > train_sizes["sp8192"]


def _snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_rebuilding_one_variant_leaves_the_others(variants_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    shutil.copytree(variants_dir, out)
    ref4k = json.loads(DataLayout(variants_dir, "sp4096").tiny_stamp.read_text())["files"]
    # Break the sp4096 build: only sp4096 is rebuilt, byte for byte as before.
    shard = DataLayout(out, "sp4096").dataset_dir / "fineweb_val_000000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    others = {p: s for p, s in _snapshot(out).items() if "4096" not in p.as_posix() and p != shard}
    messages: list[str] = []
    for variant in ("sp1024", "sp4096", "sp8192"):
        make_tiny(out, variant=variant, log=messages.append)
    assert {p: s for p, s in _snapshot(out).items() if p in others} == others
    assert sum("already complete" in m for m in messages) == 2
    assert any("wrote tiny sp4096" in m for m in messages)
    new4k = json.loads(DataLayout(out, "sp4096").tiny_stamp.read_text())["files"]
    assert {k: v["sha256"] for k, v in new4k.items()} == {k: v["sha256"] for k, v in ref4k.items()}
    assert all("4096" in k for k in new4k), "a variant's stamp lists only its own files"


def test_tiny_cli_takes_a_variant(
    variants_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d"
    shutil.copytree(variants_dir, out)
    assert data.main(["tiny", "--out", str(out), "--variant", "sp8192"]) == 0
    assert "tiny sp8192 data already complete" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        data.main(["tiny", "--out", str(out), "--variant", "sp2048"])
    assert exit_info.value.code == 2
    assert data.build_parser().parse_args(["tiny", "--out", "x"]).variant == "sp1024"
