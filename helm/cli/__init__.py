"""The ``helm`` command line: a thin layer over the packages, and the agents' only API.

Each command group lives in its own module with a ``register(subparsers)`` function; handlers
import what they need when they run, so that a call like ``helm feed post`` never pays for
torch, Textual or asyncssh. Errors become one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from helm.cli.common import CommandError, UsageError

# Modules that add command groups, in help order.
GROUP_MODULES = (
    "helm.cli.store_cmds",
    "helm.cli.daemon_cmds",
    "helm.cli.host_cmds",
    "helm.cli.job_cmds",
    "helm.cli.promote_cmds",
    "helm.cli.swarm_cmds",
    "helm.cli.exp_cmds",
    "helm.cli.pin_cmds",
    "helm.cli.audit_cmds",
    "helm.cli.demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helm",
        description="Command center for a swarm of Parameter Golf research agents. "
        "Without a command: the full-screen TUI.",
    )
    parser.add_argument(
        "--home", help="campaign folder (default: $HELM_HOME, else ~/.local/share/helm)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUP_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _error_classes() -> tuple[type[BaseException], ...]:
    from helm.models.hot import NotFound
    from helm.workspace import WorkspaceError

    classes: list[type[BaseException]] = [CommandError, NotFound, WorkspaceError, ValueError]
    if "helm.models.engine" in sys.modules:
        from helm.models.engine import StoreError

        classes.append(StoreError)
    if "sqlite3" in sys.modules:
        import sqlite3

        classes.append(sqlite3.Error)
    return tuple(classes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
        if isinstance(exc, _error_classes()):
            print(f"helm: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
