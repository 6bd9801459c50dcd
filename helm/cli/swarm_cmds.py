"""``helm swarm up|down|ls``: the operator's view of the agents."""

from __future__ import annotations

import argparse
import os
import sys

from helm import fmt
from helm.cli.common import (
    AGENT_COUNT,
    SECRET_HELP,
    CommandError,
    UsageError,
    add_leaf,
    bounded_float,
    parse_env_secrets,
    parse_names,
    print_json,
    print_table,
    workspace,
)


def _up(args: argparse.Namespace) -> int:
    from helm.agents import swarm
    from helm.agents.drivers import DriverError
    from helm.models.agents import list_agents

    if args.n is not None and args.n < 1:
        raise UsageError("-n must be at least 1")
    if args.add is not None and (args.add < 1 or args.n is not None):
        raise UsageError("--add takes a count of at least 1 and excludes -n")
    ws = workspace(args)
    n = args.n
    env, secret_names = parse_env_secrets(args.env, args.secret)
    if args.add is not None:
        with ws.db(write=False) as db:
            have = sum(a["desired"] == "up" for a in list_agents(db, driver=args.driver))
        n = have + args.add
    try:
        names = swarm.up(
            ws, n, driver=args.driver, env=env, task_repo=args.task_repo, secrets=secret_names
        )
    except (DriverError, ValueError) as exc:  # ValueError: a malformed [secrets] table
        raise UsageError(str(exc)) from exc
    daemon = None
    if not args.no_daemon:
        from helm.daemon import DaemonError, start_detached

        try:
            daemon, _new = start_detached(ws)
        except DaemonError as exc:
            raise CommandError(str(exc)) from exc
    if args.driver == "claude" and os.geteuid() == 0:
        from helm.agents import config as cfg

        if not cfg.load(ws.config_path).run_as:
            print(
                "helm: warning: Claude Code refuses --dangerously-skip-permissions as root; "
                'set [agents] run_as = "USER" in config.toml',
                file=sys.stderr,
            )
    if args.json:
        print_json({"agents": names, "daemon_pid": daemon})
    else:
        print(f"up: {', '.join(names)} ({args.driver})")
        if daemon is None:
            print("no daemon started (--no-daemon): agents start when `helm daemon start` runs")
    return 0


def _down(args: argparse.Namespace) -> int:
    from helm.agents import swarm

    names = swarm.down(workspace(args), parse_names(args.agents), timeout_s=args.timeout)
    if args.json:
        print_json({"agents": names})
    else:
        print(f"down: {', '.join(names) or 'no agents'}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from helm.agents import swarm

    rows = swarm.listing(workspace(args))
    if args.json:
        print_json(rows)
        return 0

    def current(r: dict) -> str:
        c = r["current"]
        if not c:
            return "-"
        step = f" {c['step']}/{c['total_steps'] or '?'}" if c["step"] is not None else ""
        return f"run {c['run_id']} {c['status']}{step}: {c['description'][:40]}"

    print_table(
        ["AGENT", "DRIVER", "STATE", "CURRENT", "RUNS", "KEEPS", "BEST", "LAST SEEN"],
        [
            (
                r["name"],
                r["driver"][:24],
                r["state"],
                current(r),
                r["runs"],
                r["keeps"],
                fmt.num(r["best"], ".4f"),
                fmt.since(r["last_seen_at"]),
            )
            for r in rows
        ],
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("swarm", help="start, stop and list the research agents")
    ss = s.add_subparsers(dest="swarm_cmd", required=True, metavar="{up,down,ls}")
    p = add_leaf(ss, "up", _up, "bring N agents up (creating them as needed)", listing=True)
    p.add_argument(
        "-n", type=AGENT_COUNT, help="how many agents of this driver (default: all, or 1)"
    )
    p.add_argument("--add", type=AGENT_COUNT, metavar="N", help="N more agents of this driver")
    p.add_argument(
        "--driver",
        default="sweep",
        help="sweep, claude, codex, opencode, or a command template with {prompt}",
    )
    p.add_argument("--env", action="append", metavar="K=V", help="the agents' fixed env")
    p.add_argument("--secret", action="append", metavar="NAME", help=SECRET_HELP)
    p.add_argument("--task-repo", help="clone the task repository from this URL or path")
    p.add_argument("--no-daemon", action="store_true", help="do not start the daemon")
    p = add_leaf(
        ss, "down", _down, "stop agents (their jobs in flight are cancelled)", listing=True
    )
    p.add_argument("agents", nargs="?", help="comma-separated names (default: all)")
    p.add_argument(
        "--timeout",
        type=bounded_float(0.0, 86400.0, "seconds"),
        default=90.0,
        help="seconds to wait for each",
    )
    add_leaf(ss, "ls", _ls, "agents: state, current experiment, runs, keeps, best", listing=True)
