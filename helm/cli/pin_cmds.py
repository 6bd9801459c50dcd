"""``helm pin pr|run|file|show``: choose the base every agent builds on."""

from __future__ import annotations

import argparse
import sys

from helm import fmt
from helm.cli.common import (
    ID,
    LIMIT,
    CommandError,
    add_leaf,
    print_json,
    print_table,
    workspace,
)


def _show_pin(pin: dict, as_json: bool) -> None:
    if as_json:
        print_json(pin)
    else:
        print(f"pinned #{pin['id']}: {pin['kind']} {pin['ref']} (commit {pin['commit'][:10]})")


def _audit_gate(ws, args: argparse.Namespace):  # noqa: ANN001, ANN202
    """Stop a pin of a PR whose latest audit did not pass (asks on a terminal; --force skips)."""
    from helm.audit.fetch import pr_ref
    from helm.audit.store import pin_warning

    def gate(pr) -> None:  # noqa: ANN001
        warning = pin_warning(ws, pr_ref(args.repo, args.number), pr.head_sha)
        if warning is None:
            return
        if sys.stdin.isatty():
            print(f"warning: {warning}", file=sys.stderr)
            if input("pin it anyway? [y/N] ").strip().lower() in ("y", "yes"):
                return
            raise CommandError("not pinned")
        raise CommandError(
            f"{warning}; audit it first (helm audit pr {args.number} --reproduce) "
            "or pin anyway with --force"
        )

    return gate


def _pr(args: argparse.Namespace) -> int:
    from helm.agents.github import GitHubError
    from helm.agents.pins import pin_pr

    ws = workspace(args)
    try:
        pin = pin_pr(
            ws,
            args.number,
            repo=args.repo,
            path=args.path,
            keep_env=args.keep_env,
            confirm=None if args.force else _audit_gate(ws, args),
        )
    except GitHubError as exc:
        raise CommandError(str(exc)) from exc
    _show_pin(pin, args.json)
    return 0


def _run(args: argparse.Namespace) -> int:
    from helm.agents.pins import PinError, pin_run

    try:
        pin = pin_run(workspace(args), args.run)
    except PinError as exc:
        raise CommandError(str(exc)) from exc
    _show_pin(pin, args.json)
    return 0


def _file(args: argparse.Namespace) -> int:
    from helm.agents.pins import PinError, pin_file

    try:
        pin = pin_file(workspace(args), args.path, name=args.name, keep_env=args.keep_env)
    except PinError as exc:
        raise CommandError(str(exc)) from exc
    _show_pin(pin, args.json)
    return 0


def _show(args: argparse.Namespace) -> int:
    from helm.agents.pins import history

    rows = history(workspace(args), limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["PIN", "AGE", "KIND", "REF", "COMMIT", "BY", "NOTE"],
        [
            (
                p["id"],
                fmt.since(p["created_at"]),
                p["kind"],
                p["ref"],
                (p["commit"] or "")[:10],
                p["pinned_by"],
                (p["note"] or "")[:50],
            )
            for p in rows
        ],
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("pin", help="pin the base the agents build on")
    ss = s.add_subparsers(dest="pin_cmd", required=True, metavar="{pr,run,file,show}")
    p = add_leaf(ss, "pr", _pr, "pin a community pull request's script", listing=True)
    p.add_argument("number", type=ID)
    p.add_argument("--repo", default="openai/parameter-golf", help="OWNER/NAME")
    p.add_argument("--path", help="the script in the PR (default: its train_gpt.py)")
    p.add_argument("--keep-env", action="store_true", help="keep the base's run.env")
    p.add_argument("--force", action="store_true", help="pin even without a passing audit")
    p = add_leaf(ss, "run", _run, "pin one of our runs (its code and run.env)", listing=True)
    p.add_argument("run", type=ID)
    p = add_leaf(ss, "file", _file, "pin a local file as the base's train_gpt.py", listing=True)
    p.add_argument("path")
    p.add_argument("--name", default="train_gpt.py", help="its name in the task repo")
    p.add_argument("--keep-env", action="store_true", help="keep the base's run.env")
    p = add_leaf(ss, "show", _show, "the history of pins, newest first", listing=True)
    p.add_argument("--limit", type=LIMIT, default=50)
