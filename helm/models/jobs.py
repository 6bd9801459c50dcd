"""Job rows as plain reads: what the CLI, the TUI and the agents ask about a job.

The dispatcher's writes (placement, progress, results, retries) are in ``dispatch``.
"""

from __future__ import annotations

from helm.models.db import Db, NotFound, Row, in_list, one
from helm.models.states import LIVE_JOB


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
