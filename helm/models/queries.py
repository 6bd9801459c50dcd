"""ORM lookups for the daemon and the promotion flow: a row by id, or a clear NotFound.

The agent-facing reads and writes (feed, directives, runs, leaderboard, context) live in
``hot`` as plain SQL, written once for both the fast CLI path and SQLAlchemy connections.
"""

from __future__ import annotations

from sqlmodel import Session

from helm.models.db import NotFound
from helm.models.tables import Job, Run


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job
