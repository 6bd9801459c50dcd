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
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from golf_task._validate_code import packed_source, shipped
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
# A folder's own logs lie at its top level or in logs/ (2026-04-13_VarLenAttn's layout); a
# log elsewhere (an ablation's, an old run's) is not evidence for this claim.
LOG_DIRS = ("", "logs")
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


def exact(value: object, text: str | None = None) -> Decimal | None:
    """A figure as printed: ``text`` when known (a log's own digits), else the number itself
    (a JSON number parsed as Decimal keeps its trailing zeros; a float gives its repr)."""
    if text is not None:
        return Decimal(text)
    if isinstance(value, Decimal):
        return value
    if is_number(value) and math.isfinite(value):  # type: ignore[arg-type]
        return Decimal(repr(value))
    return None


def places(value: Decimal) -> int:
    """How many decimals a printed number shows (``1.2240`` shows 4, ``12`` none)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


@dataclass(frozen=True)
class Rounding:
    """Whether a claim is the logged figure(s) rounded to the decimals the claim prints."""

    ok: bool
    decimals: int
    logged: Decimal  # the mean of the logged figures
    rounded: Decimal  # what the claim should have been

    @property
    def half_unit(self) -> float:
        return float(Decimal(5).scaleb(-self.decimals - 1))


def rounds_to(claim: Decimal, logged: list[Decimal]) -> Rounding:
    """A claim must equal the logged score rounded to the decimals it prints: within half a
    unit of its last decimal (a tie either way). A log printing fewer decimals than the
    claim is compared at its own. The mean of several logs may also be taken the way records
    do, as the mean of the per-seed figures each rounded to the claim's decimals."""
    d = min([places(claim)] + [places(v) for v in logged])
    unit = Decimal(1).scaleb(-d)
    half = unit / 2
    mean_logged = sum(logged, Decimal(0)) / len(logged)
    rounded = mean_logged.quantize(unit, ROUND_HALF_EVEN)
    ok = abs(claim - mean_logged) <= half
    if not ok and len(logged) > 1:
        per_seed = sum((v.quantize(unit, ROUND_HALF_EVEN) for v in logged), Decimal(0))
        ok = abs(claim - per_seed / len(logged)) <= half
    return Rounding(ok, d, mean_logged, rounded)


def logged_exact(summary: LogSummary, key: str) -> Decimal | None:
    """A log's val_bpb / val_loss with the digits it printed."""
    return exact(getattr(summary, key), getattr(summary, f"{key}_text"))


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
    exact: dict | None = None  # the same JSON with its non-integers as printed (Decimal)
    json_error: str | None = None
    logs: list[LogEntry] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # in the log layout, but not logs
    outside: list[str] = field(default_factory=list)  # *.log/*.txt outside the log layout
    seed_results: dict[int, dict] = field(default_factory=dict)
    seed_exact: dict[int, dict] = field(default_factory=dict)
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

    def json_exact(self, key: str) -> Decimal | None:
        """The JSON's figure with the decimals it printed, None unless it is a number."""
        if self.json_number(key) is None:
            return None
        printed = exact((self.exact or {}).get(key))
        return printed if printed is not None else exact((self.data or {}).get(key))


def load_folder(path: Path) -> Folder:
    folder = Folder(path=path)
    folder.json_files = sorted(p.name for p in path.glob("submission*.json") if p.is_file())
    if folder.json_files:
        name = "submission.json" if "submission.json" in folder.json_files else None
        folder.json_name = name or folder.json_files[0]
        try:
            text = (path / folder.json_name).read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            folder.json_error = str(exc)
        else:
            if isinstance(data, dict):
                folder.data = data
                folder.exact = json.loads(text, parse_float=Decimal)
            else:
                folder.json_error = f"top level is a {type(data).__name__}, not an object"
    _load_logs(folder)
    _load_seed_results(folder)
    _claim(folder)
    return folder


def _load_logs(folder: Folder) -> None:
    """The folder's own training logs: *.log / *.txt at its top level or in logs/ that show
    a run (a header, an echoed script or training steps). A text file quoting a score line
    is not a log; a log in another subfolder is not this folder's evidence."""
    seen: dict[str, str] = {}
    for p in shipped(folder.path, _LOG_SUFFIXES):
        rel = p.relative_to(folder.path).as_posix()
        if _NOT_LOGS.match(p.name):
            continue
        parent = p.parent.relative_to(folder.path).as_posix()
        if (parent if parent != "." else "") not in LOG_DIRS:
            folder.outside.append(rel)
            continue
        try:
            raw = p.read_bytes()
        except OSError:
            folder.ignored.append(rel)
            continue
        summary = parse_file(p)
        if not summary.has_run:
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
    folder.seed_results = _seed_map(raw, folder.seed_problems)
    folder.seed_exact = _seed_map((folder.exact or {}).get("seed_results"), [])


def _seed_map(raw: object, problems: list[str]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    items: list[tuple[object, object]]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        problems.append("seed_results is a list of per-seed dicts, not a mapping")
        items = [(d.get("seed"), d) for d in raw if isinstance(d, dict)]
    else:
        problems.append(f"seed_results is a {type(raw).__name__}")
        return out
    for key, value in items:
        seed = _as_seed(key)
        if seed is None or not isinstance(value, dict):
            problems.append(f"seed_results entry {key!r} is not seed -> object")
            continue
        out[seed] = value
    return out


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
            packed = packed_source(folder.path)
            form = f" (packed: a {len(packed.encode()):,}-byte source)" if packed else ""
            add("layout.train_gpt", "pass", f"train_gpt.py present{form}")
        else:
            add("layout.train_gpt", "fail", "train_gpt.py is missing")
    names = [lg.rel for lg in folder.logs]
    ignored = f"; ignored (not training logs): {folder.ignored}" if folder.ignored else ""
    if folder.outside:
        ignored += f"; ignored (not the folder's own logs: top level or logs/): {folder.outside}"
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
