"""``helm directives`` and ``helm improvements``: what the money bought.

The operator's question after "try int5 for MLP": how many GPU-hours and dollars did the
runs made under it use, and did any of them beat its base? The figures are
``helm.models.costs.directive_report``'s. And over the campaign: each kept improvement of the
best, what was spent to get there since the one before, and the Δbpb per $ it works out to
(``helm.models.costs.improvement_series``, the figure of the TUI's ``$`` screen). ``--json``
prints them as they are.
"""

from __future__ import annotations

import argparse

from helm import fmt
from helm.cli.common import add_leaf, print_json, print_table, workspace


def _gain(row: dict) -> str:
    """``−0.0123 (run 14)``, or ``-`` when no kept run beat its base."""
    if row["best_delta"] is None:
        return fmt.MISSING
    return f"{fmt.signed(row['best_delta'], true_minus=True)} (run {row['best_run']})"


def _directives(args: argparse.Namespace) -> None:
    from helm.models.costs import directive_report

    with workspace(args).db(write=False) as db:
        rows = directive_report(db)
    if args.json:
        print_json(rows)
        return
    print_table(
        ["ID", "AGE", "RUNS", "KEPT", "GPU-H", "$", "BEST ΔBPB", "TEXT"],
        [
            (
                r["id"],
                fmt.since(r["created_at"]),
                len(r["runs"]),
                r["kept"],
                fmt.gpu_hours(r["gpu_seconds"]),
                fmt.money(r["money"]),
                _gain(r),
                r["text"][:60],
            )
            for r in rows
        ],
    )


def _per_money(x: float | None) -> str:
    return fmt.MISSING if x is None else f"{x:+.5f}".replace("-", "\u2212")


def _improvements(args: argparse.Namespace) -> None:
    from helm.models.costs import improvement_series

    with workspace(args).db(write=False) as db:
        rows = improvement_series(db)
    if args.json:
        print_json(rows)
        return
    if not rows:
        print("no kept improvement yet")
        return
    print_table(
        ["RUN", "AGE", "VAL_BPB", "ΔBPB", "GPU-H", "$", "ΔBPB/$"],
        [
            (
                r["run_id"],
                fmt.since(r["at"]),
                fmt.score(r["val_bpb"]),
                fmt.signed(r["delta"], true_minus=True),
                fmt.gpu_hours(r["gpu_seconds"]),
                fmt.money(r["money"]),
                _per_money(r["per_money"]),
            )
            for r in rows
        ],
    )


def register(sub: argparse._SubParsersAction) -> None:
    add_leaf(
        sub,
        "improvements",
        _improvements,
        "each kept improvement of the best: its Δbpb, what was spent since the one before, "
        "and Δbpb per $",
        listing=True,
    )
    add_leaf(
        sub,
        "directives",
        _directives,
        "what each directive's runs cost (GPU-hours, money) and the best Δbpb they bought",
        listing=True,
    )
