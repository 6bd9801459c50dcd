"""``helm exp run|wait``: the experiment protocol, from inside an agent's worktree."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from helm.cli.common import (
    ID,
    JOB_GPU_COUNTS,
    JOB_GPUS,
    SECRET_HELP,
    SEED,
    CommandError,
    UsageError,
    add_leaf,
    agent_name,
    bounded_float,
    parse_env_secrets,
    print_json,
    workspace,
)

BUDGET_EXIT = 3  # `helm exp run` refused: a budget is reached (1: failed, 2: usage)


def _agent_from_cwd(ws) -> str | None:  # noqa: ANN001
    """The agent whose worktree contains the current directory, if any."""
    here = Path.cwd().resolve()
    root = ws.worktrees_dir.resolve()
    if here == root or root not in here.parents:
        return None
    return here.relative_to(root).parts[0]


def _progress(stream):  # noqa: ANN001, ANN202
    def show(job: dict) -> None:
        parts = [f"job {job['id']} {job['state']}"]
        if job.get("host"):
            parts.append(f"on {job['host']}")
        if job.get("step") is not None:
            total = f"/{job['total_steps']}" if job.get("total_steps") else ""
            parts.append(f"step {job['step']}{total}")
        if job.get("train_loss") is not None:
            parts.append(f"loss {job['train_loss']:.4f}")
        if job.get("val_bpb") is not None:
            parts.append(f"val_bpb {job['val_bpb']:.4f}")
        if job.get("eta_s") is not None:
            parts.append(f"eta {job['eta_s']:.0f}s")
        print("  ".join(parts), file=stream, flush=True)

    return show


class _Stop:
    """SIGTERM/SIGINT during the wait: cancel the job and record the run as cancelled."""

    def __init__(self) -> None:
        self.stopped = False
        self.saved: dict[int, object] = {}

    def __enter__(self) -> _Stop:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def _handle(self, _s: int, _f: object) -> None:
        self.stopped = True

    def __call__(self) -> bool:
        return self.stopped


def _exp_run(args: argparse.Namespace) -> int:
    from helm.agents.budget import BudgetReached
    from helm.agents.experiment import ExperimentError, ExpRequest, run_experiment

    ws = workspace(args)
    agent = agent_name(args, required=False) or _agent_from_cwd(ws)
    if not agent:
        raise UsageError("no agent: run inside an agent worktree, or pass --agent / HELM_AGENT")
    env, secret_names = parse_env_secrets(args.env, args.secret)
    req = ExpRequest(
        agent=agent,
        description=args.message or "",
        gpus=args.gpus,
        seed=args.seed,
        env=env,
        secrets=secret_names,
        force=args.force,
        baseline=args.baseline,
        wait=args.wait,
        no_abort=args.no_abort,
        screen=args.screen,
    )
    stream = sys.stderr if args.json else sys.stdout
    try:
        with _Stop() as stop:
            res = run_experiment(
                ws, req, on_progress=_progress(stream), poll_s=args.poll, should_stop=stop
            )
    except BudgetReached as exc:  # its own exit code: an agent's script can stop on it
        print(f"helm: {exc}", file=sys.stderr)
        return BUDGET_EXIT
    except ExperimentError as exc:
        raise CommandError(str(exc)) from exc
    return _print_result(args, res)


def _print_result(args: argparse.Namespace, res) -> int:  # noqa: ANN001  (ExpResult)
    from helm.agents.report import summary_text

    if args.json:
        print_json(res.to_json())
    else:
        print(summary_text(res))
    return 0


def _exp_wait(args: argparse.Namespace) -> int:
    from helm.agents.experiment import ExperimentError, finalize, wait_run

    ws = workspace(args)
    stream = sys.stderr if args.json else sys.stdout
    try:
        wait_run(ws, args.run, on_progress=_progress(stream), poll_s=args.poll)
        res = finalize(ws, args.run)
    except ExperimentError as exc:
        raise CommandError(str(exc)) from exc
    return _print_result(args, res)


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("exp", help="experiments: commit, train, judge (agents use this)")
    es = e.add_subparsers(dest="exp_cmd", required=True, metavar="{run,wait}")
    p = add_leaf(
        es,
        "run",
        _exp_run,
        "commit this worktree's change, train it, keep or discard it, post the result",
        listing=True,
        agent=True,
    )
    p.add_argument("-m", "--message", help="what changed and why (default: the env diff)")
    p.add_argument(
        "--gpus",
        type=JOB_GPUS,
        choices=JOB_GPU_COUNTS,
        help="GPUs for the job (default: [agents] gpus)",
    )
    p.add_argument("--seed", type=SEED, help="SEED for the job, 0..2**32-1 (default: the script's)")
    p.add_argument("--env", action="append", metavar="K=V", help="set in run.env (repeatable)")
    p.add_argument("--secret", action="append", metavar="NAME", help=SECRET_HELP)
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the verdict (default) or return once queued",
    )
    p.add_argument("--force", action="store_true", help="run even if it is a duplicate")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="a reference run: kept unless it crashes; the branch's best is measured from it",
    )
    p.add_argument(
        "--no-abort",
        action="store_true",
        help="never stop this run early, however far behind its base it falls",
    )
    p.add_argument(
        "--screen",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run a short, small screen first and the full run only if it beats the base's "
        "screen by the noise margin (default: [agents.screen] enabled; see docs/AGENTS.md)",
    )
    p.add_argument("--poll", type=bounded_float(0.01, 3600.0, "seconds"), default=float(os.environ.get("HELM_POLL_S", 1.0)),
                   help=argparse.SUPPRESS)  # fmt: skip
    p = add_leaf(es, "wait", _exp_wait, "wait for a queued run and judge it", listing=True)
    p.add_argument("run", type=ID)
    p.add_argument(
        "--poll", type=bounded_float(0.01, 3600.0, "seconds"), default=1.0, help=argparse.SUPPRESS
    )
