"""``helm demo``: the embedded default (local CPU host, tiny data, N sweep agents)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from helm.cli import common
from helm.cli.common import CommandError, UsageError, add_leaf, bounded_float, print_json


@contextmanager
def _stoppable() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the demo cleanly (its agents, jobs and daemon), always.

    A shell without job control starts background commands with SIGINT *ignored*, and Python
    then leaves it ignored: a demo started from a script (``make demo &``, a test runner)
    would shrug off Ctrl-C and run its agents to the end of ``--duration``. The demo owns its
    processes, so it takes both signals for itself while it runs.
    """

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def _demo(args: argparse.Namespace) -> int:
    from helm.agents import demo

    if args.agents < 1:
        raise UsageError("--agents must be at least 1")
    if args.duration <= 0:
        raise UsageError("--duration must be positive")
    ws = common.workspace(args)
    quiet = args.json

    def log(msg: str) -> None:
        print(f"helm demo: {msg}", file=sys.stderr if quiet or not args.headless else sys.stdout,
              flush=True)  # fmt: skip

    run_app = None
    if not args.headless:
        try:
            from helm.tui.app import run_app
        except ModuleNotFoundError as exc:
            raise CommandError("the TUI is not built into this helm; use --headless") from exc
    handle = demo.start(ws, args.agents, log)
    try:
        with _stoppable():
            if run_app is not None:
                run_app(ws)
            else:
                log(f"running headless for {args.duration:.0f}s")
                demo.watch(ws, handle, args.duration, log)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if not args.keep_running:
            demo.stop(ws, handle, log)
    result = demo.summary(ws, handle)
    if args.json:
        print_json(result)
    else:
        print(demo.render(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_leaf(
        sub,
        "demo",
        _demo,
        "try helm offline: local CPU host, tiny data, N sweep agents (TUI or --headless)",
        listing=True,
    )
    p.add_argument("--agents", type=common.AGENT_COUNT, default=3, help="sweep agents (default 3)")
    p.add_argument("--headless", action="store_true", help="no TUI: run, then print a summary")
    p.add_argument(
        "--duration",
        type=bounded_float(1.0, 7 * 86400.0, "seconds"),
        default=180.0,
        help="headless seconds (default 180)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the agents and the daemon running at the end",
    )
