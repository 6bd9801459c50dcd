"""Snapshot -> keyed table rows for the four panes of the main screen.

Pure functions of (snapshot, palette, now): they hold every formatting decision of the main
screen, run in microseconds for a big campaign and are tested without an app.
Row keys say what a row is (``agent:NAME``, ``job:ID``, ``run:ID``, ``post:ID``,
``host:NAME``): the screen resolves "the selected run or job" from them.
"""

from __future__ import annotations

from rich.text import Text

from helm import fmt
from helm.agents.report import base_text
from helm.models.base import pin_label
from helm.models.states import JobState
from helm.tui.data import AgentView, HostView, JobView, Snapshot
from helm.tui.fmt import Palette, delta_cell, progress, size_cell, spark
from helm.tui.readiness import readiness
from helm.tui.widgets.tables import Row

AGENT_COLUMNS = ("agent", "state", "progress", "loss", "eta", "job", "last", "driver")
BOARD_COLUMNS = ("#", "run", "val_bpb", "Δ base", "bytes", "agent", "seeds", "status", "what")
FEED_COLUMNS = ("age", "agent", "text")
FLEET_COLUMNS = ("host", "up", "ready", "gpus", "util", "mem", "temp")


def _matches(flt: str, *parts: object) -> bool:
    return not flt or flt.lower() in " ".join(str(p) for p in parts if p is not None).lower()


AT_RISK = "⚠ at risk"
"""The job cell's mark on a run the early-abort rule flagged (``feed.at_risk_run_ids``)."""


def _job_cells(
    job: JobView | None, pal: Palette, now: float, snap: Snapshot | None = None
) -> list[object]:
    """The job's cells; a screen's job says ``screen``, and one whose run the early-abort
    rule flagged ends its cell with ``⚠ at risk`` in the warning colour, so the operator sees
    it before it is stopped (an aborted run then shows ``aborted`` as its last)."""
    cells = _plain_job_cells(job, pal, now)
    if job is None or job.run_id is None or snap is None:
        return cells
    where = cells[-1]
    assert isinstance(where, Text)
    if job.run_id in snap.screens:
        where.append(" screen", style=pal.muted)
    if job.run_id in snap.at_risk:
        where.append(f" {AT_RISK}", style=pal.warning)
    return cells


def _plain_job_cells(job: JobView | None, pal: Palette, now: float) -> list[object]:
    """progress, loss, eta, and where the job is (``#1 h100-a:0,1``, or queued and since when).

    Past its last step a job shows the phase that runs (``quantize 12s``) where the bar was,
    and no ETA: the ETA counts training steps, which are done.
    """
    none = fmt.MISSING
    if job is None:
        return [pal.muted_text(none), none, none, pal.muted_text(none)]
    if job.state == JobState.QUEUED:
        where = f"#{job.id} queued {fmt.since(job.queued_at, now)} ×{job.gpus}"
        return [pal.muted_text(none), none, none, pal.status(job.state, where)]
    gpus = ",".join(str(i) for i in job.gpu_ids) or f"×{job.gpus}"
    where = f"#{job.id} {job.host or '?'}:{gpus}" + (" ✕" if job.cancel_requested else "")
    if job.queue_reason:  # submitted, held by the cluster's scheduler: say why
        where = f"#{job.id} {job.host or '?'} ⏸ {job.queue_reason}"
        return [pal.muted_text(none), none, none, pal.status(job.state, where)]
    if job.backend_id and job.started_at:  # a Slurm job: how long it has held its GPUs
        where += f" {fmt.age(now - job.started_at)}"
    if job.phase is not None:  # past its last step: the phase and its time, no ETA
        elapsed = now - job.phase_at if job.phase_at is not None else None
        bar = progress(job.step, job.total_steps, pal, width=8, phase=job.phase, elapsed=elapsed)
        return [bar, fmt.loss(job.train_loss), pal.muted_text(none), pal.status(job.state, where)]
    return [
        progress(job.step, job.total_steps, pal, width=8),
        fmt.loss(job.train_loss),
        fmt.age(job.eta_s),
        pal.status(job.state, where),
    ]


def _last(agent: AgentView, pal: Palette) -> Text:
    if agent.last is None:
        return pal.muted_text(fmt.MISSING)
    r = agent.last
    return pal.status(r["status"], f"#{r['id']} {fmt.score(r['val_bpb'])} {r['status']}")


def agent_rows(snap: Snapshot, pal: Palette, now: float, flt: str = "") -> list[Row]:
    rows: list[Row] = []
    for a in snap.agents:
        if not _matches(flt, a.name, a.driver, a.state, a.job and a.job.host):
            continue
        state = a.state + (" ↓" if a.desired == "down" and a.state != "stopped" else "")
        rows.append(
            (
                f"agent:{a.name}",
                [a.name, pal.status(a.state, state)]
                + _job_cells(a.job, pal, now, snap)
                + [_last(a, pal), a.driver],
            )
        )
    for j in snap.jobs:  # jobs with no agent row: queued work and `helm job run`
        if not _matches(flt, j.agent, j.host, j.state, f"#{j.id}"):
            continue
        rows.append(
            (
                f"job:{j.id}",
                [pal.muted_text(j.agent or "(job)"), pal.status(j.state)]
                + _job_cells(j, pal, now, snap)
                + [pal.muted_text(fmt.MISSING), fmt.MISSING],
            )
        )
    return rows


def board_rows(snap: Snapshot, pal: Palette, marked: int | None = None, flt: str = "") -> list[Row]:
    """The leaderboard (already filtered in SQL by ``flt``); best, base and marked flagged.

    ★ is the best run that counts (kept or promoted); ◆ a run of a base (the pinned run, a
    reference re-run), which has no Δ against itself; Δ base is the run's val_bpb minus the
    mean of the base of the pin it ran on (``helm.models.base``).
    """
    rows: list[Row] = []
    best_id = snap.best["id"] if snap.best else None
    for r in snap.leaderboard:
        of_base = snap.is_base_run(r)
        flags = ""
        if r["id"] == best_id:
            flags += "★"
        if of_base:
            flags += "◆"
        if r["id"] == marked:
            flags += "•"
        base = snap.base_of_row(r)
        rank = Text(f"{r['rank']}{flags}", style=pal.accent if flags else pal.text)
        rows.append(
            (
                f"run:{r['id']}",
                [
                    rank,
                    f"#{r['id']}",
                    Text(fmt.score(r["val_bpb"]), style=pal.success if flags[:1] == "★" else ""),
                    delta_cell(r["val_bpb"], base.mean if base else None, pal, of_base=of_base),
                    size_cell(r["bytes_total"], pal),
                    r["agent"] or fmt.MISSING,
                    str(snap.seed_count(r)),
                    pal.status(r["status"]),
                    (r["description"] or "")[:80],
                ],
            )
        )
    return rows


def feed_rows(snap: Snapshot, pal: Palette, now: float, flt: str = "") -> list[Row]:
    rows: list[Row] = []
    for p in snap.feed:
        if not _matches(flt, p["agent"], p["kind"], p["text"]):
            continue
        text = p["text"].replace("\n", " ")[:160]
        if p["run_id"] is not None:
            text = f"#{p['run_id']} {text}"
        rows.append(
            (
                f"post:{p['id']}",
                [
                    fmt.since(p["created_at"], now),
                    p["agent"] or "operator",
                    pal.status(p["kind"], text),
                ],
            )
        )
    return rows


def _queue_cells(h: HostView, pal: Palette) -> list[object]:
    """A Slurm host's gpus/util/mem/temp cells: GPUs its running jobs hold (▶) and jobs
    Slurm still holds (⏸), with the reason of the one waiting longest."""
    waiting = sorted((j for j in h.queue if j.state != JobState.RUNNING), key=lambda j: j.queued_at)
    gpus = Text(f"{h.busy}▶ {len(waiting)}⏸", style=pal.success if h.busy else pal.muted)
    reason = next((j.queue_reason for j in waiting if j.queue_reason), None)
    none = fmt.MISSING
    return [gpus, pal.muted_text(reason) if reason else pal.muted_text("slurm"), none, none]


def fleet_rows(snap: Snapshot, pal: Palette, flt: str = "") -> list[Row]:
    """One row per host; ``ready`` is ``readiness`` (the filter matches it too: ``/not``)."""
    rows: list[Row] = []
    for h in snap.hosts:
        label, role = readiness(h)
        if not _matches(flt, h.name, h.kind, label):
            continue
        if not h.enabled:
            up = pal.muted_text("off")
        elif h.reachable is None:
            up = pal.muted_text("?")
        else:
            up = Text("●", style=pal.success) if h.reachable else Text("✕", style=pal.error)
        ready = Text(label, style=pal.role(role))
        if h.kind == "slurm":
            rows.append((f"host:{h.name}", [h.name, up, ready, *_queue_cells(h, pal)]))
            continue
        used = [g.mem_used for g in h.gpu_list if g.mem_used is not None]
        total = [g.mem_total for g in h.gpu_list if g.mem_total is not None]
        mem = f"{sum(used) / 1024:.0f}/{sum(total) / 1024:.0f}G" if used and total else fmt.MISSING
        temps = [g.temp for g in h.gpu_list if g.temp is not None]
        busy = h.busy
        gpus = Text(f"{busy}/{h.gpus}", style=pal.success if busy else pal.muted)
        rows.append(
            (
                f"host:{h.name}",
                [
                    h.name,
                    up,
                    ready,
                    gpus,
                    spark([g.util for g in h.gpu_list], [g.busy for g in h.gpu_list], pal),
                    mem,
                    f"{max(temps):.0f}°" if temps else fmt.MISSING,
                ],
            )
        )
    return rows


def header_text(
    snap: Snapshot | None, pal: Palette, *, rate: float, paused: bool, marked: int | None
) -> Text:
    """The one-line summary: swarm, jobs, GPUs, the best kept run, the base (``base run #14
    1.2804 ±0.0003 (n=3)``: its runs' mean, spread and count), what the GPUs cost so far
    (``spent $12.40 · 0.62 GPU-h``; money "-" when a host has no price), directives, refresh
    state."""
    t = Text()
    if snap is None:
        return pal.muted_text("helm · loading…")

    def part(label: str, value: str, style: str = "") -> None:
        if t.plain:
            t.append("  ", style=pal.muted)
        t.append(label + " ", style=pal.muted)
        t.append(value, style=style or pal.text)

    running = snap.agents_running
    part("agents", f"{running}/{len(snap.agents)}")
    part("jobs", f"{snap.jobs_running}▶ {snap.jobs_queued}⏸")
    part("gpus", f"{snap.gpus_busy}/{snap.gpus_total}")
    if snap.best:
        part("best kept", f"{fmt.score(snap.best['val_bpb'])} #{snap.best['id']}", pal.success)
    else:
        part("best kept", fmt.MISSING)
    if snap.base:
        b = snap.base
        label = pin_label(b.pin, short=True)
        part("base", base_text(label[:32], b.mean, b.spread, b.n), pal.accent)
    u = snap.usage  # after the base: on a narrow screen the base is what stays in view
    part("spent", f"{fmt.money(u.cost)} · {fmt.gpu_hours(u.gpu_seconds)} GPU-h")
    if snap.budget:
        t.append(f"  {snap.budget}", style=pal.error if "reached" in snap.budget else pal.warning)
    if snap.directives:
        d = snap.directives[0]
        style = pal.warning if d.acked < d.total else pal.success
        part(f"dir #{d.id}", f"{d.delivered}/{d.total}→{d.acked}✓", style)
        if snap.directives_pending > 1:
            t.append(f" ({snap.directives_pending} pending)", style=pal.warning)
    if marked is not None:
        part("marked", f"#{marked}", pal.accent)
    part("", "paused" if paused else f"⟳{rate:g}s", pal.warning if paused else pal.muted)
    return t
