"""A snapshot of the promotion wizard as it opens on a finished run: the form, and the
verdict it computed from the runs already scored (a record out of reach: non-record chosen).

Regenerate after an intended change with ``pytest tests/helm/promote --snapshot-update`` and
review the SVG under ``__snapshots__/`` before committing it.
"""

from __future__ import annotations

import asyncio

from test_wizard import Host, _finished_run
from textual.pilot import Pilot
from textual.widgets import Static

from helm.workspace import Workspace


def test_wizard_opens_with_its_verdict(snap_compare, task_ws: Workspace, kit) -> None:  # noqa: ANN001
    run_id = _finished_run(task_ws, kit)

    async def ready(pilot: Pilot) -> None:
        reach = pilot.app.screen.query_one("#reach", Static)
        for _ in range(3000):
            if "out of reach" in str(reach.render()):
                break
            await asyncio.sleep(0.01)
        await pilot.pause(0.2)

    assert snap_compare(Host(task_ws, run_id), terminal_size=(120, 44), run_before=ready)
