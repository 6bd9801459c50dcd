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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helm.agents import budget as bud
from helm.agents import config as cfg
from helm.agents import screen
from helm.agents import taskrepo as tr
from helm.agents.abort_service import NO_ABORT_ENV, abort_evidence, abort_text
from helm.agents.jobq import (
    Backend,
    Candidate,
    DuplicateRun,
    ExperimentError,
    Progress,
    RemoteBackend,
    StopRequested,
    queue_run,
    wait_run,
)
from helm.agents.keeprule import decide, seed_spread
from helm.agents.report import ExpResult, branch_start, build_result, feed_text
from helm.models.agents import get_agent, update_agent
from helm.models.base import pin_label
from helm.models.db import Db, Row
from helm.models.feed import post_feed
from helm.models.pins import find_pin, latest_pin
from helm.models.runs import (
    branch_best,
    canonical_env,
    find_duplicate,
    find_run,
    find_run_at_commit,
    get_run,
    in_flight_runs,
    reference_run,
    seed_scores,
    update_run,
)
from helm.models.states import ENDED_RUN, RunStatus
from helm.remote.secrets import SecretStore, agent_scope, scrub, take_env
from helm.workspace import Workspace

__all__ = [
    "Backend",
    "ExpRequest",
    "ExperimentError",
    "RemoteBackend",
    "StopRequested",
    "finalize",
    "move_onto_base",
    "run_experiment",
    "wait_run",
]


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
    screen: bool | None = None  # screen first; None: as [agents.screen] enabled says


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
    conf = cfg.load(ws.config_path)
    backend = backend or RemoteBackend()
    with agent_lock(ws, req.agent):
        # before anything moves: a refused run leaves the worktree (the agent's edit) as is
        bud.check_queue(ws, req.agent)  # BudgetReached at 100%; posts each 80%/100% once
        move_onto_base(ws, req.agent)
        cand = _commit(ws, req)
        if isinstance(cand, ExpResult):
            return cand
        screen_id = None
        if screen.wanted(req.screen, req.baseline, conf.screen):
            gate = screen.screen_first(
                ws,
                cand,
                seed=req.seed,
                backend=backend,
                conf=conf,
                full_gpus=req.gpus or conf.gpus,
                on_progress=on_progress,
                poll_s=poll_s,
                should_stop=should_stop,
            )
            if gate.result is not None:  # screened out, crashed or cancelled: no full run
                cand.restore()
                return gate.result
            screen_id = gate.screen_run_id
            try:  # the screens may have spent what was left
                bud.check_queue(ws, req.agent)
            except bud.BudgetReached:
                cand.uncommit()
                raise
        return _run_full(ws, req, cand, conf, backend, screen_id, on_progress, poll_s, should_stop)


def _commit(ws: Workspace, req: ExpRequest) -> Candidate | ExpResult:
    """Write run.env, commit the worktree's change and describe it; a duplicate's result
    instead when this code, environment and seed ran already (the worktree then goes back)."""
    from git import Repo

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
    if masked_agent_env != agent_env:
        with ws.db(write=True) as db:
            update_agent(db, req.agent, env_json=json.dumps(masked_agent_env, sort_keys=True))
    full_env = {**masked_agent_env, **run_env}
    chash = tr.code_hash(wt, tree)
    with ws.db(write=False) as db:
        dup = None if req.force else find_duplicate(db, chash, canonical_env(full_env), req.seed)
        best = branch_best(db, req.agent, row["base_pin_id"])
    if dup is not None:
        tr.reset_to(wt, best["commit"] if best else prev_head)
        return _duplicate_result(ws, dup)
    description = scrub(
        req.description.strip(),
        SecretStore(ws.root).get(agent_scope(req.agent)).values(),
    ) or _describe(tr.parse_env(tr.show_file(wt, prev_head, tr.ENV_FILE) or ""), run_env, changed)
    commit = tr.commit_staged(wt, description)
    return Candidate(
        req.agent,
        wt,
        prev_head,
        commit,
        chash,
        full_env,
        masked_agent_env,
        description,
        best,
        row["base_pin_id"],
    )


def _run_full(
    ws: Workspace,
    req: ExpRequest,
    cand: Candidate,
    conf: cfg.AgentsConfig,
    backend: Backend,
    screen_id: int | None,
    on_progress: Progress | None,
    poll_s: float,
    should_stop: Callable[[], bool] | None,
) -> ExpResult:
    """Queue the full run of the candidate, wait for it and judge it by the keep rule."""
    env_s = canonical_env(cand.env)

    def fields(db: Db) -> dict[str, Any]:
        parent = find_run_at_commit(db, req.agent, cand.prev_head)
        return {
            "parent_id": parent["id"] if parent else None,
            "branch": tr.branch_of(req.agent),
            "code_hash": cand.code_hash,
            "description": cand.description,
            "env_json": env_s,
            "base_pin_id": cand.base_pin_id,
            "baseline": req.baseline or reference_run(db, req.agent, cand.base_pin_id) is None,
            "screen_run_id": screen_id,
        }

    def duplicate(db: Db) -> Row | None:
        # checked again under the write lock: two agents may propose the same run at once
        return None if req.force else find_duplicate(db, cand.code_hash, env_s, req.seed)

    try:
        run_id, job_id = queue_run(
            ws,
            backend,
            cand.wt,
            commit=cand.commit,
            env={**cand.env, NO_ABORT_ENV: "1"} if req.no_abort else cand.env,
            gpus=req.gpus or conf.gpus,
            seed=req.seed,
            agent=req.agent,
            time_limit_s=conf.time_limit_s,
            fields=fields,
            duplicate=duplicate,
        )
    except DuplicateRun as dup:
        cand.restore()
        return _duplicate_result(ws, dup.row)
    except BaseException:
        cand.restore()
        raise
    with ws.db(write=True) as db:
        update_agent(
            db, req.agent, last_seen_at=time.time(), state="training", current_run_id=run_id
        )
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


def _duplicate_result(ws: Workspace, dup: Row) -> ExpResult:
    with ws.db(write=False) as db:
        res = build_result(db, dup, verdict="duplicate")
    res.note = f"same code, environment and seed as run {dup['id']} ({dup['status']}); not rerun"
    res.duplicate_of = dup["id"]
    return res


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
