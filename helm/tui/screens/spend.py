"""Money per kept improvement over time: what each step down of the best cost.

The header shows what the campaign spent; this screen shows what the spending bought, one
row per kept run that lowered the best (``helm.models.costs.improvement_series``, where the
figure is defined once): when, the run, its Δbpb against the best before it, the GPU-hours
and money of every run made since the previous improvement, and Δbpb per $. A falling
Δbpb per $ says the swarm is paying more and more for each gain. Money unknown (a job ran
on a host without a price) shows ``-``, never a guessed 0.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static

from helm import fmt
from helm.tui import commands as cmds
from helm.tui import data
from helm.tui.fmt import Palette
from helm.tui.screens.base import HelmScreen

SPEND_COLUMNS = ("when", "run", "val_bpb", "Δbpb", "GPU-h", "$ since prev", "Δbpb per $")


def per_money(value: float | None) -> str:
    """Δbpb per $ in a form that reads at any scale: ``−2.50e-04`` (a real minus sign, as
    ``fmt.signed`` writes for people); ``-`` when unknown."""
    if value is None:
        return fmt.MISSING
    text = f"{value:+.2e}"
    return ("\u2212" + text[1:]) if text[0] == "-" else text


def spend_rows(series: list[dict[str, Any]], pal: Palette, now: float) -> list[list[object]]:
    """One row per improvement, newest first (the latest gain and its price come first)."""
    rows: list[list[object]] = []
    for e in reversed(series):
        money = e["money"]
        rows.append(
            [
                fmt.since(e["at"], now),
                f"#{e['run_id']}",
                Text(fmt.score(e["val_bpb"]), style=pal.success),
                Text(fmt.signed(e["delta"], true_minus=True), style=pal.success),
                fmt.gpu_hours(e["gpu_seconds"]),
                fmt.money(money) if money is not None else pal.muted_text(fmt.MISSING),
                per_money(e["per_money"])
                if e["per_money"] is not None
                else pal.muted_text(fmt.MISSING),
            ]
        )
    return rows


def spend_summary(series: list[dict[str, Any]]) -> str:
    """The title: how many improvements, the total Δ, what they cost, the overall rate."""
    if not series:
        return "money per kept improvement: no kept run has lowered the best yet"
    delta = sum(e["delta"] for e in series)
    known = all(e["money"] is not None for e in series)
    money = sum(e["money"] for e in series) if known else None
    rate = delta / money if money else None
    return (
        f"money per kept improvement: {len(series)} improvement(s), "
        f"Δbpb {fmt.signed(delta, true_minus=True)} for {fmt.money(money)} "
        f"({per_money(rate)} per $)"
    )


class SpendScreen(HelmScreen):
    """The improvements table; read again in a worker on every refresh tick."""

    CONTEXT = cmds.VIEW
    BINDINGS = cmds.bindings_for(cmds.VIEW)

    def compose(self) -> ComposeResult:
        yield Static("money per kept improvement: loading…", id="title", classes="title")
        table: DataTable[object] = DataTable(id="spend", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#spend", DataTable).add_columns(*SPEND_COLUMNS)
        self.snapshot_updated()

    def snapshot_updated(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="spend", exit_on_error=False)
    def _load(self) -> None:
        series = data.load_improvements(self.helm.ws, clock=self.helm.clock)
        self.app.call_from_thread(self._show, series)

    def _show(self, series: list[dict[str, Any]]) -> None:
        self.query_one("#title", Static).update(spend_summary(series))
        table = self.query_one("#spend", DataTable)
        cursor = table.cursor_row
        table.clear()
        for i, row in enumerate(spend_rows(series, self.helm.palette, self.helm.clock())):
            table.add_row(*row, key=str(i))
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        table.focus()
