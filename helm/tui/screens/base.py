"""What every helm screen shares: the app seen as a ``Shell``, and the one error path.

Screens reach the app only through ``helm.tui.protocol`` (never ``helm.tui.app``, which
imports them): ``self.helm`` for state and errors, ``self.flows`` for the operator's flows.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from helm.tui.protocol import Flows, Shell, shell_of


class HelmScreen(Screen):
    """Worker state messages do not bubble, so each screen hands failures to the app's handler."""

    @property
    def helm(self) -> Shell:
        return shell_of(self)

    @property
    def flows(self) -> Flows:
        return self.helm.flows

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.helm.report_error(event.worker.error)

    def snapshot_updated(self) -> None:
        """Called by the app after each refresh tick while this screen is on top."""
