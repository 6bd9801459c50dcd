"""``helm diff`` and ``helm promote``: compare two runs; turn one into a records folder.

Progress goes to stderr and results to stdout, so ``--json`` output stays parseable while a
promotion waits on its seeds. Promotion asks before it spends GPU time (``--yes`` answers for
scripts; without a terminal and without ``--yes`` it refuses and says what it would queue).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from helm.cli.common import (
    ID,
    SEEDS,
    CommandError,
    UsageError,
    add_leaf,
    bounded_float,
    print_json,
    workspace,
)

if TYPE_CHECKING:
    from helm.workspace import Workspace


# diff -------------------------------------------------------------------------------------------
def _diff(args: argparse.Namespace) -> None:
    from helm.models.db import NotFound
    from helm.promote.diff import DiffError, diff_runs
    from helm.promote.render import render_diff

    if args.base and args.run_b is not None:
        raise UsageError("give RUN_B or --base, not both")
    try:
        d = diff_runs(workspace(args), args.run_a, args.run_b, base=args.base)
    except (DiffError, NotFound) as exc:  # NotFound: an unknown run, or its code or log
        raise CommandError(str(exc)) from exc
    except subprocess.CalledProcessError as exc:  # git refused (a commit gone from the repo)
        raise CommandError(f"git diff failed: {(exc.stderr or '').strip()}") from exc
    if args.json:
        print_json(d.to_json())
    else:
        print(render_diff(d, patch=not args.stat))


# promote ----------------------------------------------------------------------------------------
def _git_config(key: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "config", "--global", key], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _identity(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """--author/--github-id, else $HELM_AUTHOR/$HELM_GITHUB_ID, else git's global config."""
    author = args.author or os.environ.get("HELM_AUTHOR") or _git_config("user.name")
    github = args.github_id or os.environ.get("HELM_GITHUB_ID") or _git_config("github.user")
    return author, github


# The option a PromoteError names (``exc.field``), in this front end's words.
_FLAGS = {
    "author": "--author (or $HELM_AUTHOR, or git's user.name)",
    "github_id": "--github-id (or $HELM_GITHUB_ID, or git's github.user)",
    "name": "--name",
    "seeds": "--seeds",
    "track": "--track",
    "git": "--git CLONE --branch NAME",
}


def _failure(exc: Exception) -> CommandError:
    field = getattr(exc, "field", None)
    hint = f" (set {_FLAGS[field]})" if field in _FLAGS else ""
    return CommandError(f"{exc}{hint}")


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError(f"{question.rstrip('?')}: pass --yes to confirm (or --dry-run)")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _ensure_daemon(ws) -> None:  # noqa: ANN001 - Workspace, imported lazily
    from helm.daemon import DaemonError, start_detached

    try:
        pid, new = start_detached(ws)
    except DaemonError as exc:
        raise CommandError(f"the queued runs need the daemon: {exc}") from exc
    if new:
        print(f"started the daemon (pid {pid}) to run the queued seeds", file=sys.stderr)


def _dry_run_budget(ws: Workspace, to_queue: int, past_budget: bool) -> dict[str, Any] | None:
    """Where the budget stands for the plan, and whether the real promote would refuse it.

    The same scopes and the same rule as ``helm.promote.promote.check_budget`` (operator's
    jobs: ``check_queue(ws, None)``), read only: a dry run tells the feed no crossing. None
    without a ``[budget]``; ``text`` is empty while every scope is ok (nothing to say).
    """
    from helm.agents.budget import budget_state, load_budget

    budget = load_budget(ws)
    if budget.empty:
        return None
    with ws.db(write=False) as db:
        worst = budget_state(db, budget).binding(None)
    if worst is None:
        return None
    reached = worst.level == "stop" and to_queue > 0
    text = worst.line if worst.level != "ok" else ""
    if reached and past_budget:
        text += f"; --past-budget: the {to_queue} seed(s) would be queued anyway"
    elif reached:
        text += f"; the {to_queue} seed(s) to queue need --past-budget"
    return {**worst.to_json(), "refused": reached and not past_budget, "text": text}


def _promote(args: argparse.Namespace) -> int:
    from helm.models.db import NotFound
    from helm.promote.plan import PromoteError
    from helm.promote.promote import PromoteOptions, check_budget, execute, prepare
    from helm.promote.render import render_report

    if (args.git is None) != (args.branch is None):
        raise UsageError("--git and --branch go together")
    ws = workspace(args)
    author, github = _identity(args)
    opts = PromoteOptions(
        seeds=args.seeds,
        track=args.track,
        name=args.name,
        author=author,
        github_id=github,
        blurb=args.blurb,
        sota=args.sota,
        out=args.out,
        git=args.git,
        branch=args.branch,
        time_limit_s=args.time_limit,
        poll_s=args.poll,
        past_budget=args.past_budget,
    )
    try:
        prepared = prepare(ws, args.run, opts, require_identity=not args.dry_run)
    except (PromoteError, NotFound) as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            print(render_report(report), file=sys.stderr)
        raise _failure(exc) from exc
    plan = prepared.plan
    if args.dry_run:
        budget = _dry_run_budget(ws, len(plan.to_queue), args.past_budget)
        if args.json:
            print_json(
                {
                    "dry_run": True,
                    "folder": str(prepared.target),
                    "track": prepared.track,
                    **plan.to_json(),
                    "budget": budget,
                }
            )
        else:
            print(prepared.describe())
            if budget is not None and budget["text"]:
                print(budget["text"])
            print(f"would write {prepared.target}")
        return 0
    print(prepared.describe(), file=sys.stderr)
    try:  # refused before the question, not after it (execute checks again)
        check_budget(ws, prepared)
    except PromoteError as exc:
        raise _failure(exc) from exc
    if plan.to_queue:
        n = len(plan.to_queue)
        question = f"Queue {n} run(s), about {plan.gpu_hours:.3f} GPU-hours?"
        if prepared.warning:
            question = f"{prepared.warning}. {question}"
        if not _confirm(question, args.yes):
            print("nothing queued", file=sys.stderr)
            return 1
    if plan.to_queue or any(s.action == "wait" for s in plan.slots):
        _ensure_daemon(ws)

    def show(event) -> None:  # noqa: ANN001 - promote.Event
        print(event.text, file=sys.stderr, flush=True)

    try:
        result = execute(ws, prepared, show)
    except (PromoteError, NotFound) as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            if args.json:
                print_json({"ok": False, "error": str(exc), "report": report.to_json()})
            else:
                print(render_report(report), file=sys.stderr)
        raise CommandError(str(exc)) from exc
    if args.json:
        print_json({"ok": True, **result.to_json()})
    else:
        print(render_report(result.report))
        print(f"wrote {result.folder}")
        if result.git_commit:
            print(f"committed on branch {args.branch} ({result.git_commit[:12]}); push it yourself")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_leaf(
        sub,
        "diff",
        _diff,
        "compare two runs: code (+/- lines), environment, hyperparameters, results",
        listing=True,
    )
    p.add_argument("run_a", type=ID, metavar="RUN_A")
    p.add_argument("run_b", type=ID, nargs="?", metavar="RUN_B", help="default: RUN_A's parent")
    p.add_argument("--base", action="store_true", help="compare with the pinned base")
    p.add_argument("--stat", action="store_true", help="line counts only, no patch")

    p = add_leaf(
        sub,
        "promote",
        _promote,
        "re-run a run on several seeds and write a validated records folder",
        listing=True,
    )
    p.add_argument("run", type=ID, metavar="RUN")
    p.add_argument("--seeds", type=SEEDS, default=(42, 1337, 2025), help="default 42,1337,2025")
    p.add_argument(
        "--track",
        choices=("record", "non-record"),
        default=None,
        help="default: record when the runs so far can pass its rules, else non-record",
    )
    p.add_argument("--name", help="folder and record name (default <agent>_run<RUN>)")
    p.add_argument("--author", help="default $HELM_AUTHOR, else git's user.name")
    p.add_argument("--github-id", help="default $HELM_GITHUB_ID, else git's github.user")
    p.add_argument("--blurb", help="one paragraph on the idea (default: the run's description)")
    p.add_argument(
        "--sota",
        type=bounded_float(0.0, 100.0, "bpb"),
        help="val_bpb to beat by 0.005 nats (record track)",
    )
    p.add_argument(
        "--out", type=_path, help="folder to write records/ under (default submissions/)"
    )
    p.add_argument("--git", type=_path, metavar="CLONE", help="commit into this local clone")
    p.add_argument("--branch", help="new branch for --git (never pushed)")
    p.add_argument(
        "--time-limit",
        type=bounded_float(1.0, 7 * 86400.0, "seconds"),
        metavar="S",
        help="per seed (default: config)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be queued and cost")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before queueing")
    p.add_argument(
        "--past-budget",
        action="store_true",
        help="queue the seeds even when the campaign budget is reached",
    )
    p.add_argument(
        "--poll", type=bounded_float(0.01, 3600.0, "seconds"), default=1.0, help=argparse.SUPPRESS
    )


def _path(text: str):  # noqa: ANN202 - pathlib imported lazily by argparse type
    from pathlib import Path

    return Path(text).expanduser()
