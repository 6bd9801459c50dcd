"""The setup dialog (``S`` on an unreachable host of the frozen campaign), as a snapshot.

Regenerate after an intended change with ``--snapshot-update`` and review the SVG.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from tui_campaign import SIZE, settle

from helm.tui.app import HelmApp

MakeApp = Callable[..., HelmApp]


def test_setup_dialog(snap_compare, make_app: MakeApp) -> None:
    async def ready(pilot: Pilot) -> None:
        await settle(pilot.app, pilot)  # type: ignore[arg-type]
        await pilot.press("4", "S")  # box-b, the first host: unreachable
        await pilot.pause(0.2)

    assert snap_compare(make_app(refresh_rate=3600), terminal_size=SIZE, run_before=ready)
