"""The community view: every audited PR beside our own leaderboard, with its verdict.

The same rows as ``helm audit ls`` (``helm.audit.store.listing``), read in a thread worker on
open and on every refresh tick, rendered with keyed updates so the cursor stays put. The
highlighted row's findings show underneath: why a PR is a copy or unverified is what the
operator needs before pinning it (``p`` on the main screen refuses such PRs unless forced).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static

from helm import fmt
from helm.models.audits import audit_evidence
from helm.tui import commands as cmds
from helm.tui.screens.base import HelmScreen

_COLUMNS = ("ref", "verdict", "claimed", "ours", "gap", "similar to", "title")
_STYLE = {
    "real": "success",
    "not_reproduced": "error",
    "copy": "error",
    "invalid": "error",
    "unverified": "warning",
}
_MARK = {"pass": "✓", "warn": "!", "fail": "✗"}


def row_cells(row: dict[str, Any], pal: Any) -> tuple[Text | str, ...]:
    """One audit as table cells; the verdict coloured by what it means for pinning."""
    ref = row["ref"]
    if ref.startswith("/"):
        ref = Path(ref).name
    gap = fmt.MISSING
    if row.get("gap_bpb") is not None:
        gap = f"{fmt.signed(row['gap_bpb'], 5)} ({row['gap_spreads']:+.1f}σ)"
    similar = fmt.MISSING
    if row.get("similarity") is not None:
        similar = f"{row['similarity']:.3f} {(row.get('similar_to') or '')[:28]}"
    style = getattr(pal, _STYLE.get(row["verdict"], "warning"), "")
    return (
        ref[:48],
        Text(row["verdict"], style=style),
        fmt.score(row.get("claimed_bpb"), 5),
        fmt.score(row.get("reproduced_bpb"), 5),
        gap,
        similar,
        (row.get("title") or "")[:40],
    )


def load(ws: Any) -> list[dict[str, Any]]:
    from helm.audit.store import listing

    return listing(ws)


def findings_text(ws: Any, audit_id: int) -> str:
    """The verdict's reason and every finding of one audit, one line each."""
    with ws.db(write=False) as db:
        ev = audit_evidence(db, audit_id)
    if ev is None:
        return ""
    lines = [f"{ev.get('verdict', '?').upper()}: {ev.get('reason', '')}"]
    lines += [
        f"{_MARK.get(f['status'], '?')} {f['name']}: {f['message']}" for f in ev.get("findings", [])
    ]
    repro = ev.get("reproduction")
    if repro:
        lines.append(f"rerun: {repro.get('summary', '')}")
    return "\n".join(lines)


class CommunityScreen(HelmScreen):
    """Audited community PRs (``a`` on the main screen; escape goes back)."""

    CONTEXT = cmds.VIEW
    BINDINGS = cmds.bindings_for(cmds.VIEW)

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(
            "community PRs: audits (helm audit pr N [--reproduce]); only 'real' is safe to pin",
            classes="title",
        )
        table: DataTable[Any] = DataTable(id="community", cursor_type="row", zebra_stripes=True)
        table.add_columns(*_COLUMNS)
        yield table
        yield Static("", id="audit-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._load()

    def snapshot_updated(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="community", exit_on_error=False)
    def _load(self) -> None:
        rows = load(self.helm.ws)
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        known = {str(r["id"]) for r in rows}
        with self.app.batch_update():
            for key in [k.value for k in list(table.rows) if k.value not in known]:
                table.remove_row(key)
            for row in rows:
                key = str(row["id"])
                cells = row_cells(row, self.helm.palette)
                if key in table.rows:
                    for col, cell in zip(table.columns, cells, strict=True):
                        table.update_cell(key, col, cell)
                else:
                    table.add_row(*cells, key=key)
        self.rows = rows
        if not rows:
            self.query_one("#audit-detail", Static).update(
                "no audits yet: helm audit pr N --reproduce"
            )
        elif table.cursor_row is not None:
            self._detail(table.cursor_row)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    @work(thread=True, exclusive=True, group="community-detail", exit_on_error=False)
    def _detail(self, index: int) -> None:
        """The highlighted audit's findings, read off the UI thread (cursor moves stay instant)."""
        rows = self.rows
        if 0 <= index < len(rows):
            text = findings_text(self.helm.ws, int(rows[index]["id"]))
            self.app.call_from_thread(self.query_one("#audit-detail", Static).update, Text(text))
