"""Static checks of a records folder: what can be learned without running anything.

Each check is a ``Finding`` with pass / warn / fail and a reason. A fail is evidence the
claim cannot stand as submitted (the verdict turns it into ``invalid``, or ``copy`` for
``code.similarity``); a warn is worth the operator's eye but proves nothing.

- ``validate``: ``golf_task.validate`` on the folder (significance left out: an audit asks
  "is it real?", not "is it a record today?");
- ``claim.logs``: the claimed score against the scores its own logs print;
- ``code.similarity``: the code against every known script (``similarity``);
- ``code.log_echo``: the source a log echoes at its top against the submitted code;
- ``logs.hyperparameters``: the settings the logs print against what the code would use;
- ``logs.steps``: step counts and timing that must add up;
- ``data.hazards``: the data the logs say they trained and evaluated on.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from golf_task import log_echo
from golf_task.log_lines import DATASET_RE, TRAIN_SHARDS_RE, VAL_TOKENS_RE
from golf_task.logs import LogSummary, parse_file
from golf_task.validate import Report
from helm.audit import config as cfgmod
from helm.audit import similarity as sim

Status = Literal["pass", "warn", "fail"]

# Model-shape settings: a log that disagrees with the code on two of these came from a
# different model than the one submitted.
SHAPE_KEYS = (
    "vocab_size",
    "num_layers",
    "model_dim",
    "num_heads",
    "num_kv_heads",
    "mlp_mult",
    "train_seq_len",
)
SCHEDULE_KEYS = (
    "iterations",
    "train_batch_tokens",
    "max_wallclock_seconds",
    "warmdown_iters",
    "warmup_steps",
)
SHAPE_FAIL_AT = 2
STEP_TIME_TOLERANCE = 0.05  # stop_step x step_avg vs train_time
ECHO_SAME_PROGRAM = 0.90  # below this the log echoes a different program

# The published data exports as the public records' logs show them: dataset -> the val
# split's token counts (sp1024's first val export, used by the naive baseline, was larger)
# and the most training shards any public record used. Anything else is custom data prep,
# the place where validation documents have leaked into training before.
PUBLISHED_DATA: dict[str, tuple[frozenset[int], int]] = {
    "fineweb10B_sp1024": (frozenset({62_021_632, 63_779_840}), 80),
    "fineweb10B_sp8192": (frozenset({40_540_160, 47_851_520}), 128),
}


@dataclass
class Finding:
    name: str
    status: Status
    message: str
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Log:
    """One log the claim rests on, parsed."""

    rel: str
    path: Path
    summary: LogSummary


def scored_logs(folder: Path, report: Report) -> tuple[list[Log], list[Log]]:
    """(the distinct scored logs the JSON's claim rests on, every distinct scored log).

    The claim is checked against the first; code, steps and data against all of them, since
    a folder's other logs were made by the same submission too.
    """
    per_log = report.figures.get("per_log") or []
    usable = [f for f in per_log if f.get("val_bpb") is not None and not f.get("duplicate_of")]
    every = [Log(f["log"], folder / f["log"], parse_file(folder / f["log"])) for f in usable]
    names = {f["log"] for f in usable if f.get("claimed")}
    return [lg for lg in every if lg.rel in names] or every, every


# ---------------------------------------------------------------------------- validator & claim


def check_validate(report: Report) -> Finding:
    fails = [c for c in report.checks if c.status == "fail"]
    warns = [c for c in report.checks if c.status == "warn"]
    details = {"failed": [c.name for c in fails], "warned": [c.name for c in warns]}
    if fails:
        text = "; ".join(f"{c.name}: {c.message}" for c in fails[:4])
        return Finding(
            "validate", "fail", f"the validator fails {len(fails)} rule(s): {text}", details
        )
    if warns:
        names = ", ".join(c.name for c in warns)
        return Finding("validate", "warn", f"passes with {len(warns)} warning(s): {names}", details)
    return Finding("validate", "pass", f"passes all {len(report.checks)} rules", details)


def check_claim(report: Report, logs: list[Log]) -> Finding:
    fig = report.figures
    claim = fig.get("json_val_bpb")
    scores = {lg.rel: lg.summary.val_bpb for lg in logs}
    details = {"claimed_bpb": claim, "logged": scores, "mean_logged": fig.get("mean_val_bpb")}
    if claim is None:
        return Finding("claim.logs", "fail", "the JSON claims no val_bpb", details)
    if not logs:
        return Finding("claim.logs", "fail", f"claims {claim} but no log prints a score", details)
    worst: Status = "pass"
    notes: list[str] = []
    for name in ("consistency.score", "consistency.seed_results"):
        c = report.by_name(name)
        if c is not None and c.status != "pass":
            notes.append(c.message)
            worst = "fail" if "fail" in (worst, c.status) else "warn"
    all_scores = [
        f["val_bpb"]
        for f in fig.get("per_log") or []
        if f.get("val_bpb") is not None and not f.get("duplicate_of")
    ]
    best_single = len(logs) == 1 and len(all_scores) > 1
    if worst != "fail" and best_single and logs[0].summary.val_bpb == min(all_scores):
        notes.append(f"the claim is the best of {len(all_scores)} logged scores, not their mean")
        worst = "fail" if worst == "fail" else "warn"
    listed = ", ".join(f"{v:.8f}" for v in scores.values())
    head = f"claims {claim}; the logs it rests on print {listed}"
    message = head + (f" ({'; '.join(notes)})" if notes else "")
    return Finding("claim.logs", worst, message, details)


# ---------------------------------------------------------------------------- code


def check_similarity(
    code: bytes, known: list[sim.KnownScript], claimed_bpb: float | None, stated: dict[str, str]
) -> tuple[Finding, list[sim.Match]]:
    matches = sim.rank(code, known)
    details: dict = {"matches": [m.to_json() for m in matches[:8]]}
    if not matches:
        return Finding("code.similarity", "pass", "no known script to compare with", details), []
    top = matches[0]
    details["best"] = top.to_json()
    how = "byte-identical to" if top.identical_bytes else "the same program as"
    if top.identical:
        same_claim = (
            top.claimed_bpb is not None
            and claimed_bpb is not None
            and abs(top.claimed_bpb - claimed_bpb) <= 1e-4
        )
        if same_claim:
            msg = f"{how} {top.label}, with the same claim {claimed_bpb}: a resubmission"
            return Finding("code.similarity", "warn", msg, details), matches
        if stated:
            msg = (
                f"{how} {top.label} but run with its own settings {sorted(stated)}: "
                "only a reproduction can tell whether they earn the claim"
            )
            return Finding("code.similarity", "warn", msg, details), matches
        claim = f"claims {claimed_bpb}" if claimed_bpb is not None else "claims a result"
        theirs = f" (its claim: {top.claimed_bpb})" if top.claimed_bpb is not None else ""
        msg = f"{how} {top.label}{theirs}, yet {claim}: a copy"
        details["copy_of"] = top.label
        return Finding("code.similarity", "fail", msg, details), matches
    if top.similarity >= sim.DERIVED:
        msg = (
            f"derived from {top.label}: similarity {top.similarity:.4f}, "
            f"{top.changed_lines} changed line(s) carry the claim"
        )
        return Finding("code.similarity", "warn", msg, details), matches
    msg = f"original: closest known script is {top.label} at similarity {top.similarity:.4f}"
    return Finding("code.similarity", "pass", msg, details), matches


def echoed_source(path: Path) -> str | None:
    """The source code a log echoes before its training output, if it echoes one.

    Recognised by golf_task's echo scanner (the parser's own): by the structure of Python
    source, so a docstring that holds a row of ``=`` does not end the echo early.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4 * 1024 * 1024)
    except OSError:
        return None
    return log_echo.echoed_source(head)


def check_log_echo(code: bytes, logs: list[Log]) -> Finding | None:
    """Logs that print their own source show which program made them."""
    mine = sim.normalized_lines(code)
    rows = []
    for lg in logs:
        echo = echoed_source(lg.path)
        if echo is None:
            continue
        m = sim.compare(echo.encode(), sim.KnownScript("submitted", "pr", code), mine)
        rows.append(
            {"log": lg.rel, "similarity": round(m.similarity, 6), "changed": m.changed_lines}
        )
    if not rows:
        return None
    details = {"echoes": rows}
    worst = min(rows, key=lambda r: r["similarity"])
    if worst["similarity"] < ECHO_SAME_PROGRAM:
        msg = (
            f"{worst['log']} was made by a different program (similarity "
            f"{worst['similarity']:.3f} to the submitted code)"
        )
        return Finding("code.log_echo", "fail", msg, details)
    if worst["similarity"] < 1.0:
        msg = f"{worst['log']} ran a slightly different version ({worst['changed']} line(s) differ)"
        return Finding("code.log_echo", "warn", msg, details)
    return Finding("code.log_echo", "pass", f"{len(rows)} log(s) echo exactly this code", details)


def check_hyperparameters(code: bytes, stated: dict[str, str], logs: list[Log]) -> Finding:
    codecfg = cfgmod.code_config(code)
    want = cfgmod.effective(codecfg, stated)
    compared: set[str] = set()
    mismatches: list[dict] = []
    for lg in logs:
        hp = dict(lg.summary.hyperparameters)
        if lg.summary.total_steps is not None:
            hp.setdefault("iterations", str(lg.summary.total_steps))
        for key in SHAPE_KEYS + SCHEDULE_KEYS:
            if key not in hp or key not in want:
                continue
            compared.add(key)
            if not cfgmod.same_value(hp[key], want[key]):
                mismatches.append({"log": lg.rel, "key": key, "logged": hp[key], "code": want[key]})
    details = {"compared": sorted(compared), "mismatches": mismatches, "stated": stated}
    if not codecfg.parsed:
        return Finding("logs.hyperparameters", "warn", "the code does not parse", details)
    if not compared:
        msg = "the logs print none of the settings the code defines (nothing to compare)"
        return Finding("logs.hyperparameters", "warn", msg, details)
    if not mismatches:
        msg = f"{len(compared)} settings agree with the code and its stated configuration"
        return Finding("logs.hyperparameters", "pass", msg, details)
    keys = sorted({m["key"] for m in mismatches})
    shape = [k for k in keys if k in SHAPE_KEYS]
    first = mismatches[0]
    text = (
        f"{', '.join(keys)} differ (e.g. {first['log']}: {first['key']}={first['logged']}, "
        f"code says {first['code']})"
    )
    if len(shape) >= SHAPE_FAIL_AT:
        msg = f"the logs come from a different model than the code builds: {text}"
        return Finding("logs.hyperparameters", "fail", msg, details)
    msg = f"{text}: set by an unstated environment?"
    return Finding("logs.hyperparameters", "warn", msg, details)


# ---------------------------------------------------------------------------- logs & data


def check_steps(logs: list[Log]) -> Finding:
    problems: list[str] = []
    fail = False
    checked = 0
    for lg in logs:
        s = lg.summary
        stop = s.stop_step if s.stop_step is not None else s.step
        if stop is not None and s.total_steps is not None and stop > s.total_steps:
            problems.append(f"{lg.rel}: stopped at step {stop} of {s.total_steps}")
            fail = True
        if stop and s.step_avg_ms and s.train_time_ms:
            checked += 1
            implied = stop * s.step_avg_ms
            if abs(implied - s.train_time_ms) > STEP_TIME_TOLERANCE * s.train_time_ms:
                problems.append(
                    f"{lg.rel}: {stop} steps x {s.step_avg_ms:.2f} ms = {implied / 1000:.1f}s "
                    f"but train_time says {s.train_time_ms / 1000:.1f}s"
                )
    details = {"problems": problems, "checked": checked}
    if problems:
        return Finding("logs.steps", "fail" if fail else "warn", "; ".join(problems), details)
    if not checked:
        return Finding("logs.steps", "warn", "the logs print no step timing to check", details)
    return Finding(
        "logs.steps", "pass", f"step counts and timing add up in {checked} log(s)", details
    )


def _last(rx: re.Pattern[str], text: str) -> str | None:
    found = None
    for m in rx.finditer(text):
        found = next((g for g in m.groups() if g), None)
    return found


def _data_of(path: Path) -> tuple[str | None, int | None, int | None]:
    """(dataset, training shards, validation tokens) from the log's own lines, last run wins.

    Read from the raw text rather than the parser's header: logs that hold several runs
    print the loader lines before each run's header, where the parser has already reset.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None, None
    dataset = _last(DATASET_RE, text)
    if dataset is not None:
        dataset = dataset.rstrip("/").rsplit("/", 1)[-1]
    shards, val = _last(TRAIN_SHARDS_RE, text), _last(VAL_TOKENS_RE, text)
    return dataset, int(shards) if shards else None, int(val) if val else None


def check_data(logs: list[Log]) -> Finding:
    rows = []
    for lg in logs:
        dataset, shards, val = _data_of(lg.path)
        rows.append({"log": lg.rel, "dataset": dataset, "train_shards": shards, "val_tokens": val})
    details = {"logs": rows}
    fails: list[str] = []
    warns: list[str] = []
    vals = {r["val_tokens"] for r in rows if r["val_tokens"] is not None}
    if len(vals) > 1:
        fails.append(f"the logs evaluated on different validation sets ({sorted(vals)} tokens)")
    shard_counts = {r["train_shards"] for r in rows if r["train_shards"] is not None}
    if len(shard_counts) > 1:
        warns.append(f"the logs trained on different shard counts {sorted(shard_counts)}")
    for dataset in sorted({r["dataset"] for r in rows if r["dataset"]}):
        mine = [r for r in rows if r["dataset"] == dataset]
        known = PUBLISHED_DATA.get(dataset)
        if known is None:
            warns.append(f"custom dataset {dataset}: check it keeps validation documents out")
            continue
        val_sizes, max_shards = known
        odd_val = sorted(
            {r["val_tokens"] for r in mine if r["val_tokens"] not in (None, *val_sizes)}
        )
        if odd_val:
            warns.append(
                f"{dataset} evaluated on {odd_val} tokens, not the published split "
                f"({', '.join(f'{v:,}' for v in sorted(val_sizes))}): a subset or re-export"
            )
        many = sorted({r["train_shards"] for r in mine if (r["train_shards"] or 0) > max_shards})
        if many:
            warns.append(
                f"{dataset} with {many} training shards, more than any public record used "
                f"({max_shards}): a custom export? check it holds no validation documents"
            )
    if not any(r["dataset"] or r["train_shards"] or r["val_tokens"] for r in rows):
        warns.append("the logs do not say what data they trained or evaluated on")
    if fails or warns:
        return Finding(
            "data.hazards", "fail" if fails else "warn", "; ".join(fails + warns), details
        )
    return Finding("data.hazards", "pass", "published data, one validation set", details)
