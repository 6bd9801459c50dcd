"""``helm`` with no command: start the daemon if needed, then the TUI.

Closing the TUI (``q``, or a hang-up: its terminal closed) leaves the daemon, the agents and
their jobs running by design: a campaign outlives the screen that watches it. The TUI says so
as it closes, with the commands that do stop them. (``helm demo`` is the exception: it stops
everything it started.)
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

from helm.cli.common import CommandError, workspace


def closing_note(home: str) -> str:
    home = shlex.quote(home)
    return (
        "helm: the TUI is closed; the daemon, the agents and their jobs keep running. "
        f"Reopen with `helm --home {home}`; stop them with `helm --home {home} swarm down` "
        f"and `helm --home {home} daemon stop`."
    )


def run_tui(args: argparse.Namespace) -> int:
    try:
        from helm.tui.app import run_app
    except ModuleNotFoundError as exc:
        raise CommandError("the TUI is not built into this helm yet") from exc
    ws = workspace(args)
    try:
        return run_app(ws) or 0
    finally:
        with contextlib.suppress(OSError, ValueError):  # no terminal left (a hang-up)
            print(closing_note(str(ws.root)), file=sys.stderr, flush=True)
