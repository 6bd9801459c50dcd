"""The real cached challenge data: the published FineWeb exports, fetched from Hugging Face.

``python -m golf_task.data fineweb --out DIR --variant sp8192`` ends here. The exports share
one layout (that of the challenge's ``data/cached_challenge_fineweb.py``), rooted at the repo's
``datasets/`` folder:

    datasets/manifest.json                                     shard counts per dataset
    datasets/datasets/fineweb10B_sp<N>/fineweb_val_NNNNNN.bin  every one is downloaded
    datasets/datasets/fineweb10B_sp<N>/fineweb_train_NNNNNN.bin  the first --train-shards
    datasets/tokenizers/fineweb_<N>_bpe.model (+ .vocab)

sp1024 is served by ``willdepueoai/parameter-golf``, sp4096 and sp8192 by
``kevclark/parameter-golf`` (``golf_task.variants.VARIANTS``). Files land in the same
``DIR/datasets/...`` and ``DIR/tokenizers/...`` layout that ``train_gpt.py`` reads; each repo's
manifest is kept as ``DIR/manifests/<owner>__<name>.json`` (the two repos' manifests differ).

Downloads resume: a file arrives as ``NAME.part`` and becomes ``NAME`` only when complete; a
``.part`` left by a cut connection or a Ctrl-C is continued with an HTTP ``Range`` request (a
server that ignores the range sends the whole file, and the part starts over). Finished shards
are verified (header, size) and skipped. ``--data-url`` (or ``GOLF_DATA_URL``) replaces
``https://huggingface.co/datasets`` as the source, for a mirror or a test's local server;
``--progress FILE`` keeps a small JSON file up to date (files, bytes, rate, ETA) that
``helm host setup`` reads over SSH while the download runs.

The tests drive ``fetch_fineweb`` with a local ``fetch`` that serves files from memory, and
``http_fetch`` (resumption included) against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from golf_task.shards import DataLayout, ShardError, read_header
from golf_task.variants import DEFAULT_VARIANT, check_variant, pieces

HF_REMOTE_ROOT = "datasets"
HF_BASE = "https://huggingface.co/datasets"
HF_URL = HF_BASE + "/{repo}/resolve/main/{path}"
DATA_URL_ENV = "GOLF_DATA_URL"  # replaces HF_BASE (a mirror, or a test's local server)
MANIFEST = "manifest.json"
CHUNK = 1 << 20

Fetcher = Callable[[str, Path], bool]
Log = Callable[[str], None]


class Progress:
    """How far a download is, written now and then as JSON for whoever watches (helm).

    ``files_total`` is known once the manifest is read; ``eta_s`` is the remaining files at
    the mean size of those seen so far, at this run's rate. Written at most twice a second,
    atomically (a reader never sees half a file).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.started = time.monotonic()
        self.files_total: int | None = None
        self.files_done = 0
        self.bytes = 0  # downloaded by this run
        self.sizes: list[int] = []  # of the files done (downloaded or verified)
        self.current: str | None = None
        self.current_bytes = 0
        self.current_total: int | None = None
        self._last = 0.0

    def start_file(self, name: str, have: int, total: int | None) -> None:
        self.current, self.current_bytes, self.current_total = name, have, total
        self.write()

    def add(self, n: int) -> None:
        self.bytes += n
        self.current_bytes += n
        self.write()

    def file_done(self, size: int) -> None:
        self.files_done += 1
        self.sizes.append(size)
        self.current = None
        self.write(force=True)

    def snapshot(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes / elapsed
        eta = None
        if self.files_total is not None and self.sizes and rate > 0:
            mean = sum(self.sizes) / len(self.sizes)
            left = max(self.files_total - self.files_done, 0) * mean - self.current_bytes
            eta = max(left, 0) / rate
        return {
            "files_total": self.files_total,
            "files_done": self.files_done,
            "bytes": self.bytes,
            "rate_bps": rate,
            "eta_s": eta,
            "current": self.current,
            "current_bytes": self.current_bytes,
            "current_total": self.current_total,
        }

    def write(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or (not force and now - self._last < 0.5):
            return
        self._last = now
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, self.path)


def http_fetch(url: str, dest: Path, *, progress: Progress | None = None, retries: int = 0) -> bool:
    """Download ``url`` to ``dest`` (via ``dest.part``, continued if one is there); False on
    404 (the way shard lists end).

    A connection cut mid-file keeps the ``.part`` and is retried ``retries`` times from where
    it stopped (then raised as ConnectionError: a later run continues it). Sends ``HF_TOKEN``
    from the environment when it is set, as Hugging Face's own client does.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            return _fetch_once(url, dest, progress)
        except urllib.error.HTTPError:
            raise
        except (OSError, http.client.HTTPException) as err:
            if attempt == retries:
                if isinstance(err, OSError) and not isinstance(err, urllib.error.URLError):
                    raise
                raise ConnectionError(f"{url}: {err}") from err
            time.sleep(min(2.0**attempt, 10.0))
    raise AssertionError("unreachable")


def _fetch_once(url: str, dest: Path, progress: Progress | None) -> bool:
    tmp = dest.with_name(dest.name + ".part")
    have = tmp.stat().st_size if tmp.is_file() else 0
    request = urllib.request.Request(url)
    if token := os.environ.get("HF_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after the part's end: it holds the whole file
            os.replace(tmp, dest)
            return True
        if err.code == 404:
            tmp.unlink(missing_ok=True)
            return False
        raise
    with resp:
        if resp.status != 206:
            have = 0  # the server sent the whole file: start the part over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        if progress is not None:
            progress.start_file(dest.name, have, total)
        with open(tmp, "ab" if have else "wb") as f:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                if progress is not None:
                    progress.add(len(chunk))
    size = tmp.stat().st_size
    if total is not None and size != total:
        raise ConnectionError(
            f"{url}: connection closed after {size} of {total} bytes "
            f"({tmp.name} kept: run again to continue)"
        )
    os.replace(tmp, dest)
    return True


def remote_url(repo_id: str, remote_root: str, rel: str, base_url: str | None = None) -> str:
    """The download URL of ``rel`` (e.g. ``tokenizers/fineweb_8192_bpe.model``) in a repo,
    under ``base_url`` (default: $GOLF_DATA_URL, else Hugging Face)."""
    path = f"{remote_root.strip('/')}/{rel}" if remote_root.strip("/") else rel
    base = (base_url or os.environ.get(DATA_URL_ENV) or HF_BASE).rstrip("/")
    return f"{base}/{repo_id}/resolve/main/{path}"


def _shard_counts(manifest: dict, dataset: str) -> tuple[int, int]:
    """(val shards, train shards) the manifest lists for ``dataset``; ValueError if absent."""
    for entry in manifest.get("datasets", []):
        if isinstance(entry, dict) and entry.get("name") == dataset:
            stats = entry.get("stats") or {}
            try:
                return int(stats["files_val"]), int(stats["files_train"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"manifest entry for {dataset} has no shard counts") from None
    raise ValueError(f"dataset {dataset} is not listed in the repo's manifest")


def _parse_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _load_manifest(path: Path, url: str, fetch: Fetcher, log: Log) -> dict | None:
    """The repo's manifest (a valid copy already here, else fetched); None if it has none."""
    if path.is_file():
        if (manifest := _parse_manifest(path)) is not None:
            return manifest
        path.unlink()
    if not fetch(url, path):
        log(f"no {MANIFEST} in the repo: probing validation shards until one is missing")
        return None
    if (manifest := _parse_manifest(path)) is None:
        path.unlink()
        raise ValueError(f"{url}: the downloaded manifest is not a JSON object (deleted)")
    return manifest


def _check_tokenizer(path: Path, expected: int) -> None:
    """ValueError unless ``path`` is a SentencePiece model with ``expected`` pieces."""
    import sentencepiece as spm

    try:
        count = spm.SentencePieceProcessor(model_file=str(path)).vocab_size()
    except (OSError, RuntimeError) as err:
        raise ValueError(f"{path}: not a SentencePiece model ({err})") from None
    if count != expected:
        raise ValueError(f"{path}: tokenizer has {count} pieces, the variant needs {expected}")


def fetch_fineweb(
    out: Path,
    *,
    variant: str = DEFAULT_VARIANT,
    train_shards: int = 80,
    repo_id: str | None = None,
    remote_root: str = HF_REMOTE_ROOT,
    fetch: Fetcher = http_fetch,
    log: Log = print,
    base_url: str | None = None,
    progress: Progress | None = None,
) -> DataLayout:
    """Download the tokenizer, every validation shard and the first ``train_shards`` shards.

    ``repo_id`` defaults to the variant's repo. Files already present and valid are kept, so
    an interrupted download resumes; a local file that fails its check is deleted, reported
    and fetched again. Each download is checked (shard header and size, tokenizer piece
    count); a bad one is deleted and reported (ShardError / ValueError), never trained on.
    With a manifest, the validation split must be complete and ``train_shards`` may not
    exceed what is published (refused before anything is downloaded); without one,
    validation shards are fetched until the first missing index. No validation shard at all
    is refused: a run without a validation split has no score. ``progress`` is told the
    files planned and done (``fetch`` reports the bytes, if it is given the same object).
    """
    names = check_variant(variant)
    if train_shards < 0:
        raise ValueError("train_shards must be >= 0")
    repo = repo_id or names.repo
    layout = DataLayout(Path(out), variant)

    def url(rel: str) -> str:
        return remote_url(repo, remote_root, rel, base_url)

    def done(path: Path) -> None:
        if progress is not None:
            progress.file_done(path.stat().st_size)

    # One copy per repo: the two repos' manifests differ, and a variant's shard counts must
    # come from the repo its shards do.
    manifest_copy = layout.root / "manifests" / f"{repo.replace('/', '__')}.json"
    manifest = _load_manifest(manifest_copy, url(MANIFEST), fetch, log)
    n_val: int | None = None
    if manifest is not None:
        n_val, n_train = _shard_counts(manifest, names.dataset)
        if train_shards > n_train:
            raise ValueError(
                f"{variant}: {repo} publishes {n_train} train shards, asked for {train_shards}"
            )
        if n_val <= 0:
            raise ValueError(f"{variant}: the manifest of {repo} lists no validation shards")
        if progress is not None:
            progress.files_total = 1 + n_val + train_shards  # the tokenizer, then the shards

    model = layout.tokenizer_model
    if model.is_file():
        try:
            _check_tokenizer(model, pieces(variant))
        except ValueError as err:
            model.unlink()
            log(f"deleted local {model.name}, fetching it again: {err}")
    if not model.is_file():
        if not fetch(url(f"tokenizers/{model.name}"), model):
            raise FileNotFoundError(f"tokenizer {model.name} not found in {repo}")
        try:
            _check_tokenizer(model, pieces(variant))
        except ValueError as err:
            model.unlink()
            log(f"deleted downloaded {model.name}: {err}")
            raise
    done(model)
    vocab = layout.tokenizer_vocab
    if not vocab.is_file() and not fetch(url(f"tokenizers/{vocab.name}"), vocab):
        log(f"{vocab.name} not in {repo} (only the .model is needed to train)")

    def get_shard(split: str, index: int) -> bool:
        name = f"fineweb_{split}_{index:06d}.bin"
        dest = layout.dataset_dir / name
        if dest.is_file():
            try:
                read_header(dest)
                done(dest)
                return True
            except ShardError as err:
                dest.unlink()
                log(f"deleted local {name}, fetching it again: {err}")
        if not fetch(url(f"datasets/{names.dataset}/{name}"), dest):
            return False
        try:
            n = read_header(dest)
        except ShardError as err:
            dest.unlink(missing_ok=True)
            log(f"deleted downloaded {name}: {err}")
            raise
        log(f"{name}: {n} tokens")
        done(dest)
        return True

    if n_val is None:
        n_val = 0
        while get_shard("val", n_val):
            n_val += 1
        if n_val == 0:
            raise FileNotFoundError(f"no validation shards for {names.dataset} in {repo}")
    else:
        for i in range(n_val):
            if not get_shard("val", i):
                raise FileNotFoundError(
                    f"validation split incomplete: shard {i} of {n_val} of {names.dataset} "
                    f"missing in {repo}"
                )
    for i in range(train_shards):
        if not get_shard("train", i):
            raise FileNotFoundError(f"train shard {i} of {names.dataset} missing in {repo}")
    log(f"{variant} ready in {layout.root}: {n_val} val + {train_shards} train shards")
    return layout
