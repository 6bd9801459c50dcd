"""Token shards in the competition's format, the tokenizer variants, and a tiny offline dataset.

Everything a box or a test needs to get data into the layout that ``train_gpt.py`` reads, for
each tokenizer variant ``sp<N>`` (N = 1024, 4096, 8192 pieces):

    DIR/datasets/fineweb10B_sp<N>/fineweb_{train,val}_NNNNNN.bin
    DIR/tokenizers/fineweb_<N>_bpe.model (+ .vocab)

The shard reader/writer here is the reference; ``train_gpt.py`` carries a mirror of the reader
(it must stay a single self-contained file), and the tests check that the two agree. The
downloader of the published exports lives in ``golf_task.data_fetch``.

    python -m golf_task.data tiny --out DIR [--variant sp1024]     # offline, seconds
    python -m golf_task.data fineweb --out DIR [--variant sp8192]  # the real data (internet)
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import io
import json
import random
import sys
import sysconfig
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from golf_task.shards import (
    DataLayout,
    read_header,
    shard_paths,
    write_shard,
)
from golf_task.variants import (
    DEFAULT_VARIANT,
    TINY_VARIANT,
    VARIANTS,
    pieces,
)

# Bump when the tiny corpus recipe changes, so an old DIR is rebuilt instead of reused.
TINY_RECIPE_VERSION = 3


# --------------------------------------------------------------------------------------------
# The tiny offline dataset
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _docstrings(root: Path, min_chars: int) -> tuple[str, ...]:
    skip = {"test", "idlelib", "site-packages", "dist-packages", "lib2to3", "tkinter", "turtledemo"}
    docs: list[str] = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in skip or "tests" in parts:
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        for node in ast.walk(tree):
            if isinstance(node, kinds):
                doc = ast.get_docstring(node)
                if doc:
                    text = " ".join(doc.split())
                    if len(text) >= min_chars:
                        docs.append(text)
    return tuple(docs)


def collect_docstrings(stdlib_dir: Path | None = None, min_chars: int = 60) -> list[str]:
    """Docstrings of the standard library, whitespace-collapsed, in a stable order.

    Why docstrings: they are English prose about code, present on every machine with Python,
    need no network, and read more like web text than source code does. Tests, IDLE, tkinter
    and lib2to3 are skipped because they are mostly boilerplate. Collapsing whitespace keeps
    pieces free of inner spaces, so the competition's byte rule counts them exactly. Parsing
    the library takes seconds, the rest of a tiny build well under that, so the result is
    kept for the process (building several variants parses once).
    """
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"]).resolve()
    return list(_docstrings(root, min_chars))


def train_tokenizer(texts: Iterable[str], model_prefix: Path, vocab_size: int, seed: int) -> Path:
    """Train a byte-fallback BPE SentencePiece model like the official ``sp<N>`` ones.

    Byte fallback makes every string encodable (unknown characters become byte pieces, which
    the bpb rule counts as one byte each). Identity normalization keeps the text's bytes what
    the byte table says they are. One thread and a fixed seed make the model reproducible.
    SentencePiece refuses (RuntimeError) a corpus too small to learn ``vocab_size`` pieces.
    """
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    # Written through model_writer so the model bytes do not embed the output path (the file
    # is then identical wherever it is built); the .vocab listing is written here for the same
    # reason, in SentencePiece's own "piece<TAB>score" format.
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.9995,
        normalization_rule_name="identity",
        split_digits=True,
        max_sentence_length=1 << 16,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        pad_id=-1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    if sp.vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {sp.vocab_size()} pieces, asked for {vocab_size}")
    model_path = model_prefix.with_suffix(".model")
    model_path.write_bytes(buf.getvalue())
    vocab = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.vocab_size()))
    model_path.with_suffix(".vocab").write_text(vocab, encoding="utf-8")
    return model_path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_is_complete(layout: DataLayout, recipe: dict) -> bool:
    try:
        saved = json.loads(layout.tiny_stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if saved.get("recipe") != recipe:
        return False
    for rel, digest in saved.get("files", {}).items():
        path = layout.root / rel
        if not path.is_file() or path.stat().st_size != digest["size"]:
            return False
    return True


def make_tiny(
    out: Path,
    *,
    variant: str = TINY_VARIANT,
    seed: int = 1337,
    val_tokens: int = 24_576,
    shard_tokens: int = 1 << 20,
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> DataLayout:
    """Build one variant's tiny dataset under ``out``: a no-op when that build is complete.

    Documents are shuffled with ``seed``; the first ones form the validation split, the rest
    the training split, so no document is in both. The split is by characters (about
    ``val_tokens`` tokens of sp1024) and so holds the same documents for every variant: bpb
    compares across tokenizers only on the same text. The tokenizer is trained on the
    training documents only. Every document starts with BOS, as in the official shards, so
    the first piece's leading space is never counted as a byte. Only this variant's files and
    stamp are touched; other variants in ``out`` stay as they are.
    """
    out = Path(out)
    layout = DataLayout(out, variant)
    recipe = {
        "version": TINY_RECIPE_VERSION,
        "variant": variant,
        "seed": seed,
        "val_tokens": val_tokens,
        "shard_tokens": shard_tokens,
        "vocab_size": pieces(variant),
        "python": sys.version.split()[0],
    }
    if not force and _tiny_is_complete(layout, recipe):
        log(f"tiny {variant} data already complete in {out}")
        return layout
    layout.tiny_stamp.unlink(missing_ok=True)
    for old in shard_paths(layout.dataset_dir, "train") + shard_paths(layout.dataset_dir, "val"):
        old.unlink()
    if variant == TINY_VARIANT:
        (out / "tiny_manifest.json").unlink(missing_ok=True)  # the single stamp of recipe 2

    # Identical docstrings recur across modules; dedupe so no text is in both splits.
    docs = list(dict.fromkeys(collect_docstrings()))
    if not docs:
        raise RuntimeError("found no standard-library docstrings to build the tiny corpus from")
    random.Random(seed).shuffle(docs)
    log(f"collected {len(docs)} docstrings")

    import sentencepiece as spm

    # Split by characters (the tokenizer does not exist yet): a 1k BPE averages ~2.5 chars
    # per token on this text (4k: ~3.8, 8k: ~4.2); the result is reported in tokens below.
    val_chars, n_val = 0, 0
    while n_val < len(docs) - 1 and val_chars < 2.5 * val_tokens:
        val_chars += len(docs[n_val])
        n_val += 1
    val_docs, train_docs = docs[:n_val], docs[n_val:]
    model_path = train_tokenizer(
        train_docs, layout.tokenizer_model.with_suffix(""), vocab_size=pieces(variant), seed=seed
    )
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    bos = sp.bos_id()

    def encode(batch: list[str]) -> list[int]:
        flat: list[int] = []
        for ids in sp.encode(batch):
            flat.append(bos)
            flat.extend(ids)
        return flat

    val = encode(val_docs)
    train = np.asarray(encode(train_docs), dtype=np.uint16)
    write_shard(layout.dataset_dir / "fineweb_val_000000.bin", val)
    for i, start in enumerate(range(0, train.size, shard_tokens)):
        write_shard(
            layout.dataset_dir / f"fineweb_train_{i:06d}.bin", train[start : start + shard_tokens]
        )

    files = [model_path, layout.tokenizer_vocab]
    files += shard_paths(layout.dataset_dir, "train") + shard_paths(layout.dataset_dir, "val")
    manifest = {
        "recipe": recipe,
        "docs": {"train": len(train_docs), "val": len(val_docs)},
        "tokens": {"train": int(train.size), "val": len(val)},
        "files": {
            str(p.relative_to(out)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files
        },
    }
    layout.tiny_stamp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(f"wrote tiny {variant} data to {out}: {train.size} train tokens, {len(val)} val tokens")
    return layout


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m golf_task.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("tiny", help="build a tiny offline dataset")
    tiny.add_argument("--out", type=Path, required=True)
    tiny.add_argument("--variant", default=TINY_VARIANT, choices=sorted(VARIANTS))
    tiny.add_argument("--seed", type=int, default=1337)
    tiny.add_argument("--val-tokens", type=int, default=24_576)
    tiny.add_argument("--force", action="store_true", help="rebuild even if complete")
    fine = sub.add_parser("fineweb", help="download the real cached challenge data")
    fine.add_argument("--out", type=Path, required=True)
    fine.add_argument("--variant", default=DEFAULT_VARIANT, choices=sorted(VARIANTS))
    fine.add_argument("--train-shards", type=int, default=80)
    fine.add_argument("--repo-id", default=None, help="default: the variant's repo")
    fine.add_argument("--remote-root", default="datasets")
    fine.add_argument(
        "--data-url",
        default=None,
        help="source in place of huggingface.co/datasets ($GOLF_DATA_URL)",
    )
    fine.add_argument("--retries", type=int, default=3, help="per file, after a cut connection")
    fine.add_argument("--progress", type=Path, default=None, help="keep a JSON progress file")
    check = sub.add_parser("check", help="validate every shard under a data dir")
    check.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "tiny":
            make_tiny(
                args.out,
                variant=args.variant,
                seed=args.seed,
                val_tokens=args.val_tokens,
                force=args.force,
                log=print,
            )
        elif args.command == "fineweb":
            if args.train_shards < 0:
                raise ValueError("--train-shards must be >= 0")
            from golf_task.data_fetch import Progress, fetch_fineweb, http_fetch

            progress = Progress(args.progress)
            fetch_fineweb(
                args.out,
                variant=args.variant,
                train_shards=args.train_shards,
                repo_id=args.repo_id,
                remote_root=args.remote_root,
                base_url=args.data_url,
                progress=progress,
                fetch=functools.partial(http_fetch, progress=progress, retries=args.retries),
            )
        else:
            paths = sorted(Path(args.out).rglob("fineweb_*.bin"))
            if not paths:
                raise FileNotFoundError(f"no shards under {args.out}")
            for path in paths:
                print(f"{path}: {read_header(path)} tokens")
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
