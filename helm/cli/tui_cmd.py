"""``helm`` with no command: start the daemon if needed, then the TUI."""

from __future__ import annotations

import argparse

from helm.cli.common import CommandError, workspace


def run_tui(args: argparse.Namespace) -> int:
    try:
        from helm.tui.app import run_app
    except ModuleNotFoundError as exc:
        raise CommandError("the TUI is not built into this helm yet") from exc
    return run_app(workspace(args)) or 0
