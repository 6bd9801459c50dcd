"""``helm daemon start|stop|status``."""

from __future__ import annotations

import argparse
import time

from helm import fmt
from helm.cli.common import CommandError, add_leaf, bounded_float, print_json, workspace

EXIT_NOT_RUNNING = 3  # as LSB init scripts report a stopped service


def _start(args: argparse.Namespace) -> int:
    from helm.daemon import DaemonError, start_detached

    ws = workspace(args)
    try:
        pid, new = start_detached(ws)
    except DaemonError as exc:
        raise CommandError(str(exc)) from exc
    print(f"daemon started (pid {pid})" if new else f"daemon already running (pid {pid})")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from helm.daemon import DaemonError, stop

    try:
        pid = stop(workspace(args), timeout_s=args.timeout)
    except DaemonError as exc:
        raise CommandError(str(exc)) from exc
    print("daemon not running" if pid is None else f"daemon stopped (pid {pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from helm.daemon import DaemonPaths, is_running, read_state

    ws = workspace(args)
    pid = is_running(ws)
    state = read_state(ws) if pid is not None else {}
    info = {
        "running": pid is not None,
        "pid": pid,
        "started_at": state.get("started_at"),
        "heartbeat_at": state.get("heartbeat_at"),
        "services": state.get("services", []),
        "log": str(DaemonPaths.of(ws).log),
    }
    if args.json:
        print_json(info)
    elif pid is None:
        print("daemon not running")
    else:
        up = time.time() - (state.get("started_at") or time.time())
        print(
            f"daemon running (pid {pid}), up {int(up)}s, heartbeat {fmt.since(state.get('heartbeat_at'))} ago, "
            f"services: {', '.join(info['services']) or 'none'}"
        )
    return 0 if pid is not None else EXIT_NOT_RUNNING


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("daemon", help="the background process that runs jobs and agents")
    ds = d.add_subparsers(dest="daemon_cmd", required=True, metavar="{start,stop,status}")
    add_leaf(ds, "start", _start, "start the daemon for this workspace (no-op if running)")
    p = add_leaf(ds, "stop", _stop, "stop the daemon cleanly (jobs on boxes keep running)")
    p.add_argument(
        "--timeout",
        type=bounded_float(0.0, 86400.0, "seconds"),
        default=30.0,
        help="seconds to wait for it to stop",
    )
    add_leaf(ds, "status", _status, "is the daemon running (exit 3 if not)", listing=True)
