"""``helm host setup NAME``: make an SSH box ready (venv, torch, golf_task, data, check).

The steps live in ``helm.remote.setup``; this is the command line around them: options,
progress on the terminal (on stderr with ``--json``, so stdout stays one JSON document), and a
Ctrl-C that says how to continue. Exit 1 when the final check has blockers.
"""

from __future__ import annotations

import argparse
import sys

from helm.cli.common import (
    CommandError,
    UsageError,
    add_leaf,
    bounded_int,
    print_json,
    workspace,
)


def _setup(args: argparse.Namespace) -> int:
    import asyncio

    from helm.models.job_life import load_host, save_check
    from helm.remote.backend import BoxError
    from helm.remote.hosts import make_box
    from helm.remote.setup import HostSetup, SetupError, SetupPlan

    ws = workspace(args)
    with ws.store.read() as s:
        host = load_host(s, args.name)
    if host.kind != "ssh":
        raise CommandError(
            f"host {host.name} is {host.kind}: setup prepares SSH boxes (a local host uses "
            "this machine's python; a Slurm host's nodes are the cluster's)"
        )
    try:
        plan = SetupPlan(
            torch=args.torch,
            variant=args.data,
            tiny=args.tiny,
            train_shards=args.train_shards,
            flash_attn=args.flash_attn,
            wheels=tuple(args.wheels or ()),
            data_url=args.data_url,
            base_python=args.base_python or "python3",
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    async def go():  # noqa: ANN202
        box = make_box(ws, host)
        try:
            return await HostSetup(ws, host, box, plan, say).run()
        finally:
            await box.close()

    try:
        report = asyncio.run(go())
    except KeyboardInterrupt:
        raise CommandError(
            f"interrupted: run `helm host setup {host.name}` again to continue "
            "(finished steps are kept, a download continues where it stopped)"
        ) from None
    except (SetupError, BoxError) as exc:
        raise CommandError(f"host setup {host.name}: {exc}") from exc
    check = report.check
    save_check(ws.store, host.name, bool(check.get("reachable")), check)
    if args.json:
        print_json(report.to_json())
    else:
        print(f"{host.name}: host check")
        print_verdicts(check)
    return 1 if check.get("problems") or not check.get("reachable") else 0


def print_verdicts(check: dict) -> None:
    """(Shared with ``host check``.) Each problem with its fix ("problem:" for a blocker), then the one-word verdict."""
    verdicts = check.get("verdicts")
    if verdicts is None:  # a check stored before verdicts: its problems, without fixes
        verdicts = [
            {"level": "blocker", "problem": p, "fix": ""} for p in check.get("problems", [])
        ]
    for v in verdicts:
        print(f"  {'problem' if v['level'] == 'blocker' else 'warning'}: {v['problem']}")
        if v.get("fix"):
            print(f"    fix: {v['fix']}")
    blockers = sum(v["level"] == "blocker" for v in verdicts)
    print(f"  verdict: {'NOT READY (' + str(blockers) + ' to fix)' if blockers else 'ready'}")


def register(hs: argparse._SubParsersAction) -> None:
    """Add ``setup`` under ``helm host``."""
    from golf_task.variants import DEFAULT_VARIANT, VARIANTS

    p = add_leaf(
        hs, "setup", _setup, "make an SSH box ready: venv, torch, golf_task, data", listing=True
    )
    p.add_argument("name")
    p.add_argument(
        "--torch",
        default="auto",
        metavar="auto|VERSION",
        help="torch version (auto: the newest build the driver's CUDA supports; CPU-only: cpu)",
    )
    p.add_argument(
        "--data", default=DEFAULT_VARIANT, choices=sorted(VARIANTS), help="tokenizer variant"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the tiny offline dataset instead of FineWeb (smoke runs)",
    )
    p.add_argument("--train-shards", type=bounded_int(0, 10_000, "--train-shards"), default=80,
                   metavar="N", help="FineWeb train shards to fetch")  # fmt: skip
    p.add_argument("--flash-attn", action="store_true", help="also install flash-attn")
    p.add_argument(
        "--wheels",
        action="append",
        metavar="DIR_OR_URL",
        help="install from these wheel folders/pages only (pip --no-index --find-links; repeatable)",
    )
    p.add_argument(
        "--data-url", metavar="URL", help="data source instead of huggingface.co/datasets"
    )
    p.add_argument(
        "--base-python", metavar="PATH", help="python on the box the venv is made from (python3)"
    )
