"""Shard format, the tiny dataset maker and the fineweb downloader's checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from golf_task import data
from golf_task.data import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardError,
    fetch_fineweb,
    make_tiny,
    read_header,
    read_shard,
    write_shard,
)


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
    ref = json.loads((tiny_data_dir / data.TINY_STAMP).read_text())["files"]
    new = json.loads((out / data.TINY_STAMP).read_text())["files"]
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


class FakeRemote:
    """Serves files from a dict keyed by URL path; records which were fetched."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.calls = files, []

    def __call__(self, url: str, dest: Path) -> bool:
        rel = url.split("/resolve/main/", 1)[1]
        self.calls.append(rel)
        if rel not in self.files:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.files[rel])
        return True


def _shard_bytes(tmp_path: Path, n: int) -> bytes:
    path = tmp_path / f"src_{n}.bin"
    write_shard(path, np.arange(n, dtype=np.uint16))
    return path.read_bytes()


def _remote(tmp_path: Path, n_train: int = 3, n_val: int = 2) -> dict[str, bytes]:
    files = {
        "datasets/tokenizers/fineweb_1024_bpe.model": b"model",
        "datasets/tokenizers/fineweb_1024_bpe.vocab": b"vocab",
    }
    for i in range(n_val):
        files[f"datasets/datasets/fineweb10B_sp1024/fineweb_val_{i:06d}.bin"] = _shard_bytes(
            tmp_path, 10 + i
        )
    for i in range(n_train):
        files[f"datasets/datasets/fineweb10B_sp1024/fineweb_train_{i:06d}.bin"] = _shard_bytes(
            tmp_path, 20 + i
        )
    return files


def test_fineweb_downloads_tokenizer_all_val_and_requested_train(tmp_path: Path) -> None:
    remote = FakeRemote(_remote(tmp_path))
    layout = fetch_fineweb(tmp_path / "out", train_shards=2, fetch=remote, log=lambda _m: None)
    names = sorted(p.name for p in layout.dataset_dir.iterdir())
    assert names == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_val_000000.bin",
        "fineweb_val_000001.bin",
    ]
    assert layout.tokenizer_model.read_bytes() == b"model"
    # Resuming fetches nothing that is already there and valid.
    remote.calls.clear()
    fetch_fineweb(tmp_path / "out", train_shards=3, fetch=remote, log=lambda _m: None)
    fetched = [c for c in remote.calls if c.endswith(".bin") and "val_000002" not in c]
    assert fetched == ["datasets/datasets/fineweb10B_sp1024/fineweb_train_000002.bin"]


def test_fineweb_rejects_a_corrupt_download_and_deletes_it(tmp_path: Path) -> None:
    files = _remote(tmp_path)
    key = "datasets/datasets/fineweb10B_sp1024/fineweb_train_000001.bin"
    files[key] = files[key][:-4]
    with pytest.raises(ShardError, match="truncated"):
        fetch_fineweb(tmp_path / "out", train_shards=2, fetch=FakeRemote(files), log=print)
    assert not (tmp_path / "out" / key.removeprefix("datasets/")).exists()


def test_fineweb_missing_train_shard_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train shard 3"):
        fetch_fineweb(
            tmp_path / "o", train_shards=5, fetch=FakeRemote(_remote(tmp_path)), log=print
        )


def test_fineweb_argument_handling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert data.main(["fineweb", "--out", str(tmp_path), "--train-shards", "-1"]) == 1
    assert "--train-shards must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        data.main(["fineweb", "--out", str(tmp_path), "--variant", "sp9999"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        data.main(["fineweb"])  # --out is required
    with pytest.raises(ValueError, match="unknown variant"):
        fetch_fineweb(tmp_path, variant="sp4096", fetch=FakeRemote({}))


def test_check_command_reports_bad_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 2, 3])
    assert data.main(["check", "--out", str(tmp_path)]) == 0
    assert "3 tokens" in capsys.readouterr().out
    _corrupt(tmp_path / "fineweb_train_000000.bin", "magic")
    assert data.main(["check", "--out", str(tmp_path)]) == 1
    assert "bad magic" in capsys.readouterr().err
