"""How a run becomes a job and how its end is awaited: the part of the experiment protocol
that a full run and a screen (``helm.agents.screen``) share.

``queue_run`` records the run (queued), keeps its commit reachable as ``refs/runs/<id>``,
exports the commit's files and hands them to the backend; a run whose job could not be queued
is recorded as a crash, so nothing is left "queued" forever. ``wait_run`` polls the store
until the daemon writes the run's result.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from helm.agents import taskrepo as tr
from helm.models.agents import update_agent
from helm.models.db import Db, Row
from helm.models.jobs import find_job
from helm.models.runs import get_run, insert_run, update_run
from helm.models.states import ENDED_RUN, TERMINAL_JOB, JobState, RunStatus
from helm.workspace import Workspace

Progress = Callable[[dict[str, Any]], None]


class ExperimentError(RuntimeError):
    """The experiment could not be started (bad state, conflicting base move ...)."""


class StopRequested(Exception):
    """Raised inside a wait (from a signal handler) to cancel the experiment in flight."""


@dataclass
class Candidate:
    """A committed change about to be screened or run: what a screen and a full run share."""

    agent: str
    wt: Path
    prev_head: str  # the commit it changes: the branch's best (or the pin's)
    commit: str
    code_hash: str
    env: dict[str, str]  # the full environment (the agent's and run.env), secrets masked
    agent_env: dict[str, str]  # the agent's own part of it
    description: str
    best: Row | None  # the branch's best before it
    base_pin_id: int | None

    def restore(self) -> None:
        """Put the worktree back on the branch's best (a discard, a crash, a screen-out)."""
        tr.reset_to(self.wt, self.best["commit"] if self.best else self.prev_head)

    def uncommit(self) -> None:
        """Back to the code it changes with the change left in the worktree, uncommitted (a
        refusal after the commit: the agent's edit must survive; its commit stays in
        ``refs/runs/`` wherever a screen ran it)."""
        from git import Repo

        Repo(self.wt).git.reset("--mixed", "-q", self.prev_head)


class DuplicateRun(Exception):
    """The run asked for exists already (found under the write lock that would insert it)."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(f"duplicate of run {row['id']}")
        self.row = row


class Backend(Protocol):
    """How a run becomes a job; the default is helm/remote's queue."""

    def submit(
        self,
        ws: Workspace,
        code_dir: Path,
        *,
        env: dict[str, str],
        gpus: int,
        seed: int | None,
        agent: str,
        run_id: int,
        time_limit_s: float,
    ) -> int: ...

    def cancel(self, ws: Workspace, job_id: int) -> None: ...


class RemoteBackend:
    """Jobs through ``helm.remote.jobs`` (placed and watched by the daemon)."""

    def submit(self, ws, code_dir, *, env, gpus, seed, agent, run_id, time_limit_s) -> int:  # type: ignore[no-untyped-def]
        from helm.remote.jobs import submit_job

        job = submit_job(
            ws,
            ws.store,
            code_dir,
            env=env,
            gpus=gpus,
            seed=seed,
            agent=agent,
            run_id=run_id,
            time_limit_s=time_limit_s,
            priority=0,
        )
        return int(job.id)

    def cancel(self, ws: Workspace, job_id: int) -> None:
        from helm.remote.jobs import request_cancel

        request_cancel(ws, job_id)


def queue_run(
    ws: Workspace,
    backend: Backend,
    wt: Path,
    *,
    commit: str,
    env: dict[str, str],
    gpus: int,
    seed: int | None,
    agent: str,
    time_limit_s: float,
    fields: Callable[[Db], dict[str, Any]],
    duplicate: Callable[[Db], Row | None] | None = None,
) -> tuple[int, int]:
    """Record a run of ``commit`` and queue its job; returns ``(run_id, job_id)``.

    ``fields(db)`` gives its other columns and ``duplicate(db)`` an existing run that makes
    this one unneeded (then ``DuplicateRun``), both read under the write lock of the insert:
    two agents proposing the same run at once get one run. The job's env may differ from
    the run's (``HELM_NO_ABORT``).
    """
    with ws.db(write=True) as db:
        dup = duplicate(db) if duplicate is not None else None
        if dup is not None:
            raise DuplicateRun(dup)
        run_id = insert_run(
            db,
            commit=commit,
            seed=seed,
            gpus=gpus,
            agent=agent,
            status=RunStatus.QUEUED,
            **fields(db),
        )
    tr.keep_ref(wt, run_id, commit)
    export = ws.agents_dir / agent / f"export-{run_id}"
    try:
        tr.export_commit(wt, commit, export)
        job_id = backend.submit(
            ws,
            export,
            env=env,
            gpus=gpus,
            seed=seed,
            agent=agent,
            run_id=run_id,
            time_limit_s=time_limit_s,
        )
    except BaseException:
        with ws.db(write=True) as db:
            update_run(db, run_id, status=RunStatus.CRASH, tail="could not queue the job")
        raise
    finally:
        shutil.rmtree(export, ignore_errors=True)
    with ws.db(write=True) as db:
        update_run(db, run_id, job_id=job_id)
    return run_id, job_id


def wait_run(
    ws: Workspace,
    run_id: int,
    *,
    on_progress: Progress | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    cancel_on_timeout: bool = False,
    grace_s: float = 30.0,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Poll the store until the run has a result; reports job progress when it changes.

    The daemon writes the result on the run when its job ends; if a job is terminal but the
    run still has no result after ``grace_s`` (say, a daemon killed at the wrong moment), the
    job's own state decides: failed -> crash, cancelled -> cancelled.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: tuple[Any, ...] = ()
    beat = 0.0
    while True:
        with ws.db(write=False) as db:
            run = get_run(db, run_id)
            job = find_job(db, run["job_id"])
        if run["status"] in ENDED_RUN:
            return run
        if job is not None:
            key = (job["state"], job["step"], job["val_bpb"], job["host"])
            if on_progress and key != last:
                on_progress(job)
            last = key
            over = job["state"] in TERMINAL_JOB
            if over and job["finished_at"] and time.time() - job["finished_at"] > grace_s:
                # the daemon ended the job but wrote no result on the run: judge by the job
                cancelled = job["state"] == JobState.CANCELLED
                status = RunStatus.CANCELLED if cancelled else RunStatus.CRASH
                with ws.db(write=True) as db:
                    update_run(db, run_id, status=status, finished_at=time.time())
                continue
        if should_stop is not None and should_stop():
            raise StopRequested
        if time.monotonic() - beat > 10:
            beat = time.monotonic()
            with ws.db(write=True) as db:
                update_agent(db, run["agent"] or "", last_seen_at=time.time())
        if deadline is not None and time.monotonic() > deadline:
            if cancel_on_timeout:
                with ws.db(write=True) as db:
                    update_run(db, run_id, status=RunStatus.CANCELLED, finished_at=time.time())
                continue
            raise TimeoutError(f"run {run_id} has no result after {timeout_s:.0f}s")
        time.sleep(poll_s)
