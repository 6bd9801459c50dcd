"""The records folder: written whole in a hidden scratch folder, validated, then moved in.

A submission is only worth something if ``golf_task.validate`` passes on it, and a folder
half-written by a crashed promotion would look like one; so everything is written into
``records/<track>/.helm-tmp-*/<date>_<name>/`` (same filesystem, the final name: the
validator checks it), validated there, and moved into place with one ``rename`` — or
removed with its scratch parent, whatever happens.

The JSON's figures are copied from the logs (through ``golf_task.logs``, the parser the
validator uses), never from the store, so they agree with the logs by construction.

The code is shipped in the form whose bytes the logs counted (``code_to_ship``): the script
logs the size of its self-extracting packed form (``PACK_CODE=1``, ``golf_task.pack``) or of
itself. The packed form goes in as ``train_gpt.py`` with the readable source beside it as
``train_gpt_human.py`` (the records' name for it; the validator does not count a copy that
is exactly the packed source), the plain script as ``train_gpt.py`` alone. A log that
counted neither size describes an artifact helm cannot ship, and the promotion stops.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helm.promote.plan import PromoteError

if TYPE_CHECKING:
    from golf_task.logs import LogSummary
    from golf_task.validate import Check, Report

TRACKS = {"record": "track_10min_16mb", "non-record": "track_non_record_16mb"}
# The non-record track "allows longer training": the validator's time rule does not apply.
NOT_BLOCKING = {"record": frozenset(), "non-record": frozenset({"limits.train_time"})}
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.+\-]+")


def clean_name(text: str) -> str:
    """A folder-safe name (letters, digits, ``_.+-``), as the records use."""
    name = _NAME_BAD.sub("_", text.strip()).strip("_.-+")
    if not name:
        raise ValueError(f"name {text!r} has no usable characters")
    return name[:80]


def folder_path(root: Path, track: str, date: str, name: str) -> Path:
    return root / "records" / TRACKS[track] / f"{date}_{clean_name(name)}"


@dataclass
class SeedResult:
    """One seed's evidence: its run and its log, parsed the way the validator parses it."""

    seed: int
    run_id: int
    log: Path
    summary: LogSummary


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _r(value: float | None, digits: int = 8) -> float | None:
    return None if value is None else round(value, digits)


def log_name(seed: int) -> str:
    return f"train_seed{seed}.log"


def steps_of(summary: LogSummary) -> int | None:
    return summary.stop_step if summary.stop_step is not None else summary.step


@dataclass(frozen=True)
class ShippedCode:
    """What the folder's code files hold: the form the logs counted, and why."""

    script: bytes  # train_gpt.py
    readable: bytes | None  # train_gpt_human.py: the source, when train_gpt.py is packed
    form: str  # packed | raw
    counted: int | None  # the code bytes the logs counted (None: no log printed any)


def code_to_ship(script: bytes, summaries: list[LogSummary]) -> ShippedCode:
    """The run's script in the form whose bytes its logs counted; PromoteError otherwise.

    The packed form is made with the packer the script uses on itself (its own
    ``pack_source``, else the bundled one), which is what its ``Code size`` line measured.
    """
    counted = sorted({s.bytes_code for s in summaries if s.bytes_code is not None})
    if len(counted) > 1:
        raise PromoteError(
            f"the seeds' logs counted different code sizes {counted}: they did not run one "
            "artifact's code"
        )
    if not counted:  # no log says what it counted: the script as run (the validator judges)
        return ShippedCode(script, None, "raw", None)
    n = counted[0]
    if n == len(script):
        return ShippedCode(script, None, "raw", n)
    from golf_task.pack import PackError, pack, source_text

    why = ""
    try:
        packed = pack(source_text(script)).encode("utf-8")
    except (UnicodeDecodeError, PackError) as exc:
        packed, why = None, f" (no packed form: {exc})"
    if packed is not None and len(packed) == n:
        return ShippedCode(packed, script, "packed", n)
    form = f", its packed form {len(packed):,}" if packed is not None else why
    raise PromoteError(
        f"the log counted {n:,} code bytes, but the run's train_gpt.py is {len(script):,} "
        f"bytes{form}: the folder would ship code whose size the log did not count"
    )


def submission_json(
    results: list[SeedResult],
    *,
    meta: dict[str, Any],
    bytes_code: int,
) -> dict[str, Any]:
    """The fields records carry, per-seed results included, all figures from the logs."""
    bpbs = [r.summary.val_bpb for r in results if r.summary.val_bpb is not None]
    losses = [r.summary.val_loss for r in results if r.summary.val_loss is not None]
    totals = [r.summary.bytes_total for r in results if r.summary.bytes_total is not None]
    per_seed: dict[str, dict[str, Any]] = {}
    for r in results:
        s = r.summary
        per_seed[str(r.seed)] = {
            "val_bpb": s.val_bpb,
            "val_loss": s.val_loss,
            "artifact_bytes": s.bytes_total,
            "steps": steps_of(s),
            "step_avg_ms": s.step_avg_ms,
            "train_time_ms": s.train_time_ms,
            "eval_time_ms": s.eval_time_ms,
            "log": log_name(r.seed),
            "helm_run": r.run_id,
        }
    data: dict[str, Any] = {
        "author": meta["author"],
        "github_id": meta["github_id"],
        "name": meta["name"],
        "blurb": meta["blurb"],
        "date": meta["date"],
        "track": TRACKS[meta["track"]].removeprefix("track_"),
        "val_bpb": _r(_mean(bpbs)),
        "val_loss": _r(_mean(losses)) if len(losses) == len(results) else None,
        "val_bpb_std": _r(_std(bpbs)),
        "val_loss_std": _r(_std(losses)),
        "val_bpb_spread": _r(max(bpbs) - min(bpbs)) if bpbs else None,
        "val_loss_spread": _r(max(losses) - min(losses)) if losses else None,
        "seeds": [r.seed for r in results],
        "seed_results": per_seed,
        "bytes_total": max(totals) if totals else None,
        "bytes_code": bytes_code,
        "hardware": meta["hardware"],
        "pytorch_version": meta.get("pytorch_version"),
        "helm": meta.get("helm", {}),
    }
    return data


@contextmanager
def scratch(final: Path, *, beside: bool = True) -> Iterator[Path]:
    """A folder with ``final``'s name in a hidden scratch dir, removed on the way out.

    ``beside``: the scratch dir is a sibling of ``final`` (same filesystem, so the move is
    one rename); otherwise it is in the system's temp dir (a check that keeps nothing).
    """
    if beside:
        final.parent.mkdir(parents=True, exist_ok=True)
    where = final.parent if beside else None
    parent = Path(tempfile.mkdtemp(prefix=".helm-tmp-", dir=where))
    try:
        work = parent / final.name
        work.mkdir()
        yield work
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def write_files(
    dest: Path,
    *,
    code: ShippedCode,
    results: list[SeedResult],
    data: dict[str, Any],
    readme: str,
) -> None:
    from golf_task.pack import READABLE_NAME

    (dest / "train_gpt.py").write_bytes(code.script)
    if code.readable is not None:
        (dest / READABLE_NAME).write_bytes(code.readable)
    for r in results:
        shutil.copyfile(r.log, dest / log_name(r.seed))
    (dest / "submission.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (dest / "README.md").write_text(readme, encoding="utf-8")


def validate(dest: Path, *, track: str, sota: float | None) -> tuple[Report, list[Check]]:
    """The validator's report and the failures that block this track."""
    from golf_task.validate import validate_folder

    report = validate_folder(dest, sota=sota if track == "record" else None)
    blocking = [
        c for c in report.checks if c.status == "fail" and c.name not in NOT_BLOCKING[track]
    ]
    return report, blocking


def failure_text(blocking: list[Check]) -> str:
    return "; ".join(f"{c.name}: {c.message}" for c in blocking)


def move_into_place(work: Path, final: Path) -> Path:
    """One rename; refuses to replace a folder that appeared meanwhile."""
    if final.exists():
        raise FileExistsError(f"{final} exists")
    os.rename(work, final)
    return final
