"""The ``helm`` command line: a thin layer over the packages, and the agents' only API.

Each command group lives in its own module with a ``register(subparsers)`` function; handlers
import what they need when they run, so that a call like ``helm feed post`` never pays for
torch, Textual or asyncssh. Errors become one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from helm.cli.common import CommandError, Parser, UsageError, bad_utf8

# Modules that add command groups, in help order, with the top-level commands each adds.
# The names let a call build only its own group's parser: argparse takes ~50 ms to build all
# of them, a tenth of an agent's budget per call. tests/helm/cli/test_parser.py keeps this
# table true to what each module registers.
GROUPS: dict[str, tuple[str, ...]] = {
    "helm.cli.store_cmds": ("init", "feed", "directive", "runs", "leaderboard", "context", "claim"),
    "helm.cli.cost_cmds": ("improvements", "directives"),
    "helm.cli.daemon_cmds": ("daemon",),
    "helm.cli.host_cmds": ("host",),
    "helm.cli.job_cmds": ("job",),
    "helm.cli.promote_cmds": ("diff", "promote"),
    "helm.cli.swarm_cmds": ("swarm",),
    "helm.cli.exp_cmds": ("exp",),
    "helm.cli.pin_cmds": ("pin",),
    "helm.cli.audit_cmds": ("audit",),
    "helm.cli.demo_cmd": ("demo",),
    "helm.cli.serve_cmd": ("serve",),
}
GROUP_MODULES = tuple(GROUPS)


def _module_for(argv: Sequence[str]) -> str | None:
    """The one group module a command line needs, or None (help, TUI, unknown: build all)."""
    args = list(argv)
    while args[:1] == ["--home"] and len(args) >= 2:
        args = args[2:]
    if args and args[0].startswith("--home="):
        args = args[1:]
    if not args:
        return None
    return next((m for m, names in GROUPS.items() if args[0] in names), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the group that line needs (the full one otherwise)."""
    parser = Parser(  # its subparsers are Parsers too: every usage error is one line
        prog="helm",
        description="Command center for a swarm of Parameter Golf research agents. "
        "Without a command: the full-screen TUI.",
    )
    parser.add_argument(
        "--home", help="campaign folder (default: $HELM_HOME, else ~/.local/share/helm)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    only = _module_for(argv) if argv is not None else None
    for name in (only,) if only else GROUP_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _error_classes() -> tuple[type[BaseException], ...]:
    from helm.models.db import NotFound
    from helm.workspace import WorkspaceError

    return (CommandError, NotFound, WorkspaceError, ValueError)


def _store_failure(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line for a store fault (empty, read-only, corrupt, locked, newer ...), or None."""
    from helm.models.db import BUSY_TIMEOUT_S
    from helm.models.errors import store_failure

    if os.environ.get("HELM_DB_URL"):
        where = "at HELM_DB_URL"
    else:
        from helm.workspace import Workspace

        where = str(Workspace(getattr(args, "home", None)).db_path)
    return store_failure(exc, where, busy_timeout_s=BUSY_TIMEOUT_S)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bad = bad_utf8(argv)
    if bad is not None:
        print(f"helm: {bad}", file=sys.stderr)
        return 2
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    try:
        if handler is None:
            if args.command is not None:  # a group without its subcommand
                parser.parse_args([args.command, "--help"])
            from helm.cli.tui_cmd import run_tui

            return run_tui(args) or 0
        return handler(args) or 0
    except UsageError as exc:
        print(f"helm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("helm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        line = _store_failure(exc, args)
        if line is None and isinstance(exc, _error_classes()):
            line = str(exc)
        if line is None:
            raise
        print(f"helm: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
