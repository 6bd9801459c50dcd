"""``helm promote``: from one good run to a validated records folder, in one flow.

prepare (no side effects: the plan, the target folder, a pre-flight validation of the run's
own log so that a run the rules refuse, say an artifact over the cap, is refused before any
GPU time is spent) -> execute (queue the missing seeds as new runs with the run's own code,
environment and GPU count; wait; stop at the first seed that fails; write the folder in
scratch; validate; move it into place; record a Submission; optionally commit it to a clone
of the competition repository). The CLI and the TUI wizard both call these two functions,
so the confirmation before spending GPU time sits between them in both.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helm.models.jobs import find_job
from helm.models.runs import canonical_env, get_run, insert_run, update_run
from helm.models.states import ENDED_RUN, FINISHED_RUN, IN_FLIGHT_RUN, RunStatus
from helm.models.submissions import FAILED, WRITTEN, insert_submission
from helm.promote import folder as fd
from helm.promote import sources as src
from helm.promote.plan import DEFAULT_SEEDS, Plan, PromoteError, SeedSlot, plan_promotion
from helm.workspace import Workspace

if TYPE_CHECKING:
    from golf_task.validate import Report

PROMOTE_PRIORITY = 10  # the operator's explicit request goes ahead of the agents' experiments


@dataclass
class PromoteOptions:
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    # record | non-record | None: record when the runs so far can pass its rules, else
    # non-record (``feasibility.resolve_track``)
    track: str | None = None
    name: str | None = None
    author: str | None = None
    github_id: str | None = None
    blurb: str | None = None
    sota: float | None = None  # None: golf_task.validate's DEFAULT_SOTA (record track)
    out: Path | None = None
    git: Path | None = None
    branch: str | None = None
    time_limit_s: float | None = None
    priority: int = PROMOTE_PRIORITY
    poll_s: float = 1.0
    date: str | None = None  # YYYY-MM-DD; default today (UTC)
    past_budget: bool = False  # queue the seeds even at 100% of the campaign budget


@dataclass
class Event:
    """Progress for the CLI and the wizard: one line of text, and the seed it concerns."""

    # queued | progress (a state change) | step (a tenth of the run) | done | validating |
    # written | git
    kind: str
    text: str
    seed: int | None = None


OnEvent = Callable[[Event], None]


@dataclass
class Prepared:
    plan: Plan
    opts: PromoteOptions
    name: str
    date: str
    target: Path
    sota: float | None  # what the validator tests against (None: no significance test)
    preflight: Report | None = None
    track_line: str = ""  # which track, and why (the default, as asked, or a warning)

    @property
    def track(self) -> str:
        """The track decided by ``prepare`` (the option itself may have been left to it)."""
        return self.opts.track or "record"

    @property
    def warning(self) -> str | None:
        """Set when the operator asked for a record the feasibility check rules out."""
        feas = self.plan.feasibility
        if self.track != "record" or feas is None or feas.reachable is not False:
            return None
        n = len(self.plan.to_queue)
        after = f" after {n} new run(s) have trained" if n else ""
        return f"a record is out of reach: the validator will refuse the folder{after}"

    def describe(self) -> str:
        """The plan, the feasibility verdict and the track: what --dry-run and the wizard show."""
        return f"{self.plan.describe()}\ntrack: {self.track_line}"


@dataclass
class PromoteResult:
    plan: Plan
    folder: Path
    report: Report
    submission_id: int
    data: dict[str, Any]
    git_commit: str | None = None
    new_runs: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "submission": self.submission_id,
            "val_bpb": self.data.get("val_bpb"),
            "val_bpb_std": self.data.get("val_bpb_std"),
            "seeds": self.data.get("seeds"),
            "new_runs": self.new_runs,
            "git_commit": self.git_commit,
            "plan": self.plan.to_json(),
            "report": self.report.to_json(),
        }


# Prepare ---------------------------------------------------------------------------------------
def _default_name(run: dict[str, Any]) -> str:
    agent = run.get("agent") or "helm"
    return fd.clean_name(f"{agent}_run{run['id']}")


def prepare(
    ws: Workspace, run_id: int, opts: PromoteOptions, *, require_identity: bool = True
) -> Prepared:
    """Everything that can be checked before spending GPU time; writes nothing that stays.

    ``require_identity=False`` (a dry run) plans without an author and GitHub id: asking
    what a promotion would cost should not need the submission's metadata yet.
    """
    if opts.track is not None and opts.track not in fd.TRACKS:
        raise PromoteError(f"unknown track {opts.track!r}: record or non-record", field="track")
    if not require_identity:  # placeholders for the pre-flight folder, which is thrown away
        opts = replace(
            opts, author=opts.author or "(dry run)", github_id=opts.github_id or "dry-run"
        )
    for key, what in (("author", "an author"), ("github_id", "a GitHub id")):
        if not (getattr(opts, key) or "").strip():
            raise PromoteError(
                f"{what} is required: a record's submission.json names it", field=key
            )
    if (opts.git is None) != (opts.branch is None):
        raise PromoteError("a clone and a branch go together", field="git")
    if opts.git is not None and opts.branch is not None:
        from helm.promote.gitexport import GitExportError, check_clone

        try:
            check_clone(Path(opts.git), opts.branch)
        except GitExportError as exc:
            raise PromoteError(str(exc)) from exc
    from golf_task.validate import DEFAULT_SOTA
    from helm.promote.feasibility import assess, resolve_track

    plan = plan_promotion(ws, run_id, opts.seeds, time_limit_s=opts.time_limit_s)
    # the record rules, judged from the runs already scored, before any GPU time is spent
    plan.feasibility = assess(ws, plan, opts.sota if opts.sota is not None else DEFAULT_SOTA)
    track, track_line = resolve_track(opts.track, plan.feasibility)
    opts = replace(opts, track=track)
    name = fd.clean_name(opts.name) if opts.name else _default_name(plan.run)
    date = opts.date or dt.datetime.now(dt.UTC).date().isoformat()
    root = opts.out if opts.out is not None else ws.submissions_dir
    target = fd.folder_path(Path(root), track, date, name)
    if target.exists():
        raise PromoteError(f"{target} exists: choose another name", field="name")
    sota = None
    if track == "record":
        sota = opts.sota if opts.sota is not None else DEFAULT_SOTA
    prepared = Prepared(plan, opts, name, date, target, sota, track_line=track_line)
    prepared.preflight = _preflight(ws, prepared)
    return prepared


def _seed_result(ws: Workspace, run: dict[str, Any], seed: int) -> fd.SeedResult:
    from golf_task.logs import parse_file

    path = src.log_path(ws, run)
    if path is None:
        raise PromoteError(f"run {run['id']} (seed {seed}) has no log to submit", seed=seed)
    return fd.SeedResult(seed, int(run["id"]), path, parse_file(path))


def _preflight(ws: Workspace, p: Prepared) -> Report:
    """Validate a folder made of the run's own log alone (no significance: one seed)."""
    run = p.plan.run
    result = _seed_result(ws, run, src.effective_seed(ws, run) or 0)
    with fd.scratch(p.target, beside=False) as work:
        _write(ws, p, work, [result], diff_text="")
        report, blocking = fd.validate(work, track=p.track, sota=None)
    if blocking:
        raise PromoteError(
            f"run {run['id']} is refused before any run is queued: {fd.failure_text(blocking)}",
            report=report,
        )
    return report


# Execute ---------------------------------------------------------------------------------------
def _queue(ws: Workspace, p: Prepared, slot: SeedSlot) -> int:
    """A new run (same commit, code hash, environment, GPUs) and its job; returns the run id."""
    from helm.remote.jobs import submit_job
    from helm.remote.secrets import agent_scope

    run = p.plan.run
    env = {k: v for k, v in src.run_env(run).items() if k not in src.NON_CONFIG_KEYS}
    with ws.db(write=True) as db:
        run_id = insert_run(
            db,
            agent=None,  # the operator's run, not an agent's: no branch verdict is asked
            parent_id=int(run["id"]),
            branch=run.get("branch"),
            commit=run.get("commit"),
            code_hash=run.get("code_hash"),
            description=f"promote {run['id']} seed {slot.seed}",
            env_json=canonical_env(env),
            seed=slot.seed,
            gpus=p.plan.gpus,
            base_pin_id=run.get("base_pin_id"),
        )
    if src.has_commit(ws, run.get("commit")):
        from helm.agents.taskrepo import keep_ref

        keep_ref(ws.task_dir, run_id, run["commit"])
    tmp = Path(tempfile.mkdtemp(prefix=f"promote-{run['id']}-", dir=ws.root))
    try:
        src.export_code(ws, run, tmp / "code")
        submit_job(
            ws,
            ws.store,
            tmp / "code",
            env=env,
            gpus=p.plan.gpus,
            seed=slot.seed,
            agent=None,
            run_id=run_id,
            time_limit_s=p.plan.time_limit_s,
            priority=p.opts.priority,
            # a secret the original run's agent held (stored masked) reaches the seed runs too
            secret_scopes=[agent_scope(run["agent"])] if run.get("agent") else [],
        )
    except BaseException:
        with ws.db(write=True) as db:
            update_run(db, run_id, status=RunStatus.CRASH.value, tail="could not queue the job")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run_id


STEP_EVENTS = 10  # step progress is told at every tenth of the run, not at every poll


def _state_text(seed: int, run: dict[str, Any], job: dict[str, Any] | None) -> str:
    """Where a seed's run stands (its run status, job state and host): a change is an event."""
    if job is None:
        return f"seed {seed}: run #{run['id']} {run['status']}"
    host = f" on {job['host']}" if job.get("host") else ""
    return f"seed {seed}: run #{run['id']} job #{job['id']} {job['state']}{host}"


def _step_text(seed: int, job: dict[str, Any] | None) -> tuple[int, str] | None:
    """(tenth of the run reached, its line) while a job reports steps, else None.

    The store's step moves with every streamed log line, so a line per change would repeat
    the same sentence hundreds of times per seed; a tenth is what a person reads as progress.
    """
    if job is None or job.get("step") is None or not job.get("total_steps"):
        return None
    step, total = int(job["step"]), int(job["total_steps"])
    tenth = min(STEP_EVENTS, step * STEP_EVENTS // total)
    bpb = f" val_bpb {job['val_bpb']:.4f}" if job.get("val_bpb") is not None else ""
    return tenth, f"seed {seed}: step {step}/{total} ({100 * step // total}%){bpb}"


def _cancel(ws: Workspace, run_ids: list[int]) -> None:
    from helm.remote.jobs import request_cancel

    for run_id in run_ids:
        with ws.db(write=False) as db:
            run = get_run(db, run_id)
        if run["status"] in IN_FLIGHT_RUN and run.get("job_id") is not None:
            request_cancel(ws, int(run["job_id"]))


def _wait(
    ws: Workspace, slots: list[SeedSlot], mine: list[int], p: Prepared, emit: OnEvent
) -> dict[int, dict[str, Any]]:
    """Poll until every seed's run has a result; the first failure cancels ours and raises."""
    pending = {s.seed: int(s.run_id) for s in slots if s.action != "reuse" and s.run_id}
    done: dict[int, dict[str, Any]] = {}
    last: dict[int, str] = {}  # the state last told, per seed
    tenths: dict[int, int] = {}  # the tenth of the run last told, per seed
    while pending:
        for seed, run_id in list(pending.items()):
            with ws.db(write=False) as db:
                run = get_run(db, run_id)
                job = find_job(db, run.get("job_id"))
            text = _state_text(seed, run, job)
            if last.get(seed) != text:
                last[seed] = text
                emit(Event("progress", text, seed))
            step = _step_text(seed, job) if run["status"] in IN_FLIGHT_RUN else None
            if step is not None and step[0] > tenths.get(seed, 0):
                tenths[seed] = step[0]
                emit(Event("step", step[1], seed))
            # ended without a score: crashed, cancelled, or finished but unscored
            if run["status"] in ENDED_RUN and (
                run["status"] not in FINISHED_RUN or run.get("val_bpb") is None
            ):
                _cancel(ws, [r for r in mine if r != run_id])
                tail = (run.get("tail") or "").strip().splitlines()
                why = f": {tail[-1][-200:]}" if tail else ""
                raise PromoteError(
                    f"seed {seed} failed (run #{run_id} {run['status']}{why}); no folder written",
                    seed=seed,
                )
            if run["status"] in FINISHED_RUN:
                emit(Event("done", f"seed {seed}: val_bpb {run['val_bpb']:.8f}", seed))
                done[seed] = run
                del pending[seed]
        if pending:
            time.sleep(p.opts.poll_s)
    return done


def check_budget(ws: Workspace, p: Prepared) -> None:
    """Seeds to queue at 100% of the campaign budget need ``past_budget`` (``--past-budget``):
    a promotion is the operator's explicit spend, but still one a budget should not hide."""
    from helm.agents.budget import BudgetReached, check_queue

    if not any(s.action == "queue" for s in p.plan.slots):
        return
    try:
        check_queue(ws, None, past_budget=p.opts.past_budget)
    except BudgetReached as exc:
        raise PromoteError(f"{exc}; --past-budget queues the seeds anyway") from exc


def execute(ws: Workspace, p: Prepared, on_event: OnEvent | None = None) -> PromoteResult:
    """Queue, wait, write, validate, move, record (see the module docstring)."""
    emit = on_event or (lambda _e: None)
    check_budget(ws, p)
    mine: list[int] = []
    try:
        for slot in p.plan.slots:
            if slot.action == "queue":
                slot.run_id = _queue(ws, p, slot)
                slot.status = RunStatus.QUEUED.value
                mine.append(slot.run_id)
                emit(Event("queued", f"seed {slot.seed}: queued run #{slot.run_id}", slot.seed))
        finished = _wait(ws, p.plan.slots, mine, p, emit)
    except KeyboardInterrupt:
        raise PromoteError(
            f"interrupted; run(s) {mine or '-'} keep running and a new `helm promote` reuses them"
        ) from None
    with ws.db(write=False) as db:
        runs = {
            s.seed: finished.get(s.seed) or get_run(db, int(s.run_id or 0)) for s in p.plan.slots
        }
    results = [_seed_result(ws, runs[s.seed], s.seed) for s in p.plan.slots]
    from helm.promote.diff import diff_against_base_pin

    change = diff_against_base_pin(ws, p.plan.run_id)
    diff_text = _change_text(change)
    emit(Event("validating", f"validating {p.target.name}"))
    with fd.scratch(p.target) as work:
        data = _write(ws, p, work, results, diff_text=diff_text)
        report, blocking = fd.validate(work, track=p.track, sota=p.sota)
        if blocking:
            sub = _record(ws, p, data, report, status=FAILED)
            raise PromoteError(
                f"validation failed (submission #{sub}), no folder written: "
                f"{fd.failure_text(blocking)}",
                report=report,
            )
        from helm.promote.readme import append_verdict

        append_verdict(work / "README.md", report, p.track)
        final = fd.move_into_place(work, p.target)
    sub_id = _record(ws, p, data, report, status=WRITTEN)
    emit(Event("written", f"wrote {final}"))
    result = PromoteResult(p.plan, final, report, sub_id, data, new_runs=mine)
    if p.opts.git is not None:
        from helm.promote.gitexport import GitExportError, commit_folder

        assert p.opts.branch is not None
        try:
            result.git_commit = commit_folder(
                Path(p.opts.git), final, p.opts.branch, message=_commit_message(data)
            )
        except GitExportError as exc:
            raise PromoteError(f"the folder is written at {final}, but {exc}") from exc
        emit(Event("git", f"committed on branch {p.opts.branch} ({result.git_commit[:10]})"))
    return result


def _change_text(change: Any) -> str:
    if change is None:
        return ""
    from helm.promote.readme import change_section

    return change_section(change)


def _hardware(run: dict[str, Any]) -> str:
    gpu = run.get("gpu_type")
    gpus = int(run.get("gpus") or 1)
    if not gpu or gpu == "cpu":
        return "CPU (helm's tiny configuration, not a competition run)" if gpu else "unknown"
    return f"{gpus}x{gpu}"


def _write(
    ws: Workspace, p: Prepared, work: Path, results: list[fd.SeedResult], *, diff_text: str
) -> dict[str, Any]:
    from helm.promote.readme import readme_text

    run = p.plan.run
    code = fd.code_to_ship(src.script_bytes(ws, run), [r.summary for r in results])
    facts = src.log_facts(ws, run)
    meta = {
        "author": p.opts.author,
        "github_id": p.opts.github_id,
        "name": p.name,
        "blurb": p.opts.blurb or (run.get("description") or p.name),
        "date": p.date,
        "track": p.track,
        "hardware": _hardware(run),
        "pytorch_version": facts.pytorch,
        "helm": {
            "run": run["id"],
            "commit": run.get("commit"),
            "code_hash": run.get("code_hash"),
            "code_form": code.form,
            "runs": {str(r.seed): r.run_id for r in results},
        },
    }
    data = fd.submission_json(results, meta=meta, bytes_code=len(code.script))
    readme = readme_text(data, results, run=run, env=src.run_env(run), change=diff_text)
    fd.write_files(work, code=code, results=results, data=data, readme=readme)
    return data


def _record(
    ws: Workspace, p: Prepared, data: dict[str, Any], report: Report, *, status: str
) -> int:
    with ws.db(write=True) as db:
        return insert_submission(
            db,
            run_id=p.plan.run_id,
            name=p.name,
            track=p.track,
            path=str(p.target),
            seeds=p.opts.seeds,
            status=status,
            report=report.to_json(),
            val_bpb=data.get("val_bpb"),
            val_bpb_std=data.get("val_bpb_std"),
        )


def _commit_message(data: dict[str, Any]) -> str:
    return f"Record: {data['name']} (val_bpb {data['val_bpb']:.4f}, {len(data['seeds'])} seeds)"
