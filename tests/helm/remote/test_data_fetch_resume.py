"""``python -m golf_task.data fineweb`` against a real HTTP server on 127.0.0.1.

The server plays huggingface.co for ``--data-url``: a manifest, a real tokenizer (the tiny
build's) and a few shards written by golf_task's own shard writer. It can cut the connection
in the middle of a file once, as a dropped network does, and honours ``Range`` requests (or,
when told to, ignores them as some servers do). Nothing is mocked: the CLI, urllib and the
shard checks are the ones a box runs.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from golf_task import data
from golf_task.shards import DataLayout, read_header, write_shard
from golf_task.variants import VARIANTS

VARIANT = "sp1024"
REPO = VARIANTS[VARIANT].repo
DS, TOK, _ = VARIANTS[VARIANT]
PREFIX = f"/{REPO}/resolve/main/datasets"
CUT = f"{PREFIX}/datasets/{DS}/fineweb_train_000001.bin"


class _Server(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[tuple[str, str | None]] = []
    cut_once: set[str] = set()
    honour_range = True

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        cls = type(self)
        rng = self.headers.get("Range")
        cls.requests.append((self.path, rng))
        body = cls.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and cls.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.path in cls.cut_once:  # half the file, then the connection drops
            cls.cut_once.discard(self.path)
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            self.close_connection = True
            return
        self.wfile.write(part)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, tiny_data_dir: Path) -> Iterator[str]:
    """The export on a local server: manifest, tokenizer, 1 val + 3 train shards."""
    layout = DataLayout(tiny_data_dir, VARIANT)
    files = {
        f"{PREFIX}/tokenizers/{TOK}.model": layout.tokenizer_model.read_bytes(),
        f"{PREFIX}/tokenizers/{TOK}.vocab": layout.tokenizer_vocab.read_bytes(),
        f"{PREFIX}/manifest.json": json.dumps(
            {"datasets": [{"name": DS, "stats": {"files_val": 1, "files_train": 3}}]}
        ).encode(),
    }
    for split, i, n in (
        ("val", 0, 3000),
        ("train", 0, 5000),
        ("train", 1, 300_000),
        ("train", 2, 7000),
    ):
        path = tmp_path / "src" / f"{split}{i}.bin"
        write_shard(path, np.arange(n, dtype=np.int64) % 1024)
        files[f"{PREFIX}/datasets/{DS}/fineweb_{split}_{i:06d}.bin"] = path.read_bytes()
    _Server.files, _Server.requests, _Server.cut_once = files, [], set()
    _Server.honour_range = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def _fetch(out: Path, server: str | None, *extra: str) -> int:
    args = ["fineweb", "--out", str(out), "--variant", VARIANT, "--train-shards", "3"]
    if server:
        args += ["--data-url", server]
    return data.main([*args, "--retries", "0", *extra])


def test_a_cut_download_resumes_with_a_range_request_and_verifies(
    tmp_path: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, progress = tmp_path / "out", tmp_path / "progress.json"
    _Server.cut_once = {CUT}
    assert _fetch(out, server, "--progress", str(progress)) == 1
    err = capsys.readouterr().err
    assert "connection closed after" in err and "run again to continue" in err
    part = DataLayout(out, VARIANT).dataset_dir / "fineweb_train_000001.bin.part"
    full = len(_Server.files[CUT])
    kept = part.stat().st_size
    assert 0 < kept < full, "the half that arrived is kept"
    assert not part.with_suffix("").exists(), "no shard under its real name until complete"

    _Server.requests.clear()
    assert _fetch(out, server, "--progress", str(progress)) == 0
    asked = dict(_Server.requests)
    assert asked[CUT] == f"bytes={kept}-", "continued from where it stopped"
    assert f"{PREFIX}/datasets/{DS}/fineweb_train_000000.bin" not in asked, "finished: skipped"
    assert not part.exists()
    layout = DataLayout(out, VARIANT)
    assert read_header(layout.dataset_dir / "fineweb_train_000001.bin") == 300_000
    assert data.main(["check", "--out", str(out)]) == 0
    state = json.loads(progress.read_text())
    assert state["files_done"] == state["files_total"] == 1 + 1 + 3
    assert state["eta_s"] == 0 or state["eta_s"] is not None

    _Server.requests.clear()  # complete: a third run verifies everything and downloads nothing
    assert _fetch(out, server) == 0
    assert _Server.requests == []


def test_a_server_that_ignores_range_starts_the_part_over(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _Server.cut_once, _Server.honour_range = {CUT}, False
    monkeypatch.setenv("GOLF_DATA_URL", server)  # the environment's source, no --data-url
    assert _fetch(out, None) == 1
    assert _fetch(out, None) == 0
    ranged = [r for p, r in _Server.requests if p == CUT]
    assert ranged[0] is None and ranged[1] is not None, "it asked to continue"
    shard = DataLayout(out, VARIANT).dataset_dir / "fineweb_train_000001.bin"
    assert shard.read_bytes() == _Server.files[CUT], "the whole file, not the half twice"


def test_retries_continue_within_one_run(tmp_path: Path, server: str) -> None:
    _Server.cut_once = {CUT}
    assert _fetch(tmp_path / "out", server, "--retries", "1") == 0
    assert [r for p, r in _Server.requests if p == CUT][1].startswith("bytes=")


def test_fineweb_arguments(tmp_path: Path) -> None:
    args = data.build_parser().parse_args(["fineweb", "--out", "x"])
    assert (args.data_url, args.retries, args.progress) == (None, 3, None)
    args = data.build_parser().parse_args(
        ["fineweb", "--out", "x", "--data-url", "http://m", "--progress", "p.json"]
    )
    assert (args.data_url, args.progress) == ("http://m", Path("p.json"))
    # a source that refuses connections: one line, exit 1, nothing half-written
    assert _fetch(tmp_path / "o", "http://127.0.0.1:9") == 1
    assert not list((tmp_path / "o").rglob("*.bin"))
