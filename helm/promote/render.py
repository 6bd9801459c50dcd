"""Plain-text renderings for the terminal: a run diff, side by side, ready for ``print``.

Kept apart from ``diff`` so the TUI can use the data (``RunDiff``) with its own widgets and
the CLI the same text everywhere (``helm diff`` and a submission's README). Columns follow
the command line: ``helm diff A B`` prints A's column first, then B's, then A - B.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helm.models.base import BaseStats
    from helm.promote.diff import RunDiff

_DECIMALS = {"val_bpb": 8, "val_loss": 8, "seeds_mean_val_bpb": 8, "step_avg_ms": 2}


def fmt_value(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, float):
        if name in _DECIMALS:
            return f"{value:.{_DECIMALS[name]}f}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if name.startswith("bytes") else str(value)
    return str(value)


def fmt_delta(name: str, delta: float | None) -> str:
    if delta is None:
        return ""
    if name in _DECIMALS and isinstance(delta, float):
        return f"{delta:+.{_DECIMALS[name]}f}"
    if isinstance(delta, int) or float(delta).is_integer():
        return f"{int(delta):+,}"
    return f"{delta:+.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    out = []
    for r in [headers, *rows]:
        out.append(
            indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        )
    return out


def _clip(text: str | None, width: int = 40) -> str:
    if text is None:
        return "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def render_diff(d: RunDiff, *, patch: bool = True) -> str:
    a, b = d.a, d.b
    lines = [f"diff {a.label} against {b.label}"]
    if a.screen_text():  # the screen a full run came through (helm.agents.screen)
        lines[0] += f" · {a.screen_text()}"
    for side in (a, b):
        who = f"agent {side.agent}, " if side.agent else ""
        commit = (side.commit or "-")[:10]
        lines.append(f"  {side.label}: {who}commit {commit}, {side.description or '-'}")
    lines.append("")
    lines.append(f"code: {len(d.files)} file(s) changed, +{d.added} -{d.removed} lines")
    for f in d.files:
        lines.append(f"  {f.path}  +{f.added} -{f.removed}  ({f.status})")
    if patch and d.patch:
        lines += ["", d.patch.rstrip("\n")]
    lines += ["", "environment (* changed):"]
    env_rows = [("*" if r.changed else " ", r.key, _clip(r.a), _clip(r.b)) for r in d.env]
    if env_rows:
        lines += table((" ", "KEY", a.label, b.label), env_rows)
    else:
        lines.append("  (empty on both sides)")
    changed = [r for r in d.hyperparameters if r.changed]
    if d.hyperparameters:
        same = len(d.hyperparameters) - len(changed)
        lines += ["", f"hyperparameters from the logs (changed only; {same} unchanged):"]
        if changed:
            lines += table(
                (" ", "NAME", a.label, b.label),
                [("*", r.key, _clip(r.a), _clip(r.b)) for r in changed],
            )
        else:
            lines.append("  (none changed)")
    lines += ["", "results (delta = A - B; lower val_bpb is better):"]
    lines += table(
        ("METRIC", a.label, b.label, "DELTA"),
        [
            (m.name, fmt_value(m.name, m.a), fmt_value(m.name, m.b), fmt_delta(m.name, m.delta))
            for m in d.results
        ],
    )
    if d.base is not None:
        lines += ["", base_line(a.label, d.base, a.results.get("val_bpb"), a.run_id)]
    return "\n".join(lines)


def base_line(label: str, base: BaseStats, val_bpb: float | None, run_id: int | None) -> str:
    """A against its base: the base's mean ± spread over its n runs, and A minus the mean."""
    head = f"base of {label}: pin #{base.pin_id} ({base.label})"
    if base.mean is None:
        return f"{head}: no run of it has scored yet"
    spread = "" if base.spread is None else f" ±{base.spread:.8f}"
    pooled = " (pooled seed spread)" if base.pooled else ""
    ids = ", ".join(f"#{i}" for i in base.run_ids)
    runs = "run" if base.n == 1 else "runs"
    text = f"{head}: mean val_bpb {base.mean:.8f}{spread}{pooled} over n={base.n} {runs} ({ids})"
    if base.contains(run_id):
        return f"{text}; {label} is one of them"
    delta = base.delta(run_id, val_bpb)
    return text + (f"; {label} {fmt_delta('val_bpb', delta)}" if delta is not None else "")


def render_report(report: Any) -> str:
    """A ``golf_task.validate`` report, one line per check, as ``python -m`` prints it."""
    marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
    width = max((len(c.name) for c in report.checks), default=10)
    lines = [f"validate {report.folder}"]
    lines += [f"  {marks[c.status]}  {c.name:<{width}}  {c.message}" for c in report.checks]
    verdict = "PASS" if report.ok else "FAIL"
    counts = report.to_json()["counts"]
    lines.append(f"verdict: {verdict} ({counts['fail']} failed, {counts['warn']} warnings)")
    return "\n".join(lines)
