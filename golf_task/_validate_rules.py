"""The rules behind ``golf_task.validate``: folder loading and every check but significance.

Kept apart from the CLI so each rule reads as one short function. Every check appends its
verdict through ``add(name, status, message, **details)`` and never raises on a malformed
folder: a broken submission is a report, not a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from golf_task.limits import (  # noqa: F401  (re-exported through golf_task.validate)
    ARTIFACT_CAP_BYTES,
    EVAL_CAP_MS,
    MIN_IMPROVEMENT_NATS,
    SIGNIFICANCE_ALPHA,
    TIME_GRACE_MS,
    TRAIN_CAP_MS,
)
from golf_task.logs import LogSummary, parse_file

Add = Callable[..., None]

_FOLDER_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_([A-Za-z0-9][\w.+\-]*)")
_SEED_NAME_RES = (
    re.compile(r"seed[_\-]?(\d+)", re.I),
    re.compile(r"(?:^|[_\-]|train)(\d+)\.(?:log|txt)$"),
)
_LOG_SUFFIXES = {".log", ".txt"}
_NOT_LOGS = re.compile(r"(?i)^(requirements.*|readme.*|license.*)$")
_REQUIRED = {
    "author": str,
    "github_id": str,
    "name": str,
    "date": str,
    "val_bpb": float,
}
# Missing ones only warn: accepted records lack each of them (03-23, 04-13, 04-27).
_EXPECTED = {"blurb": str, "val_loss": float, "bytes_total": int, "bytes_code": int}


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _decimals(x: float) -> int:
    """Decimals as written: JSON and logs print rounded numbers; repr gives them back."""
    text = repr(float(x))
    if "e" in text or "E" in text:
        mantissa, exp = text.lower().split("e")
        frac = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return max(0, frac - int(exp))
    return len(text.split(".")[1]) if "." in text else 0


def tolerance(claim: float, logged: list[float]) -> float:
    """'Within rounding': one unit in the last decimal either side printed."""
    digits = min([_decimals(claim)] + [_decimals(v) for v in logged])
    return 10.0**-digits + 1e-9


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_seed(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass
class LogEntry:
    rel: str
    summary: LogSummary
    digest: str
    seed: int | None
    name_seed: int | None
    duplicate_of: str | None = None
    claimed: bool = False

    @property
    def over_train_cap(self) -> bool:
        t = self.summary.train_time_ms
        return t is not None and t > TRAIN_CAP_MS + TIME_GRACE_MS

    @property
    def over_eval_cap(self) -> bool:
        t = self.summary.eval_time_ms
        return t is not None and t > EVAL_CAP_MS + TIME_GRACE_MS

    def figure(self) -> dict:
        s = self.summary
        return {
            "log": self.rel,
            "seed": self.seed,
            "val_bpb": s.val_bpb,
            "val_loss": s.val_loss,
            "score_line": s.score_line,
            "bytes_total": s.bytes_total,
            "bytes_code": s.bytes_code,
            "stop_step": s.stop_step,
            "train_time_ms": s.train_time_ms,
            "eval_time_ms": s.eval_time_ms,
            "duplicate_of": self.duplicate_of,
            "claimed": self.claimed,
        }


@dataclass
class Folder:
    path: Path
    json_files: list[str] = field(default_factory=list)
    json_name: str | None = None
    data: dict | None = None
    json_error: str | None = None
    logs: list[LogEntry] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    seed_results: dict[int, dict] = field(default_factory=dict)
    seed_problems: list[str] = field(default_factory=list)
    claim_kind: str = "none"  # "seeds", "all" or "single": what the JSON's score rests on

    @property
    def samples(self) -> list[LogEntry]:
        """Distinct logs with a score: one per seed run (byte-identical copies count once)."""
        return [lg for lg in self.logs if lg.duplicate_of is None and lg.summary.has_score]

    @property
    def claimed(self) -> list[LogEntry]:
        return [lg for lg in self.samples if lg.claimed]

    def json_number(self, key: str) -> float | None:
        value = (self.data or {}).get(key)
        return float(value) if is_number(value) and math.isfinite(value) else None


def load_folder(path: Path) -> Folder:
    folder = Folder(path=path)
    folder.json_files = sorted(p.name for p in path.glob("submission*.json") if p.is_file())
    if folder.json_files:
        name = "submission.json" if "submission.json" in folder.json_files else None
        folder.json_name = name or folder.json_files[0]
        try:
            data = json.loads((path / folder.json_name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            folder.json_error = str(exc)
        else:
            if isinstance(data, dict):
                folder.data = data
            else:
                folder.json_error = f"top level is a {type(data).__name__}, not an object"
    _load_logs(folder)
    _load_seed_results(folder)
    _claim(folder)
    return folder


def _load_logs(folder: Folder) -> None:
    seen: dict[str, str] = {}
    for p in sorted(folder.path.rglob("*")):
        rel = p.relative_to(folder.path).as_posix()
        if (
            not p.is_file()
            or p.suffix.lower() not in _LOG_SUFFIXES
            or _NOT_LOGS.match(p.name)
            or rel.count("/") > 2
            or any(part.startswith(".") for part in p.relative_to(folder.path).parts)
        ):
            continue
        try:
            raw = p.read_bytes()
        except OSError:
            folder.ignored.append(rel)
            continue
        summary = parse_file(p)
        s = summary
        if s.step is None and not s.has_score and s.bytes_total is None and not s.wallclock_stopped:
            folder.ignored.append(rel)
            continue
        digest = hashlib.sha256(raw).hexdigest()
        name_seed = None
        for rx in _SEED_NAME_RES:
            m = rx.search(p.name)
            if m is not None:
                name_seed = int(m.group(1))
                break
        seed = summary.seed if summary.seed is not None else name_seed
        entry = LogEntry(rel, summary, digest, seed, name_seed, duplicate_of=seen.get(digest))
        seen.setdefault(digest, rel)
        folder.logs.append(entry)


def _load_seed_results(folder: Folder) -> None:
    """Normalize the per-seed variants: {seed: {...}} or [{"seed": s, ...}]."""
    raw = (folder.data or {}).get("seed_results")
    if raw is None:
        return
    items: list[tuple[object, object]]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        folder.seed_problems.append("seed_results is a list of per-seed dicts, not a mapping")
        items = [(d.get("seed"), d) for d in raw if isinstance(d, dict)]
    else:
        folder.seed_problems.append(f"seed_results is a {type(raw).__name__}")
        return
    for key, value in items:
        seed = _as_seed(key)
        if seed is None or not isinstance(value, dict):
            folder.seed_problems.append(f"seed_results entry {key!r} is not seed -> object")
            continue
        folder.seed_results[seed] = value


def _claim(folder: Folder) -> None:
    samples = folder.samples
    if not samples:
        return
    claimed: list[LogEntry] = []
    if folder.seed_results:
        by_seed: dict[int, LogEntry] = {}
        for lg in samples:
            if lg.seed is not None:
                by_seed.setdefault(lg.seed, lg)
        claimed = [by_seed[s] for s in folder.seed_results if s in by_seed]
        folder.claim_kind = "seeds"
    if not claimed:
        folder.claim_kind = "all"
        claimed = samples
        jb = folder.json_number("val_bpb")
        if jb is not None and len(samples) > 1:
            m = mean([lg.summary.val_bpb for lg in samples])
            best = min(samples, key=lambda lg: abs(lg.summary.val_bpb - jb))
            if abs(best.summary.val_bpb - jb) < abs(m - jb):
                folder.claim_kind, claimed = "single", [best]
    names = {lg.rel for lg in claimed}
    for lg in folder.logs:
        lg.claimed = lg.rel in names or lg.duplicate_of in names


# ---------------------------------------------------------------------------- layout & JSON


def check_layout(folder: Folder, add: Add, *, logs_only: bool) -> None:
    name = folder.path.resolve().name
    m = _FOLDER_RE.fullmatch(name)
    valid_date = False
    if m is not None:
        try:
            date.fromisoformat(m.group(1))
            valid_date = True
        except ValueError:
            pass
    if valid_date:
        add("layout.folder_name", "pass", f"{name}")
    else:
        add("layout.folder_name", "fail", f"folder name {name!r} is not YYYY-MM-DD_<Name>")
    if not logs_only:
        readme = folder.path / "README.md"
        if not readme.is_file():
            add("layout.readme", "fail", "README.md is missing")
        elif not readme.read_bytes().strip():
            add("layout.readme", "warn", "README.md is empty")
        else:
            add("layout.readme", "pass", "README.md present")
    if not folder.json_files:
        add("layout.submission_json", "fail", "no submission*.json")
    elif len(folder.json_files) > 1:
        add(
            "layout.submission_json",
            "warn",
            f"several JSON files {folder.json_files}; using {folder.json_name}",
        )
    else:
        add("layout.submission_json", "pass", folder.json_name or "")
    if not logs_only:
        if (folder.path / "train_gpt.py").is_file():
            add("layout.train_gpt", "pass", "train_gpt.py present")
        else:
            add("layout.train_gpt", "fail", "train_gpt.py is missing")
    names = [lg.rel for lg in folder.logs]
    ignored = f"; ignored (not training logs): {folder.ignored}" if folder.ignored else ""
    if names:
        add("layout.logs", "pass", f"{len(names)} training log(s): {names}{ignored}", logs=names)
    else:
        add("layout.logs", "fail", f"no training log (*.log, *.txt){ignored}")


def check_json_fields(folder: Folder, add: Add) -> None:
    if folder.json_name is None:
        return
    if folder.data is None:
        add("json.parse", "fail", f"{folder.json_name} does not parse: {folder.json_error}")
        return
    add("json.parse", "pass", f"{folder.json_name} parses")
    data = folder.data
    fails: list[str] = []
    warns: list[str] = []
    for key, kind in {**_REQUIRED, **_EXPECTED}.items():
        problems = fails if key in _REQUIRED else warns
        if key not in data or data[key] is None:
            problems.append(f"{key} missing")
        elif kind is str and not (isinstance(data[key], str) and data[key].strip()):
            fails.append(f"{key} must be a non-empty string")
        elif kind is float and not (is_number(data[key]) and math.isfinite(data[key])):
            fails.append(f"{key} must be a number")
        elif kind is int and not (isinstance(data[key], int) and not isinstance(data[key], bool)):
            fails.append(f"{key} must be an integer")
    if isinstance(data.get("date"), str) and not _parses_as_date(data["date"]):
        fails.append(f"date {data['date']!r} is not an ISO date")
    bpb = folder.json_number("val_bpb")
    if bpb is not None and bpb <= 0:
        fails.append("val_bpb must be positive")
    alt = sorted(k for k in data if k.startswith(("bytes_model", "artifact_bytes")))
    if any("artifact_bytes" in e for e in folder.seed_results.values()):
        alt.append("seed_results.*.artifact_bytes")
    if alt and ("bytes_total" not in data or "bytes_code" not in data):
        warns.append(f"alternative byte keys {alt}")
    if fails:
        add("json.fields", "fail", "; ".join(fails + warns), fails=fails, warnings=warns)
    elif warns:
        add("json.fields", "warn", "; ".join(warns), warnings=warns)
    else:
        add("json.fields", "pass", "all record fields present with the right types")
    _check_seeds_fields(folder, add)


def _parses_as_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_seeds_fields(folder: Folder, add: Add) -> None:
    data = folder.data or {}
    several = len(folder.samples) > 1
    if "seeds" not in data and "seed_results" not in data:
        if several:
            add("json.seeds", "warn", f"{len(folder.samples)} logs but no seeds/seed_results")
        return
    problems = list(folder.seed_problems)
    seeds = data.get("seeds")
    seed_list: list[int] = []
    if seeds is not None:
        if not isinstance(seeds, list) or any(_as_seed(s) is None for s in seeds):
            add("json.seeds", "fail", f"seeds must be a list of integers, got {seeds!r}")
            return
        seed_list = [_as_seed(s) for s in seeds]  # type: ignore[misc]
    for seed, entry in folder.seed_results.items():
        if not is_number(entry.get("val_bpb")):
            problems.append(f"seed {seed}: val_bpb missing or not a number")
    if seed_list and folder.seed_results and set(seed_list) != set(folder.seed_results):
        problems.append(f"seeds {seed_list} != seed_results keys {sorted(folder.seed_results)}")
    if problems:
        add("json.seeds", "warn", "; ".join(problems), problems=problems)
    else:
        n = len(seed_list or folder.seed_results)
        add("json.seeds", "pass", f"{n} seeds with per-seed results")
