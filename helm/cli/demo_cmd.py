"""``helm demo``: the embedded default (local CPU host, tiny data, N sweep agents)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helm.cli import common
from helm.cli.common import CommandError, UsageError, add_leaf, bounded_float, print_json

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

HELP = """\
Try helm offline: a local CPU host, tiny data, N sweep agents (TUI or --headless).

The demo runs in a folder of its own, $XDG_DATA_HOME/helm-demo (else
~/.local/share/helm-demo), whatever HELM_HOME says, and ignores HELM_DB_URL there: nothing
it makes (its local host, pins, directives, runs) reaches your campaign. --home DIR wins
when given. Every demo starts afresh: the earlier demo's folder is deleted first (only a
folder helm marked as a demo's; any other is refused), so nothing an earlier demo left
behind, such as a pending directive, can act in this one. --resume continues the earlier
demo instead, with all it left. q, Ctrl-C, SIGTERM and a hang-up (the terminal closed,
tmux killed, SSH dropped) all stop its agents, their jobs and its daemon."""


@contextmanager
def _stoppable() -> Iterator[None]:
    """Ctrl-C, SIGTERM and a hang-up stop the demo cleanly (its agents, jobs and daemon).

    A shell without job control starts background commands with SIGINT *ignored*, and Python
    then leaves it ignored: a demo started from a script (``make demo &``, a test runner)
    would shrug off Ctrl-C and run its agents to the end of ``--duration``. And its agents
    and daemon run in sessions of their own (so that a real campaign outlives its terminal):
    a closed terminal would leave a demo's swarm training with nobody to see it. The demo
    owns its processes, so it takes all three signals for itself while it runs.

    Once one has come, SIGCONT is ignored: a hang-up brings SIGHUP and then SIGCONT, and
    Textual's driver answers SIGCONT by starting its TUI again (its Ctrl-Z resume). Landing
    while the TUI unwinds, that restarted an input thread nobody stopped, and the demo
    process never exited.
    """
    cont_before = signal.getsignal(signal.SIGCONT)

    def interrupt(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGCONT, _no_resume)
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
        if signal.getsignal(signal.SIGCONT) is _no_resume:
            signal.signal(signal.SIGCONT, cont_before)


def _no_resume(_signum: int, _frame: object) -> None:
    """SIGCONT while the demo stops: the process continues (the kernel sees to that); no TUI
    is started again."""


def _demo(args: argparse.Namespace) -> int:
    from helm.agents import demo

    if args.agents < 1:
        raise UsageError("--agents must be at least 1")
    if args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.resume and args.reset:
        raise UsageError("--resume and --reset exclude each other")
    quiet = args.json

    def log(msg: str) -> None:
        out = sys.stderr if quiet or not args.headless else sys.stdout
        # the terminal may have hung up: stopping must go on regardless
        with contextlib.suppress(OSError, ValueError):
            print(f"helm demo: {msg}", file=out, flush=True)

    explicit = getattr(args, "home", None) is not None
    root = Path(args.home) if explicit else demo.default_root()
    try:
        ws = demo.prepare(root, resume=args.resume, reset=args.reset, explicit=explicit, log=log)
    except demo.DemoFolderError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"cannot prepare the demo folder {root}: {exc}") from exc
    # the daemon and the agents inherit these: the demo's store is its own SQLite file
    os.environ["HELM_HOME"] = str(ws.root)
    if not explicit and os.environ.pop("HELM_DB_URL", None):
        log("HELM_DB_URL ignored: the demo keeps its records in its own folder")

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
    with contextlib.suppress(OSError, ValueError):  # no terminal left to print to (a hang-up)
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
    p.description = HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the earlier demo (its runs, pins and pending directives) instead of "
        "starting afresh",
    )
    p.add_argument(
        "--reset",
        action="store_true",
        help="start afresh (the default), and refuse rather than run in a --home folder "
        "that is not a demo's",
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
