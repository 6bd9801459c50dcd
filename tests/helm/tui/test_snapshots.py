"""Snapshots of the main screen (wide and 80×24) and the run detail, from frozen data.

Regenerate after an intended change with ``pytest tests/helm/tui --snapshot-update`` and
review the SVGs under ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Log
from tui_campaign import SIZE, settle

from helm.tui.app import HelmApp

MakeApp = Callable[..., HelmApp]


def _frozen(make_app: MakeApp) -> HelmApp:
    # A refresh rate far beyond the test keeps the screen still while it is captured.
    return make_app(refresh_rate=3600)


async def _main_ready(pilot: Pilot) -> None:
    await settle(pilot.app, pilot)  # type: ignore[arg-type]


async def _detail_ready(pilot: Pilot) -> None:
    await settle(pilot.app, pilot)  # type: ignore[arg-type]
    await pilot.press("1", "enter")
    log = pilot.app.screen.query_one(Log)
    for _ in range(300):
        if log.line_count >= 15 and pilot.app.screen.detail is not None:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    await pilot.pause(0.2)


def test_main_screen(snap_compare, make_app: MakeApp) -> None:
    assert snap_compare(_frozen(make_app), terminal_size=SIZE, run_before=_main_ready)


def test_main_screen_80x24(snap_compare, make_app: MakeApp) -> None:
    assert snap_compare(_frozen(make_app), terminal_size=(80, 24), run_before=_main_ready)


def test_run_detail(snap_compare, make_app: MakeApp) -> None:
    assert snap_compare(_frozen(make_app), terminal_size=SIZE, run_before=_detail_ready)


def test_progress_plot(snap_compare, make_app: MakeApp) -> None:
    async def ready(pilot: Pilot) -> None:
        await _main_ready(pilot)
        await pilot.press("v")  # the progress plot (g is "top" since issue 16)
        await pilot.pause(0.3)

    assert snap_compare(_frozen(make_app), terminal_size=SIZE, run_before=ready)
