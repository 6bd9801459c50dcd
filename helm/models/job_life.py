"""The store writes of a try's life on its host: placed, submitted, running, progress, ended.

Each try of a job goes queued → staging → running → an end on one host; this module records
every step of that path and what the try cost (``end_try``), and the job's result on its run
(``record_run``). What happens to a job between tries (the queue, retries, cancels before a
try starts) is ``helm.models.job_queue``, which builds on these functions; this module never
imports it.

The daemon's network code never holds a transaction open: it calls these functions (from one
worker thread, see ``helm.remote.gate.DbGate``) with what it learned, and each re-reads the
row first, so an operator's cancel or a concurrent edit is never overwritten with stale state.
The dispatcher works on ``Job`` and ``Host`` objects (its boxes and watchers keep them); plain
reads for the CLI and the TUI are ``jobs`` and ``hosts``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlmodel import Session, col, select

from golf_task.log_summary import LogSummary
from helm.models.costs import add_try, try_gpu_seconds
from helm.models.db import NotFound
from helm.models.engine import Store
from helm.models.states import ACTIVE_JOB, IN_FLIGHT_RUN, JobState, RunStatus
from helm.models.tables import Host, Job, JobEvent, Run


class PlacementLike(Protocol):
    """What the scheduler decided for one job (``helm.remote.scheduler.Placement``)."""

    job_id: int
    host: str
    gpu_ids: Sequence[int]


@dataclass
class FleetState:
    """The dispatcher's view of the fleet at one tick: hosts, busy and waiting jobs."""

    hosts: list[Host]
    active: list[Job]
    queued: list[Job]
    cancel_ids: set[int] = field(default_factory=set)


def fleet_state(store: Store) -> FleetState:
    """One consistent read of what the dispatcher acts on at a tick."""
    with store.read() as s:
        # disabled hosts too: their running jobs are still watched (placement skips them)
        hosts = list(s.exec(select(Host)))
        active = list(s.exec(select(Job).where(col(Job.state).in_(ACTIVE_JOB))))
        queued = list(s.exec(select(Job).where(Job.state == JobState.QUEUED)))
    cancel = {j.id for j in active + queued if j.cancel_requested and j.id is not None}
    return FleetState(hosts, active, queued, cancel)


def load_job(session: Session, job_id: int) -> Job:
    """The job as an ORM object of this session (to read attributes or change it); NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def load_host(session: Session, name: str) -> Host:
    """The host as the ORM object boxes are made from (``helm.remote.hosts``); NotFound."""
    host = session.exec(select(Host).where(Host.name == name)).first()
    if host is None:
        raise NotFound(f"no host {name!r}")
    return host


def event(s: Session, job_id: int, state: str, host: str | None, message: str = "") -> None:
    """One line of the job's history (``helm job show``)."""
    s.add(JobEvent(job_id=job_id, state=state, host=host, message=message))


def claim(store: Store, placements: Sequence[PlacementLike]) -> list[Job]:
    """Move placed jobs from queued to staging (skipping any that changed meanwhile)."""
    claimed: list[Job] = []
    with store.write() as s:
        for p in placements:
            job = s.get(Job, p.job_id)
            if job is None or job.state != JobState.QUEUED or job.cancel_requested:
                continue
            job.state = JobState.STAGING
            job.host = p.host
            job.gpu_ids_json = json.dumps(list(p.gpu_ids))
            job.attempts += 1
            job.staged_at = time.time()
            job.started_at = None
            job.remote_dir = None
            job.pid = None
            job.backend_id = None
            job.queue_reason = None
            job.error = None
            s.add(job)
            where = f"gpus {list(p.gpu_ids)}" if p.gpu_ids else "to the host's scheduler"
            event(s, p.job_id, JobState.STAGING, p.host, f"{where}, try {job.attempts}")
            claimed.append(job)
    return claimed


def mark_submitted(store: Store, job_id: int, backend_id: str, remote_dir: str) -> Job | None:
    """The try is in its host's scheduler's queue (Slurm job ``backend_id``), not started:
    it stays ``staging`` and holds no GPU-time until that scheduler starts it."""
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None or job.state != JobState.STAGING:
            return job
        if job.backend_id != backend_id:
            event(s, job_id, JobState.STAGING, job.host, f"submitted as Slurm job {backend_id}")
        job.backend_id = backend_id
        job.remote_dir = remote_dir
        job.heartbeat_at = time.time()
        s.add(job)
        return job


def mark_running(
    store: Store,
    job_id: int,
    pid: int | None,
    host: str | None,
    remote_dir: str,
    *,
    started_at: float | None = None,
) -> Job | None:
    """The job's process started on its box (its run too, if that is still in flight).

    ``pid`` None: a Slurm try whose wrapper has not written its pid yet (helm never signals
    a compute node's processes itself: scancel does). ``started_at``: when the host's
    scheduler says it started (GPU-time counts from there), else now.
    """
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        job.state = JobState.RUNNING
        job.pid = pid
        job.remote_dir = remote_dir
        job.queue_reason = None
        job.started_at = job.started_at or started_at or time.time()
        job.heartbeat_at = time.time()
        s.add(job)
        where = f"pid {pid}"
        if job.backend_id is not None:  # a compute node's pid: for the record only
            where = f"Slurm job {job.backend_id} started" + (f", {where}" if pid else "")
        event(s, job_id, JobState.RUNNING, host, where)
        if job.run_id is not None:
            run = s.get(Run, job.run_id)
            if run is not None and run.status in IN_FLIGHT_RUN:
                run.status = RunStatus.RUNNING
                run.host = host
                run.job_id = job_id
                s.add(run)
        return job


def save_progress(store: Store, job_id: int, offset: int, summary: LogSummary | None) -> None:
    """How far the streamed log got, and what it says so far (the TUI shows it live)."""
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        job.log_offset = offset
        job.heartbeat_at = time.time()
        if summary is not None:
            job.step = summary.step
            job.total_steps = summary.total_steps
            job.train_loss = summary.train_loss
            job.val_bpb = summary.val_bpb if summary.val_bpb is not None else summary.last_val_bpb
            job.eta_s = summary.eta_s
            if summary.phase != job.phase:  # stamped when first seen: a restart keeps it
                job.phase = summary.phase
                job.phase_at = job.heartbeat_at if summary.phase is not None else None
        s.add(job)


def heartbeat(store: Store, job_ids: Sequence[int]) -> None:
    """These jobs' boxes answered recently (a job without heartbeats looks stuck)."""
    with store.write() as s:
        for job_id in job_ids:
            job = s.get(Job, job_id)
            if job is not None:
                job.heartbeat_at = time.time()
                s.add(job)


def gpu_type(host: Host | None) -> str | None:
    """The host's GPU model from its last check; "cpu" when it has none."""
    if host is None:
        return None
    try:
        check = json.loads(host.check_json or "{}")
    except ValueError:
        check = {}
    gpus = check.get("gpus")
    if gpus:
        return str(gpus[0].get("name"))
    if gpus == [] or host.kind == "local":
        return "cpu"
    return None


def end_try(s: Session, job: Job, end: float) -> float:
    """Add the try that ends now to the job's GPU-seconds and cost; returns its seconds.

    Called at every end of a try (finish, lost, retry_for_cache) while the try's fields
    (host, ``staged_at``, ``started_at``, ``backend_id``) still describe it, and only for a
    try that holds its place (``staging``/``running``), so no end is counted twice.
    """
    if job.state not in ACTIVE_JOB:
        return 0.0
    seconds = try_gpu_seconds(job.gpus, job.staged_at, job.started_at, job.backend_id, end)
    host = s.exec(select(Host).where(Host.name == job.host)).first() if job.host else None
    price = host.price_per_gpu_hour if host is not None else None
    job.gpu_seconds, job.cost = add_try(job.gpu_seconds or 0.0, job.cost, seconds, price)
    return seconds


def finish(
    store: Store,
    job_id: int,
    state: str,
    *,
    exit_code: int | None,
    error: str | None,
    summary: LogSummary | None,
    offset: int,
    tail: str | None,
) -> Job | None:
    """Record how a job ended, and its result on its run."""
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        job.finished_at = time.time()
        end_try(s, job, job.finished_at)
        job.state = state
        job.exit_code = exit_code
        job.error = error
        job.queue_reason = None
        job.log_offset = offset
        if summary is not None:
            job.step = summary.step
            job.total_steps = summary.total_steps
            job.train_loss = summary.train_loss
            job.val_bpb = summary.val_bpb if summary.val_bpb is not None else summary.last_val_bpb
            job.eta_s = summary.eta_s if state == JobState.SUCCEEDED else None
        s.add(job)
        event(s, job_id, state, job.host, error or (f"exit {exit_code}" if exit_code else ""))
        if job.run_id is not None:
            host = s.exec(select(Host).where(Host.name == job.host)).first() if job.host else None
            record_run(s, job, state, summary, tail, host)
        return job


def record_run(
    s: Session,
    job: Job,
    state: str,
    summary: LogSummary | None,
    tail: str | None,
    host: Host | None,
) -> None:
    """The job's result on its run; the run's verdict only if it is still in flight.

    Public because a job also ends between tries (lost, cancelled while queued: job_queue).
    """
    run = s.get(Run, job.run_id)
    if run is None:
        return
    run.job_id = job.id
    run.host = job.host
    run.gpu_type = gpu_type(host)
    if summary is not None:
        run.val_bpb = summary.val_bpb
        run.val_loss = summary.val_loss
        run.score_line = summary.score_line
        run.bytes_total = summary.bytes_total
        run.bytes_code = summary.bytes_code
        run.bytes_model = summary.bytes_model
        run.train_time_ms = summary.train_time_ms
        run.steps = summary.stop_step if summary.stop_step is not None else summary.step
        run.step_avg_ms = summary.step_avg_ms
    run.finished_at = time.time()
    scored = summary is not None and summary.val_bpb is not None
    if state != JobState.SUCCEEDED or not scored:
        run.tail = tail
    if run.status in IN_FLIGHT_RUN:
        if state == JobState.CANCELLED:
            run.status = RunStatus.CANCELLED
        elif state == JobState.SUCCEEDED and scored:
            # a screen's score is at a fraction of the steps: never a ranked "done"
            run.status = RunStatus.SCREENED if run.screen else RunStatus.DONE
        else:
            run.status = RunStatus.CRASH
    s.add(run)


def save_check(store: Store, host_name: str, reachable: bool, check: dict) -> None:
    """The result of ``helm host check`` (or the daemon's periodic one) on the host row."""
    with store.write() as s:
        host = s.exec(select(Host).where(Host.name == host_name)).first()
        if host is not None:
            host.reachable = reachable
            host.checked_at = time.time()
            host.check_json = json.dumps(check)
            s.add(host)
