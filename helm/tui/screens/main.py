"""The main screen: agents & jobs, leaderboard, feed and fleet, under a one-line header.

It renders whatever snapshot the app hands it (``show``) and turns keys into the operator's
intents, handed to ``self.flows`` (which do the work in workers). "The selected run/job/agent" comes from the row
key under the cursor of the focused pane, so every action works on whatever the operator
is looking at.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Static

from helm.tui import commands as cmds
from helm.tui import rows
from helm.tui.data import Snapshot
from helm.tui.screens.base import HelmScreen
from helm.tui.widgets.tables import KeyedTable

PANES = (
    ("agents", "1 agents & jobs", rows.AGENT_COLUMNS),
    ("leaderboard", "2 leaderboard", rows.BOARD_COLUMNS),
    ("feed", "3 feed", rows.FEED_COLUMNS),
    ("fleet", "4 fleet", rows.FLEET_COLUMNS),
)


class Pane(Container):
    """One of the four panes: its table with the border title; ``z`` maximises it whole
    (a plain Container cannot be focused, so Textual would refuse to maximise it)."""

    ALLOW_MAXIMIZE = True


class MainScreen(HelmScreen):
    CONTEXT = cmds.MAIN
    BINDINGS = cmds.bindings_for(cmds.MAIN)
    AUTO_FOCUS = "#agents"

    def __init__(self) -> None:
        super().__init__(id="main")
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        # Two columns, so that the DOM order (and so tab) is 1 2 3 4: the wide tables
        # (agents, leaderboard) on the left, feed and fleet on the right.
        with Horizontal(id="panes"):
            for column, panes in (("left", PANES[:2]), ("right", PANES[2:])):
                with Vertical(id=column):
                    for name, title, columns in panes:
                        with Pane(classes="pane", id=f"pane-{name}") as pane:
                            pane.border_title = title
                            yield KeyedTable(columns, id=name)
        yield Input(placeholder="filter (enter keeps, esc clears)", id="filter")
        yield Footer()

    # Rendering --------------------------------------------------------------------------
    def table(self, name: str) -> KeyedTable:
        return self.query_one(f"#{name}", KeyedTable)

    def show(self, snap: Snapshot) -> None:
        """Render a snapshot: keyed, batched updates of all four tables and the header."""
        app = self.helm
        pal, now, flt = app.palette, app.clock(), self.filter_text
        with self.app.batch_update():
            self.query_one("#header", Static).update(self.header(snap))
            self.table("agents").sync(rows.agent_rows(snap, pal, now, flt))
            self.table("leaderboard").sync(rows.board_rows(snap, pal, app.marked_run, flt))
            self.table("feed").sync(rows.feed_rows(snap, pal, now, flt))
            self.table("fleet").sync(rows.fleet_rows(snap, pal, flt))
            board = self.query_one("#pane-leaderboard")
            board.border_subtitle = f"{len(snap.leaderboard)} of {snap.runs_total} runs"

    def header(self, snap: Snapshot | None):  # -> Text
        app = self.helm
        return rows.header_text(
            snap, app.palette, rate=app.refresh_rate, paused=app.paused, marked=app.marked_run
        )

    # Selection --------------------------------------------------------------------------
    def focused_key(self) -> str | None:
        focused = self.focused
        if isinstance(focused, KeyedTable):
            return focused.selected_key
        return None

    def selected_run_id(self) -> int | None:
        """The run under the cursor: a leaderboard run, an agent's current run, a post's run."""
        key = self.focused_key()
        snap = self.helm.snapshot
        if key is None or snap is None:
            return None
        kind, _, ref = key.partition(":")
        if kind == "run":
            return int(ref)
        if kind == "agent":
            agent = next((a for a in snap.agents if a.name == ref), None)
            if agent is None:
                return None
            if agent.job is not None and agent.job.run_id is not None:
                return agent.job.run_id
            return agent.current_run_id or (agent.last["id"] if agent.last else None)
        if kind == "job":
            job = next((j for j in snap.jobs if j.id == int(ref)), None)
            return job.run_id if job else None
        if kind == "post":
            post = next((p for p in snap.feed if p["id"] == int(ref)), None)
            return post["run_id"] if post else None
        return None

    def selected_job_id(self) -> int | None:
        key = self.focused_key()
        snap = self.helm.snapshot
        if key is None or snap is None:
            return None
        kind, _, ref = key.partition(":")
        if kind == "job":
            return int(ref)
        if kind == "agent":
            agent = next((a for a in snap.agents if a.name == ref), None)
            return agent.job.id if agent and agent.job else None
        if kind == "run":
            run = next((r for r in snap.leaderboard if r["id"] == int(ref)), None)
            return run["job_id"] if run else None
        return None

    def selected_host(self) -> str | None:
        key = self.focused_key()
        if key and key.startswith("host:"):
            return key.partition(":")[2]
        return None

    def selected_agent(self) -> str | None:
        key = self.focused_key()
        if key and key.startswith("agent:"):
            return key.partition(":")[2]
        return None

    # Actions ----------------------------------------------------------------------------
    def action_focus_pane(self, name: str) -> None:
        if self.maximized is not None:
            self.minimize()
        self.table(name).focus()

    def action_zoom(self) -> None:
        """Maximise the focused pane (its border and title too); again, or esc, restores."""
        if self.maximized is not None:
            self.minimize()
        elif isinstance(self.focused, KeyedTable) and isinstance(self.focused.parent, Pane):
            self.maximize(self.focused.parent, container=False)

    def action_open_detail(self) -> None:
        key = self.focused_key() or ""
        job = self.selected_job_id() if key.startswith(("job:", "agent:")) else None
        self.flows.open_detail(self.selected_run_id(), job)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id in ("agents", "leaderboard", "feed"):
            self.action_open_detail()

    def action_pin(self) -> None:
        self.flows.pin(self.selected_run_id())

    def action_promote(self) -> None:
        self.flows.promote(self.selected_run_id())

    def action_diff(self) -> None:
        self.flows.diff(self.selected_run_id())

    def action_community(self) -> None:
        self.flows.community()

    def action_mark(self) -> None:
        self.flows.mark(self.selected_run_id())

    def action_cancel(self) -> None:
        self.flows.cancel(self.selected_job_id())

    def action_swarm(self) -> None:
        self.flows.swarm(self.selected_agent())

    def action_host_setup(self) -> None:
        self.flows.host_setup(self.selected_host())

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.helm.request_refresh()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        if not self.filter_text:
            self.query_one("#filter", Input).remove_class("shown")
        self.table("agents").focus()

    def clear_filter(self) -> bool:
        """Escape on the filter clears it; True when there was something to clear."""
        box = self.query_one("#filter", Input)
        if not box.has_class("shown"):
            return False
        box.value = ""
        box.remove_class("shown")
        self.filter_text = ""
        self.table("agents").focus()
        self.helm.request_refresh()
        return True
