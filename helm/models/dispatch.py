"""Every store write of a job's life as ORM objects: queued, placed, running, ended.

The daemon's network code never holds a transaction open: it calls these functions (from one
worker thread, see ``helm.remote.gate.DbGate``) with what it learned, and each re-reads the
row first, so an operator's cancel or a concurrent edit is never overwritten with stale state.
``helm.remote.jobs`` queues and cancels through the same functions. The dispatcher works on
``Job`` and ``Host`` objects (its boxes and watchers keep them); plain reads for the CLI and
the TUI are ``jobs`` and ``hosts``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlmodel import Session, col, select

from golf_task.log_summary import LogSummary
from helm.models.costs import add_try, try_gpu_seconds
from helm.models.db import NotFound
from helm.models.engine import Store
from helm.models.states import ACTIVE_JOB, IN_FLIGHT_RUN, TERMINAL_JOB, JobState, RunStatus
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


# Queueing and cancelling (helm.remote.jobs) -----------------------------------------------------
def insert_job(
    session: Session,
    *,
    run_id: int | None,
    agent: str | None,
    entry: str,
    env_json: str,
    gpus: int,
    seed: int | None,
    time_limit_s: float,
    priority: int,
    host: str | None,
    max_attempts: int,
) -> Job:
    """A new queued job, flushed so that its id (which names its code folder) is known.

    The daemon cannot see it before the caller's transaction commits, by which time
    ``set_job_code`` has pointed it at its snapshot.
    """
    job = Job(
        run_id=run_id,
        agent=agent,
        entry=entry,
        env_json=env_json,
        gpus=gpus,
        seed=seed,
        time_limit_s=time_limit_s,
        priority=priority,
        host=host,
        max_attempts=max_attempts,
    )
    session.add(job)
    session.flush()
    return job


def set_job_code(session: Session, job: Job, code_dir: str) -> None:
    """Point the job at its code snapshot, and its run (if it has one) at the job."""
    job.code_dir = code_dir
    session.add(job)
    if job.run_id is not None:
        run = session.get(Run, job.run_id)
        if run is not None:
            run.job_id = job.id
            session.add(run)
    session.flush()


def request_job_cancel(store: Store, job_id: int) -> Job:
    """Ask a job to stop; returns it as it now is (NotFound if there is none).

    A queued job is cancelled in the same transaction; a staging or running one is stopped by
    its watcher (TERM, then KILL); an ended one is left as it is.
    """
    with store.write() as s:
        job = load_job(s, job_id)
        if job.state in TERMINAL_JOB:
            return job
        job.cancel_requested = True
        s.add(job)
        if job.state == JobState.QUEUED:
            _cancel_queued_job(s, job)
        return job


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


def note_waiting(store: Store, reasons: dict[int, str]) -> None:
    """Say on a queued job why it cannot be placed (shown by ``helm job ls``)."""
    with store.write() as s:
        for job_id, why in reasons.items():
            job = s.get(Job, job_id)
            if job is not None and job.state == JobState.QUEUED and job.error != why:
                job.error = why
                s.add(job)


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


def note_queue_reason(store: Store, job_id: int, reason: str | None) -> None:
    """Why the host's scheduler keeps the try waiting ("Priority", "Resources" ...)."""
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is not None and job.queue_reason != reason:
            job.queue_reason = reason
            s.add(job)


def return_to_queue(store: Store, job_id: int, reason: str) -> Job | None:
    """A try the host refused before it could start (its settings are wrong): back in the
    queue as if never placed (the try is not counted), with the reason shown on the job."""
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None or job.state != JobState.STAGING:
            return job
        event(s, job_id, JobState.QUEUED, job.host, f"not submitted: {reason}")
        job.state = JobState.QUEUED
        job.attempts = max(0, job.attempts - 1)
        job.error = reason
        job.host = None
        job.gpu_ids_json = "[]"
        job.remote_dir = None
        job.backend_id = None
        job.queue_reason = None
        job.staged_at = None
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
            _record_run(s, job, state, summary, tail, host)
        return job


def _record_run(
    s: Session,
    job: Job,
    state: str,
    summary: LogSummary | None,
    tail: str | None,
    host: Host | None,
) -> None:
    """The job's result on its run; the run's verdict only if it is still in flight."""
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
            run.status = RunStatus.DONE
        else:
            run.status = RunStatus.CRASH
    s.add(run)


def lost(store: Store, jobs_dir: Path, job_id: int, reason: str) -> Job | None:
    """A job whose box or process vanished: requeue it, or give up after its last try.

    ``jobs_dir`` is the workspace's ``jobs/`` folder: a requeued try's log is set aside there
    in the same step, so the next try streams into a fresh file from offset zero.
    """
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None or job.state in TERMINAL_JOB:
            return job
        event(s, job_id, JobState.LOST, job.host, reason)
        end_try(s, job, time.time())
        if job.cancel_requested:
            job.state = JobState.CANCELLED
            job.error = f"cancelled ({reason})"
            job.finished_at = time.time()
            if job.run_id is not None:
                _record_run(s, job, JobState.CANCELLED, None, None, None)
        elif job.attempts < job.max_attempts:
            _requeue(s, jobs_dir, job, reason, f"retry {job.attempts + 1} of {job.max_attempts}")
        else:
            job.state = JobState.LOST
            job.error = f"lost after {job.attempts} tries: {reason}"
            job.finished_at = time.time()
            if job.run_id is not None:
                tail = read_tail(jobs_dir / str(job_id) / "train.log")
                _record_run(s, job, JobState.LOST, None, tail, None)
        s.add(job)
        return job


def _requeue(s: Session, jobs_dir: Path, job: Job, reason: str, note: str) -> None:
    """Put a job whose try ended back in the queue, its try's log set aside (``note``: the
    event that says which retry this is)."""
    assert job.id is not None
    _rotate_log(jobs_dir, job)
    job.state = JobState.QUEUED
    job.error = f"requeued after: {reason}"
    job.host = None
    job.gpu_ids_json = "[]"
    job.pid = None
    job.remote_dir = None
    job.backend_id = None
    job.queue_reason = None
    job.queued_at = time.time()
    for name in ("step", "total_steps", "train_loss", "val_bpb", "eta_s"):
        setattr(job, name, None)
    event(s, job.id, JobState.QUEUED, None, note)
    s.add(job)


CACHE_RETRY = "corrupt compile cache"  # how the event of a job's one cache retry starts


def retry_for_cache(store: Store, jobs_dir: Path, job_id: int, note: str) -> Job | None:
    """Requeue a job whose try failed on a corrupt compile cache (which the watcher has just
    quarantined), once in its life; returns it, or None when it had that retry already (or
    was asked to stop, or is gone): the caller then records the failure.

    The retry is not one of ``max_attempts`` (those are for boxes and processes that
    vanish): the job did nothing wrong. ``note`` (starting with ``CACHE_RETRY``) goes into
    its history, where ``helm job show`` shows it.
    """
    with store.write() as s:
        job = s.get(Job, job_id)
        if job is None or job.state in TERMINAL_JOB or job.cancel_requested:
            return None
        done = s.exec(
            select(JobEvent.id).where(
                JobEvent.job_id == job_id, col(JobEvent.message).startswith(CACHE_RETRY)
            )
        ).first()
        if done is not None:
            return None
        event(s, job_id, JobState.FAILED, job.host, note)
        end_try(s, job, time.time())
        _requeue(s, jobs_dir, job, note, f"retry {job.attempts + 1}: once, on a fresh cache")
        return job


TAIL_LINES = 50


def read_tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = 256 * 1024) -> str:
    """The last lines of a log (kept on a run that ended without a score); "" if unreadable."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _rotate_log(jobs_dir: Path, job: Job) -> None:
    """Keep a failed try's log as ``train.try<N>.log``; the next try streams from zero."""
    log = jobs_dir / str(job.id) / "train.log"
    if log.exists():
        os.replace(log, log.with_name(f"train.try{job.attempts}.log"))
    job.log_offset = 0
    job.phase = job.phase_at = None  # the next try trains first


def cancel_queued(store: Store, job_ids: Sequence[int]) -> None:
    """Cancel these jobs if they are still queued (the dispatcher's pass over cancel requests)."""
    with store.write() as s:
        for job_id in job_ids:
            job = s.get(Job, job_id)
            if job is not None and job.state == JobState.QUEUED:
                _cancel_queued_job(s, job)


def _cancel_queued_job(s: Session, job: Job) -> None:
    assert job.id is not None
    job.state = JobState.CANCELLED
    job.finished_at = time.time()
    s.add(job)
    event(s, job.id, JobState.CANCELLED, None, "cancelled while queued")
    if job.run_id is not None:
        _record_run(s, job, JobState.CANCELLED, None, None, None)


def save_check(store: Store, host_name: str, reachable: bool, check: dict) -> None:
    """The result of ``helm host check`` (or the daemon's periodic one) on the host row."""
    with store.write() as s:
        host = s.exec(select(Host).where(Host.name == host_name)).first()
        if host is not None:
            host.reachable = reachable
            host.checked_at = time.time()
            host.check_json = json.dumps(check)
            s.add(host)
