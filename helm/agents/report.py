"""What an experiment's result says, in the feed, on the terminal and as JSON.

The same numbers everywhere: val_bpb; its difference from the branch's best before the run
(what the keep rule compared it with: ``branch_start``), from the base of the pin it ran on
(the mean of the base's runs, ``helm.models.base``: the leaderboard's "Δ base" is the same
number) and from the best run that counts (kept or promoted, never a discard; negative is
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
from helm.models.base import BaseStats, base_of, base_pin_id
from helm.models.db import Db, Row
from helm.models.pins import latest_pin
from helm.models.runs import best_kept_run, branch_best
from helm.models.states import RunStatus


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
    base_bpb: float | None = None  # the mean of the base of the run's pin
    base_spread: float | None = None
    base_n: int = 0
    base_pin: str | None = None  # the pin, as people read it (``run #14``)
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
    # a screen's numbers (``screen_facts``): the run is a screen, or a full run that came
    # through one; a screen's own val_bpb is never compared with full runs' scores
    screen: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b


def branch_start(db: Db, agent: str, pin_id: int | None) -> tuple[Row | None, float | None]:
    """The run the agent's branch is on (its best kept run on this base since its
    reference) and the score the keep rule compares the next run with.

    While that run is one of the base's own (the agent's reference re-ran the pinned code
    unchanged), the score is the base's mean over all its runs, not that one seed's draw;
    after a kept improvement, or from a reference that measured something else (a ``set``
    directive's), it is that run's score.
    """
    best = branch_best(db, agent, pin_id)
    if best is None:
        return None, None
    base = base_of(db, pin_id)
    if base is not None and base.mean is not None and base.contains(best["id"]):
        return best, base.mean
    return best, best["val_bpb"]


def run_base(db: Db, run: Row) -> BaseStats | None:
    """The base a run is compared with: its pin's, else (made outside the loop) the current."""
    pin_id = run.get("base_pin_id")
    if pin_id is None:
        current = latest_pin(db)
        pin_id = base_pin_id(run, current["id"] if current else None)
    return base_of(db, pin_id)


def build_result(
    db: Db,
    run: Row,
    *,
    verdict: str,
    start: tuple[Row | None, float | None] | None = None,
) -> ExpResult:
    """Assemble the comparison numbers for ``run`` (``start``: the keep rule's branch best
    before it, as ``branch_start`` gives it)."""
    best, best_bpb = start if start is not None else (None, None)
    if start is None and run.get("agent"):
        best, best_bpb = branch_start(db, run["agent"], run.get("base_pin_id"))
        if best is not None and best["id"] == run.get("id"):
            best, best_bpb = None, None
    base = run_base(db, run)
    top = best_kept_run(db, exclude_run=run.get("id"))
    bpb = run.get("val_bpb")
    size = run.get("bytes_total")
    facts = screen_facts(db, run)
    if run.get("screen"):  # a screen's score is at a fraction of the steps: no full-run Δ
        base, top, best_bpb, bpb, size = None, None, None, None, None
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
        best_before=best_bpb,
        base_bpb=base.mean if base else None,
        base_spread=base.spread if base else None,
        base_n=base.n if base else 0,
        base_pin=base.label if base else None,
        leader_bpb=top["val_bpb"] if top else None,
        delta_best=_delta(bpb, best_bpb),
        delta_base=base.delta(run.get("id"), bpb) if base else None,
        delta_leader=_delta(bpb, top["val_bpb"] if top else None),
        bytes_total=size,
        headroom=ARTIFACT_CAP_BYTES - size if size is not None else None,
        steps=run.get("steps"),
        host=run.get("host"),
        env=json.loads(run.get("env_json") or "{}"),
        tail=run.get("tail") if verdict == "crash" else None,
        screen=facts,
    )


def screen_facts(db: Db, run: Row) -> dict[str, Any] | None:
    """The screen a result reports: the run itself when it is a screen, else the screen a
    full run came through; with the base's screen it was judged against."""
    from helm.models.runs import find_run

    row = run if run.get("screen") else find_run(db, run.get("screen_run_id"))
    if row is None:
        return None
    ref = find_run(db, row.get("screen_ref_id"))
    ref_bpb = ref["val_bpb"] if ref else None
    return {
        "run_id": row["id"],
        "status": row["status"],
        "val_bpb": row["val_bpb"],
        "ref_run_id": ref["id"] if ref else None,
        "ref_bpb": ref_bpb,
        "delta": _delta(row["val_bpb"], ref_bpb),
        "note": row.get("verdict_note") or "",
    }


def signed(x: float) -> str:
    """``+0.0012`` / ``\u22120.0031``: a real minus sign, as the feed is read by people."""
    return fmt.signed(x, true_minus=True)


def _d(x: float | None) -> str:
    return fmt.MISSING if x is None else signed(x)


def _last_line(tail: str | None) -> str:
    lines = [ln.strip() for ln in (tail or "").splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "no log"


def base_text(label: str, mean: float | None, spread: float | None, n: int) -> str:
    """A base in one phrase: ``run #14 1.2804 ±0.0003 (n=3)``; ``(n=0)``: nothing scored."""
    if mean is None:
        return f"{label} (n=0)"
    plus = f" \u00b1{fmt.score(spread)}" if spread is not None else ""
    return f"{label} {fmt.score(mean)}{plus} (n={n})"


def feed_text(r: ExpResult) -> str:
    """One line for the feed: the verdict first, then the numbers a reader compares."""
    head = f"run {r.run_id} {r.verdict.upper()}"
    if r.verdict == "crash":
        return f"{head}: {r.description} \u2014 {_last_line(r.tail)}"
    if r.verdict == "cancelled":
        return f"{head}: {r.description}"
    if r.verdict == RunStatus.SCREEN_FAIL:
        return f"{head}: {r.description} \u2014 {r.note}"
    bpb = fmt.score(r.val_bpb)
    size = (
        f"size {fmt.MISSING}"
        if r.bytes_total is None
        else f"{fmt.byte_count(r.bytes_total)} B (headroom {r.headroom:,})"
    )
    screened = ""
    if r.screen is not None:
        screened = f" (screen run {r.screen['run_id']} {_d(r.screen['delta'])} vs the base's)"
    return (
        f"{head}: val_bpb {bpb} (vs best {_d(r.delta_best)}, vs base {_d(r.delta_base)}, "
        f"vs leader {_d(r.delta_leader)}), {size} \u2014 {r.description}{screened}"
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
    if r.screen is not None:
        sc = r.screen
        lines.append(
            f"  screen      run {sc['run_id']} {fmt.score(sc['val_bpb'])} vs the base's screen "
            f"{fmt.score(sc['ref_bpb'])} (run {sc['ref_run_id']}): {_d(sc['delta'])}"
        )
    if r.base_pin is not None:
        lines.append(f"  base        {base_text(r.base_pin, r.base_bpb, r.base_spread, r.base_n)}")
    if r.bytes_total is not None:
        state = "fits" if r.headroom is not None and r.headroom >= 0 else "OVER THE CAP"
        lines.append(f"  artifact    {r.bytes_total:,} B, headroom {r.headroom:,} B ({state})")
    if r.verdict == "crash" and r.tail:
        lines.append("  last log lines:")
        lines += [f"    {ln}" for ln in r.tail.splitlines()[-15:]]
    return "\n".join(lines)
