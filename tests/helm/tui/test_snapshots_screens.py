"""Snapshots of every dialog, the help screen, the community screen and the run detail's two
tabs, from the frozen campaign (clock fixed at T0, refresh far beyond the test).

Regenerate after an intended change with ``pytest tests/helm/tui --snapshot-update`` and
review the SVGs under ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from textual.pilot import Pilot
from tui_campaign import SIZE, T0, settle

from helm.models.tables import Audit
from helm.tui.app import HelmApp
from helm.workspace import Workspace

MakeApp = Callable[..., HelmApp]


def _frozen(make_app: MakeApp) -> HelmApp:
    return make_app(refresh_rate=3600)


def _press(*keys: str, wait: Callable[[Pilot], bool] | None = None):  # noqa: ANN202
    async def ready(pilot: Pilot) -> None:
        from textual.widgets import Input

        await settle(pilot.app, pilot)  # type: ignore[arg-type]
        await pilot.press(*keys)
        for _ in range(300):
            if wait is None or wait(pilot):
                break
            await asyncio.sleep(0.01)
        for box in pilot.app.screen.query(Input):  # a blinking cursor is a coin toss per frame
            box.cursor_blink = False
        await pilot.pause(0.2)

    return ready


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("broadcast", ("b",)),  # the composer, with what the present agents can follow
        ("pin", ("p",)),
        ("swarm", ("1", "down", "s")),  # on agent bravo
        ("confirm_cancel", ("1", "c")),  # alpha's job
        ("help", ("question_mark",)),
    ],
)
def test_dialogs(snap_compare, make_app: MakeApp, name: str, keys: tuple[str, ...]) -> None:
    assert snap_compare(_frozen(make_app), terminal_size=SIZE, run_before=_press(*keys))


def test_community_screen(snap_compare, campaign: Workspace, make_app: MakeApp) -> None:
    with campaign.store.write() as s:
        s.add(Audit(ref="openai/parameter-golf#374", claimed_bpb=1.1147, reproduced_bpb=1.1152,
                    verdict="real", created_at=T0 - 3600, evidence_json=json.dumps({
                        "verdict": "real", "reason": "reproduced within the seed spread",
                        "findings": [{"name": "cap", "status": "pass", "message": "15.9 MB"}],
                    })))  # fmt: skip
        s.add(Audit(ref="someone/fork#12", claimed_bpb=1.05, verdict="copy",
                    created_at=T0 - 600, evidence_json=json.dumps({
                        "verdict": "copy", "reason": "94% of #374's code",
                        "findings": [{"name": "similarity", "status": "fail", "message": "94%"}],
                    })))  # fmt: skip
    assert snap_compare(_frozen(make_app), terminal_size=SIZE, run_before=_press("a"))


def _detail_on(tab: str):  # noqa: ANN202
    async def ready(pilot: Pilot) -> None:
        from textual.widgets import Log

        await settle(pilot.app, pilot)  # type: ignore[arg-type]
        await pilot.press("1", "enter")
        screen = pilot.app.screen
        log = screen.query_one(Log)
        for _ in range(300):
            if log.line_count >= 15 and getattr(screen, "detail", None) is not None:
                break
            await asyncio.sleep(0.01)
        await pilot.press(tab)
        await pilot.pause(0.4)

    return ready


@pytest.mark.parametrize("tab", ["1", "2"], ids=["log_tab", "diff_tab"])
def test_run_detail_tabs(snap_compare, make_app: MakeApp, tab: str) -> None:
    assert snap_compare(_frozen(make_app), terminal_size=SIZE, run_before=_detail_on(tab))
