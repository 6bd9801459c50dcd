"""ORM helpers for the daemon, the agents and the TUI.

The agent-facing reads and writes (feed, directives, runs, leaderboard, context) live in
``hot`` as plain SQL, written once for both the fast CLI path and SQLAlchemy sessions; use
``session_db(session)`` to run them inside an ORM transaction.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from helm.models.hot import NotFound, SqlaDb
from helm.models.tables import Agent, Job, Pin, Run


def session_db(session: Session) -> SqlaDb:
    """The ``hot.Db`` view of an ORM session's transaction."""
    session.flush()
    return SqlaDb(session.connection())


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


def get_agent(session: Session, name: str) -> Agent:
    agent = session.exec(select(Agent).where(Agent.name == name)).first()
    if agent is None:
        raise NotFound(f"no agent {name!r}")
    return agent


def current_pin(session: Session) -> Pin | None:
    return session.exec(select(Pin).order_by(col(Pin.id).desc()).limit(1)).first()


def job_counts(session: Session) -> dict[str, int]:
    rows = session.exec(select(Job.state, func.count()).group_by(Job.state))
    return {state: int(n) for state, n in rows}
