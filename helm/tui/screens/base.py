"""What every helm screen shares: the typed app handle and the one error path for workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from helm.tui.app import HelmApp


class HelmScreen(Screen):
    """Worker state messages do not bubble, so each screen hands failures to the app's handler."""

    @property
    def helm(self) -> HelmApp:
        return self.app  # type: ignore[return-value]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.helm.report_error(event.worker.error)

    def snapshot_updated(self) -> None:
        """Called by the app after each refresh tick while this screen is on top."""
