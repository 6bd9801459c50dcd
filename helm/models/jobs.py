"""Job rows as plain reads: what the CLI, the TUI and the agents ask about a job.

The dispatcher's writes (placement, progress, results, retries) are in ``dispatch``.
"""

from __future__ import annotations

from helm.models.db import Db, NotFound, Row, in_list, one
from helm.models.states import ACTIVE_JOB, LIVE_JOB, JobState


def find_job(db: Db, job_id: int | None) -> Row | None:
    """The job with this id, or None (also for ``None``)."""
    if job_id is None:
        return None
    return one(db, "SELECT * FROM job WHERE id = :id", {"id": int(job_id)})


def get_job(db: Db, job_id: int) -> Row:
    """The job with this id; NotFound if there is none."""
    row = find_job(db, job_id)
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


def live_job_ids(db: Db, *, agents: list[str] | None = None) -> list[int]:
    """Ids of jobs that have not ended (queued, staging or running), optionally one agents'."""
    params: dict = {}
    sql = f"SELECT id FROM job WHERE {in_list('state', sorted(LIVE_JOB), params, 'st')}"
    if agents is not None:
        sql += f" AND {in_list('agent', agents, params, 'ag')}"
    return [int(r["id"]) for r in db.rows(sql + " ORDER BY id", params)]


def list_jobs(
    db: Db, *, state: str | None = None, live_only: bool = True, limit: int = 50
) -> list[Row]:
    """Jobs newest first: those in ``state``, else the live ones (or all, ``live_only=False``)."""
    params: dict = {"limit": int(limit)}
    sql = "SELECT * FROM job"
    if state:
        sql += " WHERE state = :state"
        params["state"] = state
    elif live_only:
        sql += f" WHERE {in_list('state', sorted(LIVE_JOB), params, 'st')}"
    return db.rows(sql + " ORDER BY id DESC LIMIT :limit", params)


def job_events(db: Db, job_id: int) -> list[Row]:
    """A job's history (placed, running, lost, requeued ...), oldest first."""
    return db.rows("SELECT * FROM job_event WHERE job_id = :id ORDER BY id", {"id": int(job_id)})


def active_job_on(db: Db, host: str) -> int | None:
    """The id of a job that holds GPUs on this host (staging or running), or None."""
    params: dict = {"h": host}
    busy = in_list("state", sorted(ACTIVE_JOB), params, "st")
    row = one(db, f"SELECT id FROM job WHERE host = :h AND {busy} ORDER BY id LIMIT 1", params)
    return None if row is None else int(row["id"])


def live_jobs_by_placement(db: Db) -> list[Row]:
    """Every job that has not ended: placed ones first, then the queue in the order the
    dispatcher takes it (priority, then age) -- the TUI's jobs pane."""
    params: dict = {"queued": JobState.QUEUED.value}
    live = in_list("state", sorted(LIVE_JOB), params, "st")
    return db.rows(
        f"SELECT * FROM job WHERE {live} "
        "ORDER BY CASE WHEN state = :queued THEN 1 ELSE 0 END, priority DESC, id",
        params,
    )


def latest_job_of_run(db: Db, run_id: int) -> Row | None:
    """The newest job that ran this run (a retried run has several), or None."""
    return one(
        db, "SELECT * FROM job WHERE run_id = :id ORDER BY id DESC LIMIT 1", {"id": int(run_id)}
    )
