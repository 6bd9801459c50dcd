"""Read-only screens: help (from the registry), diff, and the swarm's progress plot."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, RichLog, Static

from helm.models.states import RunStatus
from helm.tui import commands as cmds
from helm.tui import data, ops
from helm.tui.screens.base import HelmScreen
from helm.tui.widgets.chart import Chart, ChartData, Label, Series

_WHERE = {
    cmds.APP: "everywhere",
    cmds.MAIN: "main",
    cmds.DETAIL: "run detail",
    cmds.VIEW: "views",
    cmds.PLOT: "plot",
    cmds.HELP: "help",
    cmds.DIALOG: "dialogs",
    cmds.CONFIRM: "yes/no question",
    cmds.PROMOTE: "promote wizard",
    cmds.SETUP: "host setup dialog",
}


class HelpScreen(ModalScreen):
    """Every command of the registry with the key that runs it now (the keymap applied)."""

    CONTEXT = cmds.HELP
    BINDINGS = cmds.bindings_for(cmds.HELP)

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__(classes="dialog")
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="help", cursor_type="row", zebra_stripes=True)
        table.border_title = r"keys  (remap in config.toml \[keys], by id)"
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "command", "where", "id")
        for c in cmds.REGISTRY:
            where = ", ".join(_WHERE.get(x, x) for x in c.contexts)
            table.add_row(cmds.display_key(cmds.key_of(c, self.keymap)), c.description, where, c.id)
        table.focus()


class DiffScreen(HelmScreen):
    """``helm diff`` of two runs (code, env, hyperparameters, results), coloured; in a worker."""

    CONTEXT = cmds.VIEW
    BINDINGS = cmds.bindings_for(cmds.VIEW)

    def __init__(self, run_a: int, run_b: int | None) -> None:
        super().__init__()
        self.run_a, self.run_b = run_a, run_b

    def compose(self) -> ComposeResult:
        yield Static(f"diff of run #{self.run_a}", id="title", classes="title")
        yield RichLog(id="diff", wrap=False, highlight=False, max_lines=20_000)
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def _load(self) -> None:
        title, text = ops.diff_text(self.helm.ws, self.run_a, self.run_b)
        self.app.call_from_thread(self._show, title, text)

    def _show(self, title: str, text: str) -> None:
        self.query_one("#title", Static).update(title)
        render_diff(self.query_one(RichLog), text, self.helm.palette)


def render_diff(log: RichLog, text: str, pal: Any) -> None:
    log.clear()
    for line in text.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            log.write(Text(line, style=pal.success))
        elif line.startswith("-") and not line.startswith("---"):
            log.write(Text(line, style=pal.error))
        elif line.startswith("@@"):
            log.write(Text(line, style=pal.primary))
        else:
            log.write(Text(line))


def plot_data(points: list[data.PlotPoint], max_labels: int = 12) -> ChartData:
    """autoresearch's progress chart: discards grey, keeps green, running best as a step line.

    The y range stops near the worst typical score so that a few crashes at bpb 4.0 do not
    squash the interesting band; those outliers sit on the top edge.
    """
    if not points:
        return ChartData(empty="no scored runs yet")
    xs = list(range(len(points)))
    keep = [(i, p) for i, p in enumerate(points) if p.status == RunStatus.KEEP]
    other = [(i, p) for i, p in enumerate(points) if p.status != RunStatus.KEEP]
    best_x: list[float] = []
    best_y: list[float] = []
    best = float("inf")
    labels: list[Label] = []
    for i, p in keep:
        if p.val_bpb < best:
            best = p.val_bpb
            best_x.append(i)
            best_y.append(best)
            labels.append(Label(i, best, f"#{p.run_id} {p.description}"[:40], "success"))
    values = sorted(p.val_bpb for p in points)
    lo = values[0]
    hi = values[min(len(values) - 1, int(len(values) * 0.95))]
    span = max(hi - lo, 1e-3)
    return ChartData(
        series=[
            Series([i for i, _ in other], [p.val_bpb for _, p in other], "muted", "points", 0),
            Series([i for i, _ in keep], [p.val_bpb for _, p in keep], "success", "points", 1),
            Series(best_x, best_y, "accent", "step", 2),
        ],
        labels=list(reversed(labels))[:max_labels],  # newest improvements get room first
        y_range=(lo - span * 0.05, hi + span * 0.05),
        x_range=(0, max(1, len(xs) - 1)),
        title=f"{len(points)} scored runs · {len(keep)} kept · best {min(values):.4f}",
    )


class PlotScreen(HelmScreen):
    """The progress plot of the whole swarm; reloads on every refresh tick."""

    CONTEXT = cmds.VIEW
    BINDINGS = cmds.bindings_for(cmds.VIEW)

    def compose(self) -> ComposeResult:
        yield Static("progress: val_bpb per run (lower is better)", classes="title")
        yield Chart(lambda: self.helm.palette, id="plot")
        yield Footer()

    def on_mount(self) -> None:
        self.snapshot_updated()

    def snapshot_updated(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="plot", exit_on_error=False)
    def _load(self) -> None:
        chart = plot_data(data.load_plot_points(self.helm.ws))
        self.app.call_from_thread(self.query_one(Chart).set_data, chart)
