"""`helm context` as text: what a coding agent reads before its next experiment.

Written for a language model as much as for a person: short sections, the most important
first (directives to obey, then the base, then what is winning), exact numbers.
"""

from __future__ import annotations

from typing import Any

from golf_task.limits import ARTIFACT_CAP_BYTES
from helm import fmt
from helm.agents.budget import context_lines
from helm.models.base import pin_label


def _run_line(r: dict[str, Any]) -> str:
    bpb = fmt.score(r.get("val_bpb"))
    size = f"{fmt.byte_count(r['bytes_total'])} B" if r.get("bytes_total") else "size ?"
    who = r.get("agent") or fmt.MISSING
    return f"run {r['id']} by {who}: val_bpb {bpb}, {size} — {r['description']}"


def _base_figures(stats: dict[str, Any] | None) -> str:
    """The base's figures (``helm.models.base``): what every "vs base" is measured from, and
    where a branch's best starts on this base."""
    if not stats or stats["mean"] is None:
        return "no reference run has scored on this base yet: your next run is one"
    spread = stats["spread"]
    plus = f" ±{fmt.score(spread)}" if spread is not None else ""
    runs = "run" if stats["n"] == 1 else "runs"
    ids = ", ".join(str(i) for i in stats["run_ids"])
    mean = fmt.score(stats["mean"])
    return f"mean val_bpb {mean}{plus} over {stats['n']} reference {runs} ({runs} {ids})"


def usage_text(usage: dict[str, Any] | None) -> str:
    """``$12.40 · 0.62 GPU-h`` from a ``Usage.to_json()`` (money "-" when unknown)."""
    if not usage:
        return fmt.MISSING
    return f"{fmt.money(usage['money'])} · {fmt.gpu_hours(usage['gpu_seconds'])} GPU-h"


def _spent_line(ctx: dict[str, Any]) -> str | None:
    """What the GPUs cost so far: the campaign's total, and the agent's own share."""
    campaign = (ctx.get("usage") or {}).get("campaign")
    if campaign is None:
        return None
    line = f"Spent so far: campaign {usage_text(campaign)}"
    me = ctx.get("agent")
    if me and me.get("usage") is not None:
        line += f"; you {usage_text(me['usage'])}"
    return line + "."


def improvement_line(imp: dict[str, Any] | None) -> str | None:
    """``kept improvements: 3, Δbpb −0.0123 for $45.60 (−0.00027 bpb per $)``: the
    campaign's progress over the first base for its money (``costs.improvement_per_money``);
    None before the first base has a score."""
    if not imp or imp.get("delta") is None:
        return None
    delta = fmt.signed(imp["delta"], true_minus=True)
    line = f"kept improvements: {imp['kept']}, Δbpb {delta} for {fmt.money(imp['money'])}"
    if imp.get("per_money") is not None:
        line += f" ({fmt.signed(imp['per_money'], 5, true_minus=True)} bpb per $)"
    return line


def render_context(ctx: dict[str, Any]) -> str:
    out: list[str] = []
    me = ctx.get("agent")
    if me:
        best = me["best"]
        best_s = f"{fmt.score(best['val_bpb'])} (run {best['id']})" if best else "none yet"
        out.append(
            f"You are agent {me['name']} (driver {me['driver']}, branch {me['branch']}). "
            f"Runs: {me['runs']}, keeps: {me['keeps']}, your best: {best_s}."
        )
    spent = _spent_line(ctx)
    if spent:
        out.append(spent)
    gained = improvement_line(ctx.get("improvement"))
    if gained:
        out.append(gained)
    budget = context_lines(ctx.get("budget"))
    if budget:
        out += ["", *budget]
    out.append("")
    out.append("## Directives from the operator (obey, then `helm directive ack ID`)")
    if ctx["directives"]:
        out += [f"- #{d['id']}: {d['text']}" for d in ctx["directives"]]
    else:
        out.append("- none pending")
    out.append("")
    out.append("## Base")
    base = ctx.get("base")
    if base:
        out.append(f"- {pin_label(base)} (commit {(base['commit'] or '?')[:10]})")
        out.append(f"- {_base_figures(base.get('stats'))}")
    else:
        out.append("- no base pinned yet")
    out.append("")
    cap = fmt.byte_count(ARTIFACT_CAP_BYTES)
    out.append(f"## Leaderboard (val_bpb, lower is better; artifact cap {cap} bytes)")
    out += [f"{r['rank']}. {_run_line(r)}" for r in ctx["leaderboard"]] or ["- no scored runs yet"]
    out.append("")
    out.append("## Recent feed")
    out += [f"- [{p['kind']}] {p['agent'] or 'helm'}: {p['text']}" for p in ctx["feed"]] or [
        "- empty"
    ]
    if ctx["claims"]:
        out.append("")
        out.append("## Claimed by others (avoid duplicating)")
        out += [f"- {c['agent']}: {c['text']}" for c in ctx["claims"]]
    audits = ctx.get("audits", [])
    failed = [a for a in audits if a["verdict"] in ("copy", "invalid", "not_reproduced")]
    unverified = [
        a for a in audits if a["verdict"] not in ("real", "copy", "invalid", "not_reproduced")
    ]
    if failed:
        out.append("")
        out.append("## Community PRs that failed audit (do not build on them)")
        out += [f"- {a['ref']}: {a['verdict']}" for a in failed]
    if unverified:
        out.append("")
        out.append("## Community PRs not yet verified (no rerun; treat their claims with care)")
        out += [f"- {a['ref']}: claims {a['claimed_bpb']}" for a in unverified]
    return "\n".join(out)
