"""The experiment protocol every driver follows: commit, record, dedupe, queue, wait, judge.

``run_experiment`` is ``helm exp run``: the coding agents reach it through the CLI, the sweep
agent calls it in-process. One protocol for both means one set of guarantees: every run is a
commit (``refs/runs/<id>``) with its environment, duplicates are refused, the verdict is the
noise-aware rule of ``keeprule`` against the branch's best (on a new base, until a change is
kept: the base's mean over its reference runs, ``report.branch_start``), a discard or crash
puts the worktree back on the branch's best, and every result (crashes included) reaches
the feed. At 100% of a budget (``helm.agents.budget``: the campaign's or the agent's) no run
is queued: the request is refused with the reason before the worktree is touched.

Before each experiment the agent moves onto a newly pinned base: its branch is *reset* onto
the base (not merged: the operator chose that code; the old work stays reachable through its
run refs), carrying an uncommitted edit across with ``git stash`` when it applies cleanly.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from helm.agents import budget as bud
from helm.agents import config as cfg
from helm.agents import taskrepo as tr
from helm.agents.abort_service import NO_ABORT_ENV, abort_evidence, abort_text
from helm.agents.keeprule import decide, seed_spread
from helm.agents.report import ExpResult, branch_start, build_result, feed_text
from helm.models.agents import get_agent, update_agent
from helm.models.base import pin_label
from helm.models.db import Db, Row
from helm.models.feed import post_feed
from helm.models.jobs import find_job
from helm.models.pins import find_pin, latest_pin
from helm.models.runs import (
    branch_best,
    canonical_env,
    find_duplicate,
    find_run,
    find_run_at_commit,
    get_run,
    in_flight_runs,
    insert_run,
    reference_run,
    seed_scores,
    update_run,
)
from helm.models.states import ENDED_RUN, TERMINAL_JOB, JobState, RunStatus
from helm.remote.secrets import SecretStore, agent_scope, scrub, take_env
from helm.workspace import Workspace

Progress = Callable[[dict[str, Any]], None]


class ExperimentError(RuntimeError):
    """The experiment could not be started (bad state, conflicting base move ...)."""


class StopRequested(Exception):
    """Raised inside a wait (from a signal handler) to cancel the experiment in flight."""


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


@dataclass
class ExpRequest:
    agent: str
    description: str = ""
    gpus: int | None = None
    seed: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # names declared secret (``--secret``), beyond the rule
    force: bool = False
    baseline: bool = False
    wait: bool = True
    no_abort: bool = False  # never early-aborted (the job's env says so, not the run's)


@contextmanager
def agent_lock(ws: Workspace, agent: str) -> Iterator[None]:
    """One experiment at a time per agent (its worktree is the experiment's state)."""
    folder = ws.agents_dir / agent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "exp.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ExperimentError(f"agent {agent} already has an experiment running") from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _agent_row(ws: Workspace, agent: str) -> Row:
    with ws.db(write=False) as db:
        return get_agent(db, agent)


def worktree_of(ws: Workspace, row: dict[str, Any]) -> Path:
    return Path(row["worktree"]) if row.get("worktree") else ws.worktrees_dir / row["name"]


def move_onto_base(ws: Workspace, agent: str) -> bool:
    """Reset the agent's branch onto the current pin if it is not on it; True if it moved."""
    from git import Repo
    from git.exc import GitCommandError

    row = _agent_row(ws, agent)
    with ws.db(write=False) as db:
        pin = latest_pin(db)
    if pin is None or row["base_pin_id"] == pin["id"] or not pin["commit"]:
        return False
    wt = tr.ensure_worktree(ws, agent)
    repo = Repo(wt)
    dirty = repo.is_dirty(untracked_files=True)
    if dirty:
        repo.git.stash("push", "--include-untracked", "-m", f"helm: carry onto pin {pin['id']}")
    tr.reset_to(wt, pin["commit"])
    conflict = False
    if dirty:
        try:
            repo.git.stash("pop")
        except GitCommandError:
            conflict = True
            tr.reset_to(wt, pin["commit"])
    with ws.db(write=True) as db:
        update_agent(db, agent, base_pin_id=pin["id"])
        note = f"moved onto base pin #{pin['id']} ({pin_label(pin)})"
        if conflict:
            note += "; its uncommitted edit did not apply there and is kept in `git stash list`"
        post_feed(db, note, agent=agent, kind="system")
    return True


def _describe(old_env: dict[str, str], new_env: dict[str, str], files: list[str]) -> str:
    changed = [f"{k}={v}" for k, v in sorted(new_env.items()) if old_env.get(k) != v]
    changed += [f"-{k}" for k in sorted(set(old_env) - set(new_env))]
    parts = changed + [f"edit {f}" for f in files if f != tr.ENV_FILE]
    return ", ".join(parts) if parts else "no change (reference)"


def run_experiment(
    ws: Workspace,
    req: ExpRequest,
    *,
    backend: Backend | None = None,
    on_progress: Progress | None = None,
    poll_s: float = 1.0,
    should_stop: Callable[[], bool] | None = None,
) -> ExpResult:
    """The whole protocol for one experiment; see the module docstring."""
    from git import Repo

    conf = cfg.load(ws.config_path)
    backend = backend or RemoteBackend()
    with agent_lock(ws, req.agent):
        # before anything moves: a refused run leaves the worktree (the agent's edit) as is
        bud.check_queue(ws, req.agent)  # BudgetReached at 100%; posts each 80%/100% once
        move_onto_base(ws, req.agent)
        row = _agent_row(ws, req.agent)
        wt = tr.ensure_worktree(ws, req.agent)
        with ws.db(write=False) as db:
            busy = in_flight_runs(db, req.agent)
        if busy and not req.force:
            raise ExperimentError(
                f"agent {req.agent} has run {busy[0]['id']} in flight; `helm exp wait "
                f"{busy[0]['id']}` first (or --force)"
            )
        repo = Repo(wt)
        prev_head = repo.head.commit.hexsha
        # every value entering here (the agent's env, run.env as the agent left it, --env)
        # passes the one secret rule: run.env, the commit, the run and the job hold ***
        run_env = _take(ws, req, {**tr.read_env(wt), **req.env})
        tr.write_env(wt, run_env)
        tree = tr.stage_tree(wt)
        changed = repo.git.diff("--cached", "--name-only").splitlines()
        agent_env = json.loads(row.get("env_json") or "{}")
        masked_agent_env = _take(ws, req, agent_env)  # a row from before secrets were masked
        full_env = {**masked_agent_env, **run_env}
        env_s = canonical_env(full_env)
        chash = tr.code_hash(wt, tree)
        with ws.db(write=False) as db:
            dup = None if req.force else find_duplicate(db, chash, env_s, req.seed)
            best = branch_best(db, req.agent, row["base_pin_id"])
        if dup is not None:
            restore = best["commit"] if best else prev_head
            tr.reset_to(wt, restore)
            return _duplicate_result(ws, dup)
        description = scrub(
            req.description.strip(),
            SecretStore(ws.root).get(agent_scope(req.agent)).values(),
        ) or _describe(
            tr.parse_env(tr.show_file(wt, prev_head, tr.ENV_FILE) or ""), run_env, changed
        )
        commit = tr.commit_staged(wt, description)
        with ws.db(write=True) as db:
            # checked again under the write lock: two agents may propose the same run at once
            dup = None if req.force else find_duplicate(db, chash, env_s, req.seed)
            if dup is None:
                run_id = _insert_run(
                    db, req, row, conf, prev_head, commit, chash, env_s, description
                )
        if dup is not None:
            tr.reset_to(wt, best["commit"] if best else prev_head)
            return _duplicate_result(ws, dup)
        tr.keep_ref(wt, run_id, commit)
        export = ws.agents_dir / req.agent / f"export-{run_id}"
        try:
            tr.export_commit(wt, commit, export)
            job_id = backend.submit(
                ws,
                export,
                env={**full_env, NO_ABORT_ENV: "1"} if req.no_abort else full_env,
                gpus=req.gpus or conf.gpus,
                seed=req.seed,
                agent=req.agent,
                run_id=run_id,
                time_limit_s=conf.time_limit_s,
            )
        except BaseException:
            with ws.db(write=True) as db:
                update_run(db, run_id, status=RunStatus.CRASH, tail="could not queue the job")
            tr.reset_to(wt, best["commit"] if best else prev_head)
            raise
        finally:
            shutil.rmtree(export, ignore_errors=True)
        with ws.db(write=True) as db:
            update_run(db, run_id, job_id=job_id)
            fields: dict[str, Any] = {"state": "training", "current_run_id": run_id}
            if masked_agent_env != agent_env:
                fields["env_json"] = json.dumps(masked_agent_env, sort_keys=True)
            update_agent(db, req.agent, last_seen_at=time.time(), **fields)
        if not req.wait:
            with ws.db(write=False) as db:
                return build_result(db, get_run(db, run_id), verdict="queued")
        try:
            wait_run(ws, run_id, on_progress=on_progress, poll_s=poll_s, should_stop=should_stop)
        except StopRequested:
            backend.cancel(ws, job_id)
            wait_run(ws, run_id, poll_s=poll_s, timeout_s=60.0, cancel_on_timeout=True)
        return finalize(ws, run_id)


def _take(ws: Workspace, req: ExpRequest, env: dict[str, str]) -> dict[str, str]:
    """``env`` as it may be written (secrets ``***``); their values kept for the agent."""
    try:
        return take_env(ws.root, agent_scope(req.agent), env, names=req.secrets)
    except ValueError as exc:  # a malformed [secrets] table in config.toml
        raise ExperimentError(str(exc)) from exc


def _insert_run(
    db: Db,
    req: ExpRequest,
    row: Row,
    conf: cfg.AgentsConfig,
    prev_head: str,
    commit: str,
    chash: str,
    env_s: str,
    description: str,
) -> int:
    """Record the run (queued) with its parent, base and reference flag."""
    parent = find_run_at_commit(db, req.agent, prev_head)
    return insert_run(
        db,
        agent=req.agent,
        parent_id=parent["id"] if parent else None,
        branch=tr.branch_of(req.agent),
        commit=commit,
        code_hash=chash,
        description=description,
        status=RunStatus.QUEUED,
        env_json=env_s,
        seed=req.seed,
        gpus=req.gpus or conf.gpus,
        base_pin_id=row["base_pin_id"],
        baseline=req.baseline or reference_run(db, req.agent, row["base_pin_id"]) is None,
    )


def _duplicate_result(ws: Workspace, dup: Row) -> ExpResult:
    with ws.db(write=False) as db:
        res = build_result(db, dup, verdict="duplicate")
    res.note = f"same code, environment and seed as run {dup['id']} ({dup['status']}); not rerun"
    res.duplicate_of = dup["id"]
    return res


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


def _tail(ws: Workspace, run: Row, lines: int = 50) -> str | None:
    """The last lines of the job's streamed log (the whole log is there once it ended),
    else whatever tail the daemon recorded on the run."""
    if run.get("job_id"):
        log = ws.job_dir(run["job_id"]) / "train.log"
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        if text.strip():
            return "\n".join(text.splitlines()[-lines:])
    return run.get("tail")


def finalize(ws: Workspace, run_id: int) -> ExpResult:
    """Judge a finished run, move the worktree accordingly, and post the result (idempotent)."""
    conf = cfg.load(ws.config_path)
    with ws.db(write=False) as db:
        run = find_run(db, run_id)
        if run is None:
            raise ExperimentError(f"no run {run_id}")
        if run["status"] in (RunStatus.KEEP, RunStatus.DISCARD) or (
            run["status"] in (RunStatus.CRASH, RunStatus.CANCELLED) and run.get("verdict_note")
        ):
            return build_result(db, run, verdict=run["status"])
        if run["status"] not in ENDED_RUN:
            raise ExperimentError(f"run {run_id} is still {run['status']}")
        evidence = abort_evidence(run) if run["status"] == RunStatus.ABORTED else None
        if evidence is not None and "note" in evidence:
            return build_result(db, run, verdict=run["status"])  # reported already
        agent = run["agent"]
        best, best_bpb = branch_start(db, agent, run["base_pin_id"])
        spread, _dof = seed_spread(seed_scores(db))
        row = get_agent(db, agent)
        pin = find_pin(db, run["base_pin_id"])
    if run["status"] == RunStatus.CANCELLED:
        verdict_status, note = RunStatus.CANCELLED.value, "cancelled before it finished"
    elif run["status"] == RunStatus.ABORTED:  # counted like a discard: back to the best
        ev = (evidence or {}).get("early_abort", {})
        verdict_status = RunStatus.ABORTED.value
        note = (
            "stopped early, hopeless against the base: " + abort_text(run_id, ev).split(": ", 1)[-1]
        )
    else:
        v = decide(
            run["val_bpb"] if run["status"] == RunStatus.DONE else None,
            best_bpb,
            conf.keep,
            spread,
            baseline=bool(run["baseline"]),
        )
        verdict_status, note = v.status, v.note
        if v.improvement is not None and best is not None and best_bpb != best["val_bpb"]:
            note += " against the base's mean"  # the branch is still on its reference
    fields: dict[str, Any] = {"status": verdict_status, "verdict_note": note}
    if verdict_status == RunStatus.ABORTED:  # the evidence stays, the note joins it
        fields["verdict_note"] = json.dumps({**(evidence or {}), "note": note})
    if run.get("finished_at") is None:
        fields["finished_at"] = time.time()
    if verdict_status == RunStatus.CRASH:
        fields["tail"] = _tail(ws, run)
    with ws.db(write=True) as db:
        update_run(db, run_id, **fields)
        run = get_run(db, run_id)
        res = build_result(db, run, verdict=verdict_status, start=(best, best_bpb))
        res.note = note
        text = feed_text(res)
        if verdict_status == RunStatus.ABORTED:
            text = f"run {run_id} ABORTED: {res.description} \u2014 {note}"
        post_feed(db, text, agent=agent, kind="result", run_id=run_id)
        update_agent(db, agent, state="thinking", current_run_id=None, last_seen_at=time.time())
    wt = worktree_of(ws, row)
    if wt.is_dir() and row["base_pin_id"] == run["base_pin_id"]:
        if verdict_status == RunStatus.KEEP:
            tr.reset_to(wt, run["commit"])
        else:
            target = best["commit"] if best else (pin["commit"] if pin else None)
            if target:
                tr.reset_to(wt, target)
    return res
