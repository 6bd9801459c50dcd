"""``helm job run|ls|show|logs|cancel``: one script on the fleet, the way a person runs it.

``job run`` queues a folder as a job (and a run, so the result shows in ``helm runs``); the
daemon does the rest. Handlers import the remote package only when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from helm import fmt
from helm.cli.common import (
    ID,
    JOB_GPU_COUNTS,
    JOB_GPUS,
    LIMIT,
    PRIORITY,
    PRIORITY_RANGE,
    SECRET_HELP,
    SEED,
    CommandError,
    UsageError,
    add_leaf,
    agent_name,
    parse_duration,
    parse_env_secrets,
    print_json,
    print_table,
    workspace,
)
from helm.models.states import JobState

if TYPE_CHECKING:
    from helm.models.tables import Job
    from helm.workspace import Workspace

_JSON_FIELDS = (
    "id",
    "state",
    "agent",
    "run_id",
    "host",
    "gpus",
    "seed",
    "priority",
    "attempts",
    "max_attempts",
    "cancel_requested",
    "step",
    "total_steps",
    "train_loss",
    "val_bpb",
    "eta_s",
    "exit_code",
    "error",
    "pid",
    "backend_id",
    "queue_reason",
    "remote_dir",
    "time_limit_s",
    "queued_at",
    "staged_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
)


def job_dict(job: Mapping[str, Any], ws: Workspace | None = None) -> dict:
    """The JSON shape of a job row (its environment is stored with secrets already masked)."""
    out = {k: job[k] for k in _JSON_FIELDS}
    out["cancel_requested"] = bool(out["cancel_requested"])
    out["gpu_ids"] = json.loads(job["gpu_ids_json"] or "[]")
    out["env"] = json.loads(job["env_json"] or "{}")
    if ws is not None:
        out["log"] = str(ws.job_dir(job["id"]) / "train.log")
    return out


def job_note(job: Mapping[str, Any]) -> str:
    """The NOTE column: why a job waits in its cluster's queue, else its last error."""
    if job.get("queue_reason"):
        from helm.remote.slurm_words import queue_note

        return queue_note(job["queue_reason"])
    return job["error"] or "-"


def _ensure_daemon(ws) -> None:  # noqa: ANN001
    from helm.daemon import DaemonError, start_detached

    try:
        start_detached(ws)
    except DaemonError as exc:
        raise CommandError(f"job queued, but the daemon did not start: {exc}") from exc


def _progress_line(job: Job) -> str:
    parts = [f"job {job.id} {job.state}"]
    if job.host:
        parts.append(f"on {job.host}")
    if job.step is not None:
        parts.append(f"step {job.step}/{job.total_steps or '?'}")
    if job.train_loss is not None:
        parts.append(f"loss {job.train_loss:.4f}")
    if job.eta_s:
        parts.append(f"eta {job.eta_s:.0f}s")
    return " ".join(parts)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from helm.models.db import db_of
    from helm.models.runs import insert_run
    from helm.models.states import JobState
    from helm.remote.jobs import submit_job, wait_for_job
    from helm.remote.secrets import agent_scope, classify, scrub

    src = Path(args.dir)
    if not src.is_dir():
        raise UsageError(f"{args.dir} is not a folder")
    env, secret_names = parse_env_secrets(args.env, args.secret)
    agent = agent_name(args, required=False)
    ws = workspace(args)
    limit = parse_duration(args.time_limit)
    try:
        scopes = [agent_scope(agent)] if agent else []
        shown, hidden = classify(ws.root, env, names=secret_names, scopes=scopes)  # as the job's
        with ws.store.write() as s:  # the run and its job appear together, or not at all
            run_id = insert_run(
                db_of(s),
                agent=agent,
                description=scrub(args.m or f"job {args.dir}", hidden.values()),
                env_json=json.dumps(shown),
                seed=args.seed,
                gpus=args.gpus,
            )
            job = submit_job(
                ws,
                s,
                src,
                env=env,
                gpus=args.gpus,
                seed=args.seed,
                agent=agent,
                run_id=run_id,
                time_limit_s=limit,
                priority=args.priority,
                host=args.host,
                secret_names=secret_names,
            )
            out = job_dict(job.model_dump(), ws)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not args.no_daemon:
        _ensure_daemon(ws)
    if not args.wait:
        if args.json:
            print_json(out)
        else:
            print(f"queued job {out['id']} (run {out['run_id']})")
        return 0
    if not args.json:
        print(f"queued job {out['id']} (run {out['run_id']}); waiting")

    def show(j: Job) -> None:
        if not args.json:
            print(_progress_line(j), flush=True)

    final = wait_for_job(ws, out["id"], on_progress=show, poll_s=0.5)
    if args.json:
        print_json(job_dict(final.model_dump(), ws))
    if final.state != JobState.SUCCEEDED:
        raise CommandError(f"job {final.id} {final.state}: {final.error or 'no reason recorded'}")
    if not args.json:
        print(
            f"job {final.id} succeeded"
            + (f": val_bpb {fmt.score(final.val_bpb)}" if final.val_bpb is not None else "")
        )
    return 0


def _ls(args: argparse.Namespace) -> None:
    from helm.models.jobs import list_jobs

    ws = workspace(args)
    with ws.db(write=False) as db:
        jobs = list_jobs(db, state=args.state, live_only=not args.all, limit=args.limit)
    if args.json:
        print_json([job_dict(j, ws) for j in jobs])
        return
    print_table(
        ["JOB", "STATE", "AGENT", "RUN", "HOST", "GPUS", "STEP", "LOSS", "ETA", "AGE", "NOTE"],
        [
            (
                j["id"],
                j["state"],
                j["agent"],
                j["run_id"],
                j["host"],
                j["gpus"],
                f"{j['step']}/{j['total_steps'] or '?'}" if j["step"] is not None else "-",
                fmt.num(j["train_loss"], ".4f"),
                fmt.num(j["eta_s"], ".0f"),
                fmt.since(j["queued_at"]),
                job_note(j)[:60],
            )
            for j in jobs
        ],
    )


def _show(args: argparse.Namespace) -> None:
    from helm.models.jobs import get_job, job_events

    ws = workspace(args)
    with ws.db(write=False) as db:
        job = get_job(db, args.id)
        events = job_events(db, args.id)
    out = job_dict(job, ws)
    out["events"] = [
        {"state": e["state"], "host": e["host"], "message": e["message"], "at": e["created_at"]}
        for e in events
    ]
    if args.json:
        print_json(out)
        return
    for key in ("id", "state", "host", "gpu_ids", "agent", "run_id", "attempts", "error", "log"):
        print(f"{key:10} {out[key]}")
    if out["backend_id"]:
        print(f"{'slurm job':10} {out['backend_id']}  {job_note(out)}")
    print(f"{'env':10} {out['env']}")
    for e in out["events"]:
        print(
            f"  {fmt.since(e['at']):>4} ago  {e['state']:10} {e['host'] or '-':12} {e['message']}"
        )


def _job_state(ws: Workspace, job_id: int) -> str:
    from helm.models.jobs import get_job

    with ws.db(write=False) as db:
        return str(get_job(db, job_id)["state"])


def _logs(args: argparse.Namespace) -> None:
    from helm.models.states import TERMINAL_JOB

    ws = workspace(args)
    state = _job_state(ws, args.id)
    path = ws.job_dir(args.id) / "train.log"
    offset = 0
    out = sys.stdout.buffer
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        if data:
            out.write(data)
            out.flush()
            offset += len(data)
        if not args.follow or state in TERMINAL_JOB:
            return
        time.sleep(0.5)
        state = _job_state(ws, args.id)


def _cancel(args: argparse.Namespace) -> None:
    from helm.models.states import TERMINAL_JOB, JobState
    from helm.remote.jobs import request_cancel

    job = request_cancel(workspace(args), args.id)
    if job.state == JobState.CANCELLED:
        print(f"job {job.id} cancelled")
    elif job.state in TERMINAL_JOB:
        print(f"job {job.id} already {job.state}")
    else:
        print(f"job {job.id}: cancel requested (the daemon stops it: TERM, then KILL)")


def register(sub: argparse._SubParsersAction) -> None:
    j = sub.add_parser("job", help="training jobs on the fleet")
    js = j.add_subparsers(dest="job_cmd", required=True, metavar="{run,ls,show,logs,cancel}")
    p = add_leaf(
        js,
        "run",
        _run,
        "queue the files of DIR as a job (entry train_gpt.py)",
        listing=True,
        agent=True,
    )
    p.add_argument("dir")
    p.add_argument("--gpus", type=JOB_GPUS, default=1, choices=JOB_GPU_COUNTS)
    p.add_argument("--seed", type=SEED, help="SEED for the job, 0..2**32-1")
    p.add_argument("--env", action="append", metavar="K=V")
    p.add_argument("--secret", action="append", metavar="NAME", help=SECRET_HELP)
    p.add_argument("--host", help="run only on this host")
    p.add_argument(
        "--priority",
        type=PRIORITY,
        default=0,
        help=f"higher runs first, {PRIORITY_RANGE[0]}..{PRIORITY_RANGE[1]} (default 0; "
        "promotion uses 10)",
    )
    p.add_argument("--time-limit", default="30m", help="kill and fail after this (default 30m)")
    p.add_argument("-m", metavar="DESC", help="description of the run")
    p.add_argument(
        "--wait", action="store_true", help="wait and show progress; exit 1 unless it succeeds"
    )
    p.add_argument("--no-daemon", action="store_true", help="do not start the daemon")
    p = add_leaf(js, "ls", _ls, "queued and running jobs (--all: every job)", listing=True)
    p.add_argument("--all", action="store_true")
    p.add_argument("--state", choices=[s.value for s in JobState])
    p.add_argument("--limit", type=LIMIT, default=50)
    p = add_leaf(js, "show", _show, "one job with its history", listing=True)
    p.add_argument("id", type=ID)
    p = add_leaf(js, "logs", _logs, "print a job's streamed log")
    p.add_argument("id", type=ID)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p = add_leaf(js, "cancel", _cancel, "stop a job (TERM to its process group, then KILL)")
    p.add_argument("id", type=ID)
