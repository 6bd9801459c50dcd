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

Nothing here can be tried without internet, so the tests drive ``fetch_fineweb`` with a local
``fetch`` that serves files from memory in place of ``http_fetch``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from golf_task.shards import DataLayout, ShardError, read_header
from golf_task.variants import DEFAULT_VARIANT, check_variant, pieces

HF_REMOTE_ROOT = "datasets"
HF_URL = "https://huggingface.co/datasets/{repo}/resolve/main/{path}"
MANIFEST = "manifest.json"

Fetcher = Callable[[str, Path], bool]
Log = Callable[[str], None]


def http_fetch(url: str, dest: Path) -> bool:
    """Download ``url`` to ``dest`` atomically; False on 404 (the way shard lists end).

    Sends ``HF_TOKEN`` from the environment when it is set, as Hugging Face's own client does,
    for repos that need a login.
    """
    tmp = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url)
    if token := os.environ.get("HF_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp, open(tmp, "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
    except urllib.error.HTTPError as err:
        tmp.unlink(missing_ok=True)
        if err.code == 404:
            return False
        raise
    os.replace(tmp, dest)
    return True


def remote_url(repo_id: str, remote_root: str, rel: str) -> str:
    """The download URL of ``rel`` (e.g. ``tokenizers/fineweb_8192_bpe.model``) in a repo."""
    path = f"{remote_root.strip('/')}/{rel}" if remote_root.strip("/") else rel
    return HF_URL.format(repo=repo_id, path=path)


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
) -> DataLayout:
    """Download the tokenizer, every validation shard and the first ``train_shards`` shards.

    ``repo_id`` defaults to the variant's repo. Files already present and valid are kept, so
    an interrupted download resumes; a local file that fails its check is deleted, reported
    and fetched again. Each download is checked (shard header and size, tokenizer piece
    count); a bad one is deleted and reported (ShardError / ValueError), never trained on.
    With a manifest, the validation split must be complete and ``train_shards`` may not
    exceed what is published (refused before anything is downloaded); without one,
    validation shards are fetched until the first missing index. No validation shard at all
    is refused: a run without a validation split has no score.
    """
    names = check_variant(variant)
    if train_shards < 0:
        raise ValueError("train_shards must be >= 0")
    repo = repo_id or names.repo
    layout = DataLayout(Path(out), variant)

    def url(rel: str) -> str:
        return remote_url(repo, remote_root, rel)

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
    vocab = layout.tokenizer_vocab
    if not vocab.is_file() and not fetch(url(f"tokenizers/{vocab.name}"), vocab):
        log(f"{vocab.name} not in {repo} (only the .model is needed to train)")

    def get_shard(split: str, index: int) -> bool:
        name = f"fineweb_{split}_{index:06d}.bin"
        dest = layout.dataset_dir / name
        if dest.is_file():
            try:
                read_header(dest)
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
