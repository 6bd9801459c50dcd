"""Agent-facing commands over the store: feed, directives, runs, leaderboard, context, claims.

Handlers open one short transaction through ``Workspace.db`` (the fast stdlib path for the
default SQLite store) and print either a table or the documented JSON shape.
"""

from __future__ import annotations

import argparse
import time

from helm import fmt
from helm.cli.common import (
    ID,
    LIMIT,
    MAX_TEXT_BYTES,
    CommandError,
    add_leaf,
    agent_name,
    nonempty,
    parse_duration,
    parse_names,
    print_json,
    print_table,
    text_input,
    workspace,
)
from helm.models.feed import FEED_KINDS
from helm.models.states import RunStatus

_FILE_HELP = (
    "read the text from this file (- for stdin), for texts past the command line's 128 KiB; "
    f"at most {MAX_TEXT_BYTES // 1024} KiB"
)


# Feed ------------------------------------------------------------------------------------
def _feed_post(args: argparse.Namespace) -> None:
    from helm.models.feed import post_feed

    text = text_input(args.text, args.file, "feed text")
    agent = agent_name(args, required=False)
    with workspace(args).db(write=True) as db:
        post = post_feed(db, text, agent=agent, run_id=args.run, tags=args.tag or ())
    if args.json:
        print_json(post)
    else:
        print(f"posted #{post['id']}")


def _feed_ls(args: argparse.Namespace) -> None:
    from helm.models.feed import list_feed

    since = time.time() - parse_duration(args.since) if args.since else None
    with workspace(args).db(write=False) as db:
        posts = list_feed(db, since=since, limit=args.limit, kind=args.kind)
    if args.json:
        print_json(posts)
        return
    print_table(
        ["ID", "AGE", "AGENT", "KIND", "RUN", "TEXT"],
        [
            (p["id"], fmt.since(p["created_at"]), p["agent"], p["kind"], p["run_id"], p["text"])
            for p in posts
        ],
    )


# Directives ----------------------------------------------------------------------------------
def _directive_send(args: argparse.Namespace) -> None:
    from helm.models.directives import send_directive

    text = text_input(args.text, args.file, "directive text")
    with workspace(args).db(write=True) as db:
        d = send_directive(db, text, targets=parse_names(args.to))
    if args.json:
        print_json(d)
    else:
        who = ", ".join(x["agent"] for x in d["deliveries"]) or "no agents yet"
        print(f"directive #{d['id']} sent to {who}")


def _ack_summary(d: dict) -> str:
    n = len(d["deliveries"])
    acked = sum(1 for x in d["deliveries"] if x["acked_at"] is not None)
    return f"{acked}/{n}"


def _directive_ls(args: argparse.Namespace) -> None:
    from helm.models.directives import list_directives

    agent = agent_name(args, required=False)
    with workspace(args).db(write=False) as db:
        rows = list_directives(db, agent=agent, pending_only=args.pending)
    if args.json:
        print_json(rows)
        return
    print_table(
        ["ID", "AGE", "ACKED", "PENDING", "TEXT"],
        [
            (
                d["id"],
                fmt.since(d["created_at"]),
                _ack_summary(d),
                ",".join(x["agent"] for x in d["deliveries"] if x["acked_at"] is None) or "-",
                d["text"],
            )
            for d in rows
        ],
    )


def _directive_ack(args: argparse.Namespace) -> None:
    from helm.models.directives import ack_directive

    agent = agent_name(args)
    assert agent is not None
    with workspace(args).db(write=True) as db:
        ack = ack_directive(db, args.id, agent)
    if args.json:
        print_json(ack)
    else:
        print(f"acknowledged directive #{args.id} as {agent}")


# Runs and leaderboard ----------------------------------------------------------------------------
def _screen_cell(r: dict) -> str:
    """``screen`` for a screen (a short, small run, never ranked), ``via #15`` for a full run
    that came through screen 15, ``-`` for a run that was not screened."""
    if r.get("screen"):
        return "screen"
    return f"via #{r['screen_run_id']}" if r.get("screen_run_id") is not None else fmt.MISSING


def _print_runs(rows: list[dict], *, ranked: bool) -> None:
    headers = ["RANK"] if ranked else []
    headers += ["RUN", "AGENT", "STATUS", "VAL_BPB", "BYTES", "STEPS", "GPU-H", "$", "SCREEN"]
    headers += ["DESCRIPTION"]
    table = []
    for r in rows:
        cells = [r["rank"]] if ranked else []
        cells += [
            r["id"],
            r["agent"],
            r["status"],
            fmt.score(r["val_bpb"]),
            fmt.byte_count(r["bytes_total"]),
            r["steps"],
            fmt.gpu_hours(r["gpu_seconds"]),
            fmt.money(r["money"]),
            _screen_cell(r),
            r["description"][:60],
        ]
        table.append(cells)
    print_table(headers, table)


def _runs(args: argparse.Namespace) -> None:
    from helm.models.costs import with_usage
    from helm.models.runs import list_runs

    with workspace(args).db(write=False) as db:
        rows = with_usage(db, list_runs(db, agent=args.by, status=args.status, limit=args.limit))
    if args.json:
        print_json(rows)
        return
    _print_runs(rows, ranked=False)
    for r in rows:  # crashed runs keep their last log lines; show where it broke
        if r["status"] == RunStatus.CRASH and r["tail"] and args.tails:
            print(f"\n--- run {r['id']} (crash) ---\n{r['tail']}")


def _leaderboard(args: argparse.Namespace) -> None:
    from helm.models.costs import with_usage
    from helm.models.runs import leaderboard

    with workspace(args).db(write=False) as db:
        rows = with_usage(db, leaderboard(db, limit=args.limit))
    if args.json:
        print_json(rows)
    else:
        _print_runs(rows, ranked=True)


# Context and claims --------------------------------------------------------------------------------
def _context(args: argparse.Namespace) -> None:
    from helm.agents.budget import BudgetError, context_budget
    from helm.models.context import context

    agent = agent_name(args, required=False)
    ws = workspace(args)
    with ws.db(write=False) as db:
        ctx = context(db, agent)
        try:
            ctx["budget"] = context_budget(ws, db, agent)
        except BudgetError as exc:
            raise CommandError(str(exc)) from exc
    if args.json:
        print_json(ctx)
        return
    from helm.cli.context_text import render_context

    print(render_context(ctx))


def _claim_add(args: argparse.Namespace) -> None:
    from helm.models.agents import get_agent
    from helm.models.claims import add_claim

    agent = agent_name(args)
    assert agent is not None
    text = nonempty(args.text, "claim text")
    with workspace(args).db(write=True) as db:
        get_agent(db, agent)
        claim = add_claim(db, agent, text)
    if args.json:
        print_json(claim)
    else:
        print(f"claimed #{claim['id']} for 15 minutes")


def _claim_ls(args: argparse.Namespace) -> None:
    from helm.models.claims import live_claims

    with workspace(args).db(write=False) as db:
        claims = live_claims(db)
    if args.json:
        print_json(claims)
    else:
        print_table(
            ["ID", "AGENT", "AGE", "TEXT"],
            [(c["id"], c["agent"], fmt.since(c["created_at"]), c["text"]) for c in claims],
        )


def _init(args: argparse.Namespace) -> None:
    ws = workspace(args)
    ws.store  # noqa: B018  (creates or migrates the database)
    print(f"workspace ready at {ws.root}")


def register(sub: argparse._SubParsersAction) -> None:
    add_leaf(sub, "init", _init, "create the workspace layout and its store")

    feed = sub.add_parser("feed", help="the insight feed").add_subparsers(
        dest="feed_cmd", required=True, metavar="{post,ls}"
    )
    p = add_leaf(feed, "post", _feed_post, "post an insight to the feed", listing=True, agent=True)
    p.add_argument("text", nargs="?")
    p.add_argument("--file", metavar="PATH", help=_FILE_HELP)
    p.add_argument("--run", type=ID, help="the run this insight is about")
    p.add_argument("--tag", action="append", help="a tag (repeatable)")
    p = add_leaf(feed, "ls", _feed_ls, "list the feed, newest first", listing=True)
    p.add_argument("--since", help="only posts newer than this (30s, 15m, 1h, 2d)")
    p.add_argument("--kind", choices=FEED_KINDS, help="only this kind")
    p.add_argument("--limit", type=LIMIT, default=100)

    d = sub.add_parser("directive", help="instructions from the operator to agents")
    ds = d.add_subparsers(dest="directive_cmd", required=True, metavar="{send,ls,ack}")
    p = add_leaf(ds, "send", _directive_send, "send a directive to agents", listing=True)
    p.add_argument("text", nargs="?")
    p.add_argument("--file", metavar="PATH", help=_FILE_HELP)
    p.add_argument("--to", help="comma-separated agent names (default: every agent)")
    p = add_leaf(
        ds,
        "ls",
        _directive_ls,
        "list directives and who acknowledged them",
        listing=True,
        agent=True,
    )
    p.add_argument("--pending", action="store_true", help="only those not acknowledged by all")
    p = add_leaf(ds, "ack", _directive_ack, "acknowledge a directive", listing=True, agent=True)
    p.add_argument("id", type=ID)

    p = add_leaf(sub, "runs", _runs, "every run, newest first (crashes included)", listing=True)
    p.add_argument("--by", metavar="AGENT", help="only this agent's runs")
    p.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only runs in this status"
    )
    p.add_argument("--limit", type=LIMIT, default=200)
    p.add_argument("--tails", action="store_true", help="print crashed runs' last log lines")
    p = add_leaf(
        sub, "leaderboard", _leaderboard, "finished runs by val_bpb (lower is better)", listing=True
    )
    p.add_argument("--limit", type=LIMIT, default=50)

    add_leaf(
        sub,
        "context",
        _context,
        "all an agent needs before its next experiment",
        listing=True,
        agent=True,
    )

    c = sub.add_parser("claim", help="say what you are trying, so others do not duplicate it")
    cs = c.add_subparsers(dest="claim_cmd", required=True, metavar="{add,ls}")
    p = add_leaf(cs, "add", _claim_add, "claim an idea for 15 minutes", listing=True, agent=True)
    p.add_argument("text")
    add_leaf(cs, "ls", _claim_ls, "live claims", listing=True)
