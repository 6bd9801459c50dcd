"""The helm TUI: what the operator looks at and steers the swarm from.

The app is the shell (``helm.tui.protocol.Shell``), not the controller: the operator's flows
(pin, promote, cancel, diff, swarm, broadcast) are ``helm.tui.flows``, handed to the screens
as ``self.flows``; screens never import this module.

The app owns the refresh loop (dolphie's poll → render → reschedule): a thread worker reads a
``Snapshot`` from the store, the UI thread renders it with keyed, batched table updates, then
the next read is scheduled ``refresh_rate`` seconds later (never overlapping, paused on
demand). Every blocking operation (store writes, ``helm`` subprocesses, git) runs in a worker
too, and every worker failure lands in ``report_error``, one notification, never a crash
(harlequin's single error path). Keys come from the command registry (``commands.py``), with
the user's ``[keys]`` from ``<home>/config.toml`` applied as Textual's keymap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from helm.tui import commands as cmds
from helm.tui import moves, ops
from helm.tui.data import Snapshot, load_snapshot
from helm.tui.flows import AppFlows
from helm.tui.fmt import Palette
from helm.tui.screens.base import HelmScreen
from helm.tui.screens.main import MainScreen
from helm.workspace import Workspace

log = logging.getLogger("helm.tui")

RATES = (0.5, 1.0, 2.0, 5.0, 10.0)
_BLOCKED_IN_DIALOGS = {"broadcast", "plot", "cycle_rate", "toggle_pause", "help", "back"}


class HelmApp(App[None]):
    CSS_PATH = "helm.tcss"
    TITLE = "helm"
    BINDINGS = cmds.bindings_for(cmds.APP)
    # helm's commands only: Textual's system commands (Keys, Screenshot, Maximize ...) would
    # sit beside ours under other names and keys; the theme picker is the registry's `theme`.
    COMMANDS = {cmds.HelmCommands}

    def __init__(
        self,
        ws: Workspace,
        *,
        start_daemon: bool = True,
        clock: Callable[[], float] = time.time,
        refresh_rate: float = 1.0,
        keymap: dict[str, str] | None = None,
        setup_argv: Callable[[Workspace, str, str], list[str]] = ops.setup_argv,
    ) -> None:
        super().__init__()
        self.ws = ws
        self.start_daemon = start_daemon
        self.clock = clock
        self.refresh_rate = refresh_rate
        # What the fleet pane's setup key runs; a test hands a stand-in for `helm host setup`.
        self.setup_argv = setup_argv
        self.paused = False
        self.snapshot: Snapshot | None = None
        self.marked_run: int | None = None
        self.refresh_count = 0
        self.last_load_s = 0.0  # read time of the last snapshot (worker thread)
        self.last_render_s = 0.0  # render time of the last snapshot (UI thread)
        self._keymap_error: str | None = None
        if keymap is None:
            try:
                keymap = cmds.load_keymap(ws.config_path)
            except cmds.KeymapError as exc:
                keymap, self._keymap_error = {}, str(exc)
        self.keymap = keymap
        self._palette: tuple[str, Palette] | None = None
        self._timer: Any = None
        self.flows = AppFlows(self)
        self.main = MainScreen()

    # Set-up ---------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        if self._keymap_error:
            self.notify(self._keymap_error, title="keymap ignored", severity="warning")
        if self.start_daemon:
            self._ensure_daemon()
        self.request_refresh()

    @work(thread=True, group="daemon", exit_on_error=False)
    def _ensure_daemon(self) -> None:
        from helm.daemon import start_detached

        pid, started = start_detached(self.ws)
        if started:
            self.call_from_thread(self.notify, f"daemon started (pid {pid})")

    @property
    def palette(self) -> Palette:
        """Status colours from the current theme (recomputed when the theme changes)."""
        if self._palette is None or self._palette[0] != self.theme:
            self._palette = (self.theme, Palette.from_variables(self.get_css_variables()))
        return self._palette[1]

    # Errors ---------------------------------------------------------------------------------
    def report_error(self, error: BaseException) -> None:
        """The one place failures surface: a notification, and the traceback in the log."""
        if isinstance(error, ops.OpError):
            message = str(error)
        else:
            log.error("worker failed", exc_info=error)
            message = f"{type(error).__name__}: {error}"
        self.notify(message, title="helm", severity="error", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            self.report_error(worker.error)
        if worker.group == "snapshot" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            try:
                if event.state == WorkerState.SUCCESS and worker.result is not None:
                    self._apply(worker.result)
            except Exception as exc:  # a rendering bug must not take the cockpit down
                self.report_error(exc)
            finally:
                self._schedule()

    # The refresh loop -------------------------------------------------------------------------
    def request_refresh(self) -> None:
        """Read a fresh snapshot now (the timer restarts after it lands)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._load_snapshot(self.main.filter_text)

    @work(thread=True, exclusive=True, group="snapshot", exit_on_error=False)
    def _load_snapshot(self, flt: str) -> Snapshot:
        t0 = perf_counter()
        snap = load_snapshot(self.ws, clock=self.clock, flt=flt)
        self.last_load_s = perf_counter() - t0
        return snap

    def _apply(self, snap: Snapshot) -> None:
        t0 = perf_counter()
        self.snapshot = snap
        self.main.show(snap)
        top = self.screen
        if isinstance(top, HelmScreen) and top is not self.main:
            top.snapshot_updated()
        self.refresh_count += 1
        self.last_render_s = perf_counter() - t0

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = (
            None if self.paused else self.set_timer(self.refresh_rate, self.request_refresh)
        )

    def _update_header(self) -> None:
        self.main.query_one("#header").update(self.main.header(self.snapshot))  # type: ignore[attr-defined]

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """None: the palette is the registry's (``COMMANDS``), this only guards a provider
        that asks for the system commands anyway."""
        return ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "move":
            # Declined (False) while an Input has the focus or nothing can move: the key
            # then goes on to the focused widget (home/end edit the filter's text).
            return moves.target(self.screen.focused) is not None
        return not (isinstance(self.screen, ModalScreen) and action in _BLOCKED_IN_DIALOGS)

    def action_move(self, where: str) -> None:
        """j/k, g/G, Home/End, PageUp/PageDown on whatever has the focus (``moves``)."""
        focused: Widget | None = self.screen.focused
        if focused is not None:
            moves.move(focused, where)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.paused and self._timer is not None:
            self._timer.stop()
            self._timer = None
        elif not self.paused:
            self.request_refresh()
        self._update_header()

    def action_cycle_rate(self) -> None:
        nxt = [r for r in RATES if r > self.refresh_rate]
        self.refresh_rate = nxt[0] if nxt else RATES[0]
        self.notify(f"refresh every {self.refresh_rate:g}s", timeout=2)
        if not self.paused:
            self._schedule()
        self._update_header()

    def redraw(self) -> None:
        """Render the last snapshot again (a mark changed what the leaderboard flags)."""
        if self.snapshot is not None:
            self.main.show(self.snapshot)

    # Navigation and the app-wide keys (the flows are ``self.flows``) ------------------------
    def action_back(self) -> None:
        """Escape: clear the filter, else unzoom, else go back one screen."""
        screen = self.screen
        if screen is self.main and self.main.clear_filter():
            return
        if screen.maximized is not None:
            screen.minimize()
        elif screen is not self.main and len(self.screen_stack) > 1:
            self.pop_screen()

    def action_help(self) -> None:
        self.flows.help()

    def action_plot(self) -> None:
        self.flows.plot()

    def action_spend(self) -> None:
        self.flows.spend()

    def action_broadcast(self) -> None:
        self.flows.broadcast()


def run_app(ws: Workspace) -> int:
    """``helm`` with no command: the TUI, starting the daemon if none runs."""
    HelmApp(ws).run()
    return 0
