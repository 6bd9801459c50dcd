"""``helm audit pr|dir|ls|show``: is a community PR real before anyone builds on it?

An audit that ran exits 0 whatever its verdict (the verdict is the output, ``--json`` for
scripts); a PR that cannot be fetched or a folder that does not exist exits 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from helm import fmt
from helm.cli.common import (
    ID,
    JOB_GPU_COUNTS,
    JOB_GPUS,
    SEEDS,
    CommandError,
    UsageError,
    add_leaf,
    bounded_float,
    parse_duration,
    parse_env,
    print_json,
    print_table,
    workspace,
)

_MARKS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def _rerun(args: argparse.Namespace):  # -> RerunOptions | None (import kept lazy)
    from helm.audit.audit import RerunOptions

    if not args.reproduce:
        if args.seeds or args.env:
            raise UsageError("--seeds and --env apply to --reproduce")
        return None
    return RerunOptions(
        seeds=list(args.seeds) if args.seeds else None,
        env=parse_env(args.env),
        gpus=args.gpus,
        host=args.host,
        time_limit_s=parse_duration(args.time_limit),
        poll_s=args.poll,
    )


def _progress(args: argparse.Namespace):  # noqa: ANN202
    def say(msg: str) -> None:
        print(f"helm audit: {msg}", file=sys.stderr, flush=True)

    return say


def _print(ev: dict[str, Any]) -> None:
    pr = ev.get("pr") or {}
    head = f"audit {ev['ref']}"
    if pr:
        head += f": {pr.get('title') or ''} by {pr.get('author')} at {str(pr.get('head_sha'))[:10]}"
    print(head)
    print(f"  folder {ev['folder']} ({ev['mode']})")
    width = max((len(f["name"]) for f in ev["findings"]), default=10)
    for f in ev["findings"]:
        print(f"  {_MARKS[f['status']]}  {f['name']:<{width}}  {f['message']}")
    if ev.get("skipped"):
        print(f"  not checked (no code): {', '.join(ev['skipped'])}")
    repro = ev.get("reproduction")
    if repro:
        for r in repro["runs"]:
            print(
                f"  rerun seed {r['seed']}: job {r['job_id']} {r['state']}, "
                f"val_bpb {fmt.num(r['val_bpb'], '.6f')}"
            )
        print(f"  reproduction: {repro['summary']}")
    elif ev.get("rerun_note"):
        print(f"  reproduction: {ev['rerun_note']}")
    print(f"verdict: {ev['verdict'].upper()}: {ev['reason']}")


def _pr(args: argparse.Namespace) -> int:
    from helm.agents.github import GitHubError
    from helm.audit.audit import audit_pr

    rerun = _rerun(args)
    try:
        ev = audit_pr(
            workspace(args),
            args.number,
            args.repo,
            path=args.path,
            rerun=rerun,
            on_progress=_progress(args),
        )
    except GitHubError as exc:
        raise CommandError(str(exc)) from exc
    print_json(ev) if args.json else _print(ev)
    return 0


def _dir(args: argparse.Namespace) -> int:
    from helm.audit.audit import audit_folder

    rerun = _rerun(args)
    try:
        ev = audit_folder(workspace(args), args.path, rerun=rerun, on_progress=_progress(args))
    except NotADirectoryError as exc:
        raise CommandError(str(exc)) from exc
    print_json(ev) if args.json else _print(ev)
    return 0


def _ls(args: argparse.Namespace) -> int:
    from helm.audit.store import listing

    rows = listing(workspace(args))
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["ID", "AGE", "REF", "VERDICT", "CLAIMED", "OURS", "GAP", "SIMILAR TO", "REASON"],
        [
            (
                r["id"],
                fmt.since(r["created_at"]),
                r["ref"] if not r["ref"].startswith("/") else r["ref"].rsplit("/", 1)[-1],
                r["verdict"],
                fmt.num(r["claimed_bpb"], ".5f"),
                fmt.num(r["reproduced_bpb"], ".5f"),
                "-" if r["gap_bpb"] is None else f"{r['gap_bpb']:+.5f} ({r['gap_spreads']:+.1f}σ)",
                "-"
                if r["similarity"] is None
                else f"{r['similarity']:.3f} {(r['similar_to'] or '')[:27]}",
                (r["reason"] or "")[:60],
            )
            for r in rows
        ],
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    import json

    from helm.audit.store import find

    row = find(workspace(args), args.ref)
    if row is None:
        raise CommandError(f"no audit of {args.ref}")
    ev = json.loads(row["evidence_json"] or "{}")
    ev.setdefault("id", row["id"])
    print_json(ev) if args.json else _print(ev)
    return 0


def _rerun_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reproduce", action="store_true", help="rerun the code on the fleet")
    p.add_argument(
        "--seeds", type=SEEDS, help="seeds to rerun, e.g. 42,1337 (default: the claim's first)"
    )
    p.add_argument("--env", action="append", metavar="K=V", help="override the PR's configuration")
    p.add_argument(
        "--gpus",
        type=JOB_GPUS,
        choices=JOB_GPU_COUNTS,
        default=8,
        help="GPUs per rerun job (default 8)",
    )
    p.add_argument("--host", help="run the reruns on this host")
    p.add_argument("--time-limit", default="30m", help="per rerun job (default 30m)")
    p.add_argument(
        "--poll", type=bounded_float(0.01, 3600.0, "seconds"), default=1.0, help=argparse.SUPPRESS
    )


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("audit", help="audit community PRs: claims vs logs vs our rerun")
    ss = s.add_subparsers(dest="audit_cmd", required=True, metavar="{pr,dir,ls,show}")
    p = add_leaf(ss, "pr", _pr, "fetch a PR's records folder and audit it", listing=True)
    p.add_argument("number", type=ID)
    p.add_argument("--repo", default="openai/parameter-golf", help="OWNER/NAME")
    p.add_argument("--path", help="the script in the PR (default: its train_gpt.py)")
    _rerun_options(p)
    p = add_leaf(ss, "dir", _dir, "audit a local records folder (offline)", listing=True)
    p.add_argument("path")
    _rerun_options(p)
    add_leaf(ss, "ls", _ls, "every audited PR: claim, our figure, verdict", listing=True)
    p = add_leaf(ss, "show", _show, "one audit's evidence (id, owner/name#N, N)", listing=True)
    p.add_argument("ref")
