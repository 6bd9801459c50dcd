"""Rules checker for one records folder: nothing leaves helm as a submission without its pass.

    python -m golf_task.validate DIR [--json] [--sota BPB|none] [--logs-only]

Exit status: 0 when no check fails, 1 when one does, 2 for usage errors (bad arguments, DIR
missing). ``--logs-only`` skips README.md, train_gpt.py and everything that needs the code,
for folders that carry only logs and JSON (such as the shared fixtures).

``--json`` prints the report as one object::

    {"folder": str, "ok": bool, "counts": {"pass": n, "warn": n, "fail": n},
     "checks": [{"name": str, "status": "pass"|"warn"|"fail", "message": str,
                 "details": {...}}, ...],
     "figures": {"n_logs", "n_samples", "seeds", "per_log": [...], "mean_val_bpb",
                 "mean_val_loss", "std_val_bpb", "spread_val_bpb", "json_val_bpb",
                 "max_bytes_total", "sota", "bpb_per_nat", "threshold_bpb",
                 "improvement_nats", "improvement_bpb", "t_stat", "p_value", "significant"}}

Code bytes are the bytes of the source files the folder ships (``train_gpt.py`` and any other
``.py``/``.cu``/``.so``/...), measured, never taken from a claim. A ``train_gpt.py`` in the
packed form (``golf_task.pack``: the self-extracting lzma + base85 wrapper that records ship and
that the script's log counts with ``PACK_CODE=1``) counts its own bytes; ``code.compiles``
compiles both the wrapper and the source inside it. A ``train_gpt_human.py`` beside it whose
text is exactly that source is the reviewers' readable copy of code already counted, so it is
not counted again; any other file, a readable copy that differs included, counts.

A figure that could not be computed is null. Check names are stable (``layout.*``, ``json.*``,
``logs.*``, ``consistency.*``, ``limits.*``, ``code.compiles``, ``significance``).

Which logs a claim rests on: the JSON's per-seed results when it has them (matched to logs
by the seed each log printed, else by its file name); otherwise whichever explains the JSON's
``val_bpb`` better, the mean over all logs or one single log. A limit broken by a log the
claim rests on fails; broken by another log in the folder, it warns.

Significance, given ``--sota`` (a val_bpb; default the best public score): the rule is
"beat SOTA by at least 0.005 nats at p < 0.01". Logs report both val_loss (nats per token)
and val_bpb = val_loss / ln 2 x tokens/bytes, so the folder's own ratio
r = val_bpb / val_loss (bpb per nat, averaged over its logs) converts: the bpb threshold is
SOTA - 0.005 r, and the improvement in nats is (SOTA - mean val_bpb) / r. The test is a
one-sided one-sample t-test (scipy.stats.ttest_1samp, alternative="less") of the per-seed
val_bpb against that threshold, over the distinct logs that kept to the time limit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from golf_task._validate_checks import check_consistency, check_limits, check_logs
from golf_task._validate_rules import (
    ARTIFACT_CAP_BYTES,
    EVAL_CAP_MS,
    MIN_IMPROVEMENT_NATS,
    SIGNIFICANCE_ALPHA,
    TIME_GRACE_MS,
    TRAIN_CAP_MS,
    Folder,
    check_json_fields,
    check_layout,
    load_folder,
    mean,
)

__all__ = [
    "ARTIFACT_CAP_BYTES",
    "DEFAULT_SOTA",
    "EVAL_CAP_MS",
    "MIN_IMPROVEMENT_NATS",
    "SIGNIFICANCE_ALPHA",
    "TIME_GRACE_MS",
    "TRAIN_CAP_MS",
    "Check",
    "Report",
    "main",
    "validate_folder",
]

# Best public 3-seed mean in the records as of May 2026 (see BRIEF.md).
DEFAULT_SOTA = 1.06107587

Status = Literal["pass", "fail", "warn"]


@dataclass
class Check:
    """One rule's verdict; ``details`` carries the numbers behind the message."""

    name: str
    status: Status
    message: str
    details: dict = field(default_factory=dict)


@dataclass
class Report:
    folder: str
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings do not block)."""
        return not any(c.status == "fail" for c in self.checks)

    def by_name(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_json(self) -> dict:
        counts = {s: sum(c.status == s for c in self.checks) for s in ("pass", "warn", "fail")}
        return {
            "folder": self.folder,
            "ok": self.ok,
            "counts": counts,
            "checks": [asdict(c) for c in self.checks],
            "figures": self.figures,
        }


def validate_folder(
    path: str | Path, *, sota: float | None = DEFAULT_SOTA, logs_only: bool = False
) -> Report:
    """Check a records folder; ``sota=None`` skips the significance test.

    Raises NotADirectoryError when ``path`` is not a folder; everything inside the folder,
    however malformed, becomes a check instead of an exception.
    """
    folder_path = Path(path)
    if not folder_path.is_dir():
        raise NotADirectoryError(f"not a folder: {path}")
    report = Report(folder=str(folder_path))
    add = _adder(report)
    folder: Folder = load_folder(folder_path)
    check_layout(folder, add, logs_only=logs_only)
    check_json_fields(folder, add)
    check_logs(folder, add)
    check_consistency(folder, add, logs_only=logs_only)
    check_limits(folder, add, logs_only=logs_only)
    report.figures = _figures(folder)
    if sota is not None:
        _significance(folder, sota, add, report.figures)
    return report


def _adder(report: Report):  # noqa: ANN202 - a small closure
    def add(name: str, status: Status, message: str, **details: object) -> None:
        report.checks.append(Check(name, status, message, dict(details)))

    return add


def _figures(folder: Folder) -> dict:
    samples = folder.samples
    bpbs = [s.summary.val_bpb for s in samples]
    losses = [s.summary.val_loss for s in samples if s.summary.val_loss is not None]
    totals = [lg.summary.bytes_total for lg in folder.logs if lg.summary.bytes_total is not None]
    figures: dict = {
        "n_logs": len(folder.logs),
        "n_samples": len(samples),
        "seeds": [s.seed for s in samples],
        "per_log": [lg.figure() for lg in folder.logs],
        "mean_val_bpb": mean(bpbs),
        "mean_val_loss": mean(losses) if len(losses) == len(samples) else None,
        "std_val_bpb": _std(bpbs),
        "spread_val_bpb": (max(bpbs) - min(bpbs)) if bpbs else None,
        "json_val_bpb": folder.json_number("val_bpb"),
        "max_bytes_total": max(totals) if totals else None,
    }
    for key in ("sota", "bpb_per_nat", "threshold_bpb", "improvement_nats", "improvement_bpb"):
        figures[key] = None
    figures.update(t_stat=None, p_value=None, significant=None)
    return figures


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _significance(folder: Folder, sota: float, add, figures: dict) -> None:  # noqa: ANN001
    """One-sided t-test of 'mean val_bpb below SOTA - 0.005 nats' over the eligible seeds."""
    eligible = [s for s in folder.samples if not s.over_train_cap]
    bpbs = [s.summary.val_bpb for s in eligible]
    ratios = [
        s.summary.val_bpb / s.summary.val_loss for s in eligible if s.summary.val_loss
    ]  # bpb per nat: tokens/bytes / ln 2, the same for every seed of one tokenizer
    if not ratios:
        jb, jl = folder.json_number("val_bpb"), folder.json_number("val_loss")
        if jb and jl:
            ratios = [jb / jl]
    figures["sota"] = sota
    if not bpbs:
        add("significance", "fail", "no log within the time limit has a score to test")
        return
    if not ratios:
        add("significance", "fail", "no val_loss anywhere: cannot convert 0.005 nats to bpb")
        return
    r = sum(ratios) / len(ratios)
    m = sum(bpbs) / len(bpbs)
    threshold = sota - MIN_IMPROVEMENT_NATS * r
    figures.update(
        bpb_per_nat=r,
        threshold_bpb=threshold,
        improvement_bpb=sota - m,
        improvement_nats=(sota - m) / r,
    )
    gain = f"mean {m:.8f} vs SOTA {sota:.8f}: {(sota - m) / r:+.5f} nats (need >= +0.005)"
    if len(bpbs) < 2:
        add(
            "significance",
            "fail",
            f"{gain}; one seed cannot show p < {SIGNIFICANCE_ALPHA} (3 seeds are customary)",
            n=len(bpbs),
        )
        return
    std = _std(bpbs) or 0.0
    if std == 0.0:  # t is undefined; the outcome is certain either way
        t_stat = -math.inf if m < threshold else math.inf
        p = 0.0 if m < threshold else 1.0
    else:
        from scipy import stats  # heavy; only this check needs it

        res = stats.ttest_1samp(bpbs, threshold, alternative="less")
        t_stat, p = float(res.statistic), float(res.pvalue)
    significant = p < SIGNIFICANCE_ALPHA
    figures.update(t_stat=t_stat if math.isfinite(t_stat) else None, p_value=p)
    figures["significant"] = significant
    add(
        "significance",
        "pass" if significant else "fail",
        f"{gain}; one-sided t-test vs {threshold:.8f} bpb over {len(bpbs)} seeds "
        f"(std {std:.6f}): p={p:.3g} {'<' if significant else '>='} {SIGNIFICANCE_ALPHA}",
        n=len(bpbs),
        p_value=p,
        threshold_bpb=threshold,
    )


# ---------------------------------------------------------------------------- command line


def _format(report: Report) -> str:
    marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
    width = max((len(c.name) for c in report.checks), default=10)
    lines = [f"validate {report.folder}"]
    lines += [f"  {marks[c.status]}  {c.name:<{width}}  {c.message}" for c in report.checks]
    f = report.figures
    if f.get("mean_val_bpb") is not None:
        std = f.get("std_val_bpb")
        lines.append(
            f"  mean val_bpb {f['mean_val_bpb']:.8f} over {f['n_samples']} log(s)"
            + (f", std {std:.6f}" if std is not None else "")
            + (f", p={f['p_value']:.3g}" if f.get("p_value") is not None else "")
        )
    counts = report.to_json()["counts"]
    verdict = "PASS" if report.ok else "FAIL"
    lines.append(f"verdict: {verdict} ({counts['fail']} failed, {counts['warn']} warnings)")
    return "\n".join(lines)


def _sota_arg(text: str) -> float | None:
    if text.lower() in ("none", "off", ""):
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a val_bpb: {text!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"not a val_bpb: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m golf_task.validate",
        description="Check a Parameter Golf records folder against the submission rules.",
    )
    ap.add_argument("folder", metavar="DIR")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument(
        "--sota",
        type=_sota_arg,
        default=DEFAULT_SOTA,
        metavar="BPB",
        help=f"score to beat by 0.005 nats (default {DEFAULT_SOTA}); 'none' skips the test",
    )
    ap.add_argument("--logs-only", action="store_true", help="the folder holds only logs and JSON")
    args = ap.parse_args(argv)
    try:
        report = validate_folder(args.folder, sota=args.sota, logs_only=args.logs_only)
    except NotADirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(_format(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
