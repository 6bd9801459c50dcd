"""The store writes of a job between its tries: queued, waiting, requeued, retried, cancelled.

A job outlives its tries: it is queued (``helm.remote.jobs``), waits for a place (the reason
shown on it), may be refused by its host before it starts, lost and requeued with its try's
log set aside, retried once on a corrupt compile cache, or cancelled while queued. These are
the queue's and the retry policy's decisions, kept apart from the record of one try on its
host (``helm.models.job_life``, whose ``event``, ``end_try`` and ``record_run`` they use), so
that the steps of a try and the rules that start another one can each be read on their own.
Same discipline: one short transaction each, the row re-read first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from sqlmodel import Session, col, select

from helm.models.engine import Store
from helm.models.job_life import end_try, event, load_job, record_run
from helm.models.states import TERMINAL_JOB, JobState
from helm.models.tables import Job, JobEvent, Run


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
        record_run(s, job, JobState.CANCELLED, None, None, None)


def note_waiting(store: Store, reasons: dict[int, str]) -> None:
    """Say on a queued job why it cannot be placed (shown by ``helm job ls``)."""
    with store.write() as s:
        for job_id, why in reasons.items():
            job = s.get(Job, job_id)
            if job is not None and job.state == JobState.QUEUED and job.error != why:
                job.error = why
                s.add(job)


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
                record_run(s, job, JobState.CANCELLED, None, None, None)
        elif job.attempts < job.max_attempts:
            _requeue(s, jobs_dir, job, reason, f"retry {job.attempts + 1} of {job.max_attempts}")
        else:
            job.state = JobState.LOST
            job.error = f"lost after {job.attempts} tries: {reason}"
            job.finished_at = time.time()
            if job.run_id is not None:
                tail = read_tail(jobs_dir / str(job_id) / "train.log")
                record_run(s, job, JobState.LOST, None, tail, None)
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
