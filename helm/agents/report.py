"""What an experiment's result says, in the feed, on the terminal and as JSON.

The same numbers everywhere: val_bpb; its difference from the branch's best before the run,
from the reference run of the current base, and from the leaderboard's best (negative is
better); the artifact's bytes and the headroom left under the cap
(``golf_task.limits.ARTIFACT_CAP_BYTES``); the verdict and why.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from golf_task.limits import ARTIFACT_CAP_BYTES
from helm import fmt
from helm.models.db import Db, Row
from helm.models.runs import best_run, branch_best, reference_run


@dataclass
class ExpResult:
    run_id: int | None
    verdict: str  # keep | discard | crash | cancelled | duplicate | queued
    note: str = ""
    job_id: int | None = None
    agent: str | None = None
    description: str = ""
    commit: str | None = None
    val_bpb: float | None = None
    val_loss: float | None = None
    best_before: float | None = None
    base_bpb: float | None = None
    leader_bpb: float | None = None
    delta_best: float | None = None
    delta_base: float | None = None
    delta_leader: float | None = None
    bytes_total: int | None = None
    headroom: int | None = None
    steps: int | None = None
    host: str | None = None
    duplicate_of: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    tail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b


def build_result(db: Db, run: Row, *, verdict: str, best: Row | None = None) -> ExpResult:
    """Assemble the comparison numbers for ``run`` (``best``: the branch best before it)."""
    if best is None and run.get("agent"):
        best = branch_best(db, run["agent"], run.get("base_pin_id"))
        if best is not None and best["id"] == run.get("id"):
            best = None
    ref = reference_run(db, run["agent"], run.get("base_pin_id")) if run.get("agent") else None
    top = best_run(db, exclude_run=run.get("id"))
    bpb = run.get("val_bpb")
    size = run.get("bytes_total")
    return ExpResult(
        run_id=run.get("id"),
        verdict=verdict,
        note=run.get("verdict_note") or "",
        job_id=run.get("job_id"),
        agent=run.get("agent"),
        description=run.get("description") or "",
        commit=run.get("commit"),
        val_bpb=bpb,
        val_loss=run.get("val_loss"),
        best_before=best["val_bpb"] if best else None,
        base_bpb=ref["val_bpb"] if ref and ref["id"] != run.get("id") else None,
        leader_bpb=top["val_bpb"] if top else None,
        delta_best=_delta(bpb, best["val_bpb"] if best else None),
        delta_base=_delta(bpb, ref["val_bpb"] if ref and ref["id"] != run.get("id") else None),
        delta_leader=_delta(bpb, top["val_bpb"] if top else None),
        bytes_total=size,
        headroom=ARTIFACT_CAP_BYTES - size if size is not None else None,
        steps=run.get("steps"),
        host=run.get("host"),
        env=json.loads(run.get("env_json") or "{}"),
        tail=run.get("tail") if verdict == "crash" else None,
    )


def signed(x: float) -> str:
    """``+0.0012`` / ``\u22120.0031``: a real minus sign, as the feed is read by people."""
    return fmt.signed(x, true_minus=True)


def _d(x: float | None) -> str:
    return fmt.MISSING if x is None else signed(x)


def _last_line(tail: str | None) -> str:
    lines = [ln.strip() for ln in (tail or "").splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "no log"


def feed_text(r: ExpResult) -> str:
    """One line for the feed: the verdict first, then the numbers a reader compares."""
    head = f"run {r.run_id} {r.verdict.upper()}"
    if r.verdict == "crash":
        return f"{head}: {r.description} \u2014 {_last_line(r.tail)}"
    if r.verdict == "cancelled":
        return f"{head}: {r.description}"
    bpb = fmt.score(r.val_bpb)
    size = (
        f"size {fmt.MISSING}"
        if r.bytes_total is None
        else f"{fmt.byte_count(r.bytes_total)} B (headroom {r.headroom:,})"
    )
    return (
        f"{head}: val_bpb {bpb} (vs best {_d(r.delta_best)}, vs base {_d(r.delta_base)}, "
        f"vs leader {_d(r.delta_leader)}), {size} \u2014 {r.description}"
    )


def summary_text(r: ExpResult) -> str:
    """The block ``helm exp run`` prints when the experiment ends."""
    if r.verdict == "queued":
        return (
            f"run {r.run_id} queued as job {r.job_id}; `helm exp wait {r.run_id}` for the verdict"
        )
    lines = [f"run {r.run_id}: {r.verdict.upper()} \u2014 {r.note}".rstrip(" \u2014")]
    lines.append(f"  change      {r.description}")
    if r.val_bpb is not None:
        lines.append(f"  val_bpb     {r.val_bpb:.6f}")
        lines.append(
            f"  vs best     {_d(r.delta_best)}   vs base {_d(r.delta_base)}   "
            f"vs leader {_d(r.delta_leader)}"
        )
    if r.bytes_total is not None:
        state = "fits" if r.headroom is not None and r.headroom >= 0 else "OVER THE CAP"
        lines.append(f"  artifact    {r.bytes_total:,} B, headroom {r.headroom:,} B ({state})")
    if r.verdict == "crash" and r.tail:
        lines.append("  last log lines:")
        lines += [f"    {ln}" for ln in r.tail.splitlines()[-15:]]
    return "\n".join(lines)
