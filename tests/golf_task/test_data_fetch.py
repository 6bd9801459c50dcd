"""The downloader of the published exports (golf_task.data_fetch), offline.

Nothing can be downloaded here, so ``FakeRemote`` stands in for the Hugging Face download: it
is the ``fetch`` that ``fetch_fineweb`` calls instead of ``http_fetch``, and serves files from
memory by URL. Everything else is the real loading code. The tokenizers it serves are real
ones (the tiny builds), because the downloader checks their piece counts. ``http_fetch``
itself is tested against a real HTTP server on the loopback interface.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from golf_task import data, shards
from golf_task.data import make_tiny
from golf_task.data_fetch import fetch_fineweb, http_fetch
from golf_task.shards import DataLayout, ShardError, write_shard
from golf_task.variants import VARIANTS

HF = "https://huggingface.co/datasets"


@pytest.fixture(scope="module")
def variants_dir(tiny_data_dir: Path, cross_process_lock) -> Path:  # noqa: ANN001 - root conftest
    """The tiny builds of every variant in one dir (shared with test_data.py). Read-only."""
    out = tiny_data_dir.parent / "data_variants"
    with cross_process_lock(Path(str(out) + ".lock")):
        for variant in VARIANTS:
            make_tiny(out, variant=variant)
    return out


class FakeRemote:
    """Stands in for the HTTP download: serves ``files`` (full URL -> bytes), False (404) for
    any other URL, and records every URL asked for, in order."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.calls = files, []

    def __call__(self, url: str, dest: Path) -> bool:
        self.calls.append(url)
        if url not in self.files:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.files[url])
        return True


def _shard(tmp_path: Path, n: int) -> bytes:
    path = tmp_path / "src" / f"{n}.bin"
    write_shard(path, np.arange(n, dtype=np.uint16))
    return path.read_bytes()


def _base(variant: str) -> str:
    return f"{HF}/{VARIANTS[variant].repo}/resolve/main/datasets"


def _urls(variant: str, n_val: int, n_train: int) -> list[str]:
    """What a first download asks for, in order: the layout of cached_challenge_fineweb.py."""
    ds, tok, _ = VARIANTS[variant]
    base = _base(variant)
    return [
        f"{base}/manifest.json",
        f"{base}/tokenizers/{tok}.model",
        f"{base}/tokenizers/{tok}.vocab",
        *(f"{base}/datasets/{ds}/fineweb_val_{i:06d}.bin" for i in range(n_val)),
        *(f"{base}/datasets/{ds}/fineweb_train_{i:06d}.bin" for i in range(n_train)),
    ]


def _remote(
    tmp_path: Path,
    variants_dir: Path,
    variant: str,
    *,
    n_val: int = 2,
    n_train: int = 3,
    manifest: bool = True,
) -> dict[str, bytes]:
    """A published export as the repo serves it: manifest, tokenizer, shards."""
    ds, tok, _ = VARIANTS[variant]
    base, layout = _base(variant), DataLayout(variants_dir, variant)
    files = {
        f"{base}/tokenizers/{tok}.model": layout.tokenizer_model.read_bytes(),
        f"{base}/tokenizers/{tok}.vocab": layout.tokenizer_vocab.read_bytes(),
    }
    if manifest:
        entry = {"name": ds, "tokenizer_name": tok, "stats": {"files_val": n_val, "files_train": 9}}
        other = {"name": "fineweb10B_byte260", "stats": {"files_val": 1, "files_train": 1}}
        files[f"{base}/manifest.json"] = json.dumps({"datasets": [other, entry]}).encode()
    for i in range(n_val):
        files[f"{base}/datasets/{ds}/fineweb_val_{i:06d}.bin"] = _shard(tmp_path, 10 + i)
    for i in range(n_train):
        files[f"{base}/datasets/{ds}/fineweb_train_{i:06d}.bin"] = _shard(tmp_path, 20 + i)
    return files


def _quiet(_msg: str) -> None:
    pass


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_comes_from_its_repo_into_the_trainers_layout(
    tmp_path: Path, variants_dir: Path, variant: str
) -> None:
    remote = FakeRemote(_remote(tmp_path, variants_dir, variant))
    layout = fetch_fineweb(
        tmp_path / "out", variant=variant, train_shards=2, fetch=remote, log=_quiet
    )
    assert remote.calls == _urls(variant, n_val=2, n_train=2)
    expected_repo = "willdepueoai" if variant == "sp1024" else "kevclark"
    assert all(f"/datasets/{expected_repo}/parameter-golf/resolve/" in u for u in remote.calls)
    assert layout == DataLayout(tmp_path / "out", variant)
    assert layout.tokenizer_model.read_bytes() == (
        DataLayout(variants_dir, variant).tokenizer_model.read_bytes()
    )
    assert sorted(p.name for p in layout.dataset_dir.iterdir()) == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_val_000000.bin",
        "fineweb_val_000001.bin",
    ]
    manifest = f"{expected_repo}__parameter-golf.json"
    assert (tmp_path / "out" / "manifests" / manifest).is_file()


def test_repo_override_and_a_variant_in_a_shared_dir(tmp_path: Path, variants_dir: Path) -> None:
    files = _remote(tmp_path, variants_dir, "sp4096")
    mirror = {u.replace("kevclark/", "mirror/"): b for u, b in files.items()}
    remote = FakeRemote(mirror)
    out = tmp_path / "out"
    sp8k = DataLayout(out, "sp8192").dataset_dir / "fineweb_train_000000.bin"
    write_shard(sp8k, [1, 2, 3])  # another variant already in the dir
    fetch_fineweb(
        out, variant="sp4096", train_shards=1, repo_id="mirror/parameter-golf", fetch=remote
    )
    assert all("/mirror/parameter-golf/" in u for u in remote.calls)
    assert shards.read_shard(sp8k).tolist() == [1, 2, 3]


def test_resume_fetches_only_what_is_missing_or_bad(tmp_path: Path, variants_dir: Path) -> None:
    remote = FakeRemote(_remote(tmp_path, variants_dir, "sp8192"))
    out = tmp_path / "out"
    fetch_fineweb(out, train_shards=2, fetch=remote, log=_quiet)  # sp8192 is the default
    assert remote.calls == _urls("sp8192", n_val=2, n_train=2)
    # A complete dir: nothing is downloaded again, not even the manifest.
    remote.calls.clear()
    fetch_fineweb(out, train_shards=2, fetch=remote, log=_quiet)
    assert remote.calls == []
    # More shards, and a local shard broken since: only those two are fetched.
    layout = DataLayout(out, "sp8192")
    val1 = layout.dataset_dir / "fineweb_val_000001.bin"
    val1.write_bytes(val1.read_bytes()[:-2])
    messages: list[str] = []
    fetch_fineweb(out, train_shards=3, fetch=remote, log=messages.append)
    assert remote.calls == [_urls("sp8192", 2, 3)[i] for i in (4, 7)]
    assert any("deleted local fineweb_val_000001.bin" in m and "truncated" in m for m in messages)
    assert shards.read_header(val1) == 11


def test_a_bad_download_is_deleted_and_reported(tmp_path: Path, variants_dir: Path) -> None:
    files = _remote(tmp_path, variants_dir, "sp8192")
    bad = _urls("sp8192", 2, 3)[6]  # train shard 1
    good = files[bad]
    files[bad] = b"\x00" * 4 + good[4:]  # bad magic
    messages: list[str] = []
    out = tmp_path / "out"
    with pytest.raises(ShardError, match="bad magic 0"):
        fetch_fineweb(out, train_shards=3, fetch=FakeRemote(files), log=messages.append)
    dest = DataLayout(out, "sp8192").dataset_dir / "fineweb_train_000001.bin"
    assert not dest.exists()
    assert any("deleted downloaded fineweb_train_000001.bin" in m for m in messages)
    # Fixed upstream: the rerun fetches the bad one and what came after, nothing before.
    files[bad] = good
    remote = FakeRemote(files)
    fetch_fineweb(out, train_shards=3, fetch=remote, log=_quiet)
    assert [u.rsplit("/", 1)[1] for u in remote.calls] == [
        "fineweb_train_000001.bin",
        "fineweb_train_000002.bin",
    ]
    assert data.main(["check", "--out", str(out)]) == 0


def test_a_wrong_tokenizer_is_refused(tmp_path: Path, variants_dir: Path) -> None:
    files = _remote(tmp_path, variants_dir, "sp8192")
    model = _urls("sp8192", 0, 0)[1]
    files[model] = DataLayout(variants_dir, "sp1024").tokenizer_model.read_bytes()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="tokenizer has 1024 pieces, the variant needs 8192"):
        fetch_fineweb(out, train_shards=1, fetch=FakeRemote(files), log=_quiet)
    assert not DataLayout(out, "sp8192").tokenizer_model.exists()
    files[model] = b"<html>rate limited</html>"
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        fetch_fineweb(out, train_shards=1, fetch=FakeRemote(files), log=_quiet)
    assert not DataLayout(out, "sp8192").dataset_dir.exists(), "no shard before the tokenizer"


def test_a_missing_validation_split_is_refused(tmp_path: Path, variants_dir: Path) -> None:
    # The manifest says two validation shards, the repo has one: refused before training data.
    files = _remote(tmp_path, variants_dir, "sp8192")
    del files[_urls("sp8192", 2, 0)[4]]
    remote = FakeRemote(files)
    with pytest.raises(FileNotFoundError, match="validation split incomplete: shard 1 of 2"):
        fetch_fineweb(tmp_path / "a", train_shards=2, fetch=remote, log=_quiet)
    assert not any("fineweb_train_" in u for u in remote.calls)
    # No manifest and no validation shard at all.
    files = _remote(tmp_path, variants_dir, "sp8192", n_val=0, manifest=False)
    remote = FakeRemote(files)
    with pytest.raises(FileNotFoundError, match="no validation shards for fineweb10B_sp8192"):
        fetch_fineweb(tmp_path / "b", train_shards=2, fetch=remote, log=_quiet)
    assert not any("fineweb_train_" in u for u in remote.calls)
    # A manifest that does not list the dataset (e.g. sp8192 asked of the sp1024 repo).
    files = _remote(tmp_path, variants_dir, "sp1024")
    moved = {u.replace("willdepueoai/", "kevclark/"): b for u, b in files.items()}
    with pytest.raises(ValueError, match="fineweb10B_sp8192 is not listed"):
        fetch_fineweb(tmp_path / "c", train_shards=1, fetch=FakeRemote(moved), log=_quiet)


def test_without_a_manifest_validation_shards_are_probed(
    tmp_path: Path, variants_dir: Path
) -> None:
    files = _remote(tmp_path, variants_dir, "sp4096", n_val=3, manifest=False)
    del files[_urls("sp4096", 0, 0)[2]]  # and no .vocab: only the .model is needed
    messages: list[str] = []
    layout = fetch_fineweb(
        tmp_path / "o", variant="sp4096", train_shards=1, fetch=FakeRemote(files),
        log=messages.append,
    )  # fmt: skip
    assert len(shards.shard_paths(layout.dataset_dir, "val")) == 3
    assert any("no manifest.json" in m for m in messages)
    assert any("fineweb_4096_bpe.vocab not in" in m for m in messages)


def test_argument_handling(
    tmp_path: Path, variants_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="unknown variant 'sp2048'"):
        fetch_fineweb(tmp_path, variant="sp2048", fetch=FakeRemote({}))
    with pytest.raises(ValueError, match="train_shards must be >= 0"):
        fetch_fineweb(tmp_path, train_shards=-1, fetch=FakeRemote({}))
    # More train shards than published: refused after reading the manifest, before any data.
    remote = FakeRemote(_remote(tmp_path, variants_dir, "sp8192"))
    with pytest.raises(ValueError, match="publishes 9 train shards, asked for 10"):
        fetch_fineweb(tmp_path / "o", train_shards=10, fetch=remote, log=_quiet)
    assert remote.calls == [_urls("sp8192", 0, 0)[0]]
    # The CLI: sp8192 and 80 shards by default, choices checked by argparse.
    args = data.build_parser().parse_args(["fineweb", "--out", "x"])
    assert (args.variant, args.train_shards, args.repo_id) == ("sp8192", 80, None)
    assert data.main(["fineweb", "--out", str(tmp_path), "--train-shards", "-1"]) == 1
    assert "--train-shards must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        data.main(["fineweb", "--out", str(tmp_path), "--variant", "sp9999"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        data.main(["fineweb"])  # --out is required


def test_missing_train_shard_is_an_error(tmp_path: Path, variants_dir: Path) -> None:
    remote = FakeRemote(_remote(tmp_path, variants_dir, "sp8192"))
    with pytest.raises(FileNotFoundError, match="train shard 3 of fineweb10B_sp8192 missing"):
        fetch_fineweb(tmp_path / "o", train_shards=5, fetch=remote, log=_quiet)


# --------------------------------------------------------------------------------------------
# http_fetch against a real HTTP server on 127.0.0.1
# --------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    auth: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).auth.append(self.headers.get("Authorization"))
        if self.path == "/boom":
            self.send_error(500)
        elif self.path in self.files:
            body = self.files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.files, _Handler.auth = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_fetch_downloads_reports_404_and_raises_on_errors(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = bytes(range(256)) * 5000  # > one 1 MiB read
    _Handler.files["/a.bin"] = body
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert http_fetch(f"{server}/a.bin", tmp_path / "d" / "a.bin")
    assert (tmp_path / "d" / "a.bin").read_bytes() == body
    assert _Handler.auth == ["Bearer hf_test"]
    monkeypatch.delenv("HF_TOKEN")
    assert not http_fetch(f"{server}/missing.bin", tmp_path / "m.bin")
    assert _Handler.auth[-1] is None
    with pytest.raises(urllib.error.HTTPError):
        http_fetch(f"{server}/boom", tmp_path / "b.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"], "no partial files left"


def test_fetch_fineweb_over_http(tmp_path: Path, variants_dir: Path, server: str) -> None:
    """The whole download over a real HTTP connection (the server plays huggingface.co)."""
    files = _remote(tmp_path, variants_dir, "sp8192", n_val=1)
    _Handler.files = {u.removeprefix("https://huggingface.co"): b for u, b in files.items()}

    def local_http(url: str, dest: Path) -> bool:
        return http_fetch(url.replace("https://huggingface.co", server), dest)

    layout = fetch_fineweb(tmp_path / "o", train_shards=3, fetch=local_http, log=_quiet)
    assert [shards.read_header(p) for p in shards.shard_paths(layout.dataset_dir, "train")] == [
        20,
        21,
        22,
    ]
    assert data.main(["check", "--out", str(tmp_path / "o")]) == 0
