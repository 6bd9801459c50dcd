"""What a screen may ask of the app it runs in, as two small Protocols.

Screens never import the app (``helm.tui.app``): the app imports every screen, so a screen
that reached back for ``HelmApp`` made a cycle, and a screen that called app methods for
every action made the app the controller of all of them. Instead the app is a ``Shell``
(the refresh loop's state, the palette, the one error path) and hands the screens its
``Flows`` (``helm.tui.flows``: pin, promote, cancel, diff ...), which screens call with
what is selected. Both are structural types: anything with these members will do, so a
screen can be tested against a stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from textual.screen import Screen

from helm.tui.data import Snapshot
from helm.tui.fmt import Palette
from helm.workspace import Workspace


class Flows(Protocol):
    """The operator's intents on a run, job or agent; each asks first where it costs."""

    def open_detail(self, run_id: int | None, job_id: int | None = None) -> None: ...

    def pin(self, run_id: int | None) -> None: ...

    def diff(self, run_id: int | None) -> None: ...

    def promote(self, run_id: int | None) -> None: ...

    def mark(self, run_id: int | None) -> None: ...

    def cancel(self, job_id: int | None) -> None: ...

    def swarm(self, agent: str | None) -> None: ...

    def community(self) -> None: ...

    def host_setup(self, host: str | None) -> None: ...


class Shell(Protocol):
    """The app as its screens see it: state to render from, and where failures go."""

    ws: Workspace
    snapshot: Snapshot | None
    marked_run: int | None
    refresh_rate: float
    paused: bool
    keymap: dict[str, str]
    clock: Callable[[], float]
    flows: Flows
    setup_argv: Callable[[Workspace, str, str], list[str]]  # (ws, host, variant): setup's argv

    @property
    def palette(self) -> Palette: ...

    def report_error(self, error: BaseException) -> None: ...

    def request_refresh(self) -> None: ...

    def redraw(self) -> None:
        """Render the last snapshot again (after a change only the UI knows: a mark)."""
        ...


def shell_of(screen: Screen[object]) -> Shell:
    """The running app of ``screen`` as a ``Shell`` (the only app helm runs is one)."""
    return cast(Shell, screen.app)
