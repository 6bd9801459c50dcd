"""The TUI's community view: ``a`` on the main screen lists the audits, escape goes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from audit_kit import RECORDS
from textual.widgets import DataTable, Static

from helm.audit.audit import audit_folder
from helm.audit.store import record
from helm.tui.app import HelmApp
from helm.tui.screens.community import CommunityScreen
from helm.tui.screens.main import MainScreen
from helm.workspace import Workspace


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _copy_evidence() -> dict:
    return {
        "ref": "openai/parameter-golf#601",
        "verdict": "copy",
        "reason": "copy: byte-identical to helm's bundled train_gpt.py, yet claims 1.1271",
        "claimed_bpb": 1.1271,
        "pr": {"title": "Record: 11L", "author": "speedy", "head_sha": "0601c0ffee"},
        "similarity": {"label": "helm's bundled train_gpt.py", "similarity": 1.0},
        "findings": [
            {"name": "code.similarity", "status": "fail", "message": "copy", "details": {}}
        ],
        "reproduction": None,
    }


async def test_community_view_lists_audits(ws: Workspace) -> None:
    audit_folder(ws, RECORDS / "2026-03-17_NaiveBaseline")
    record(ws, _copy_evidence())
    app = HelmApp(ws, start_daemon=False, keymap={})
    async with app.run_test(size=(140, 40)) as pilot:
        await until(lambda: isinstance(app.screen, MainScreen))
        await pilot.press("a")
        await until(lambda: isinstance(app.screen, CommunityScreen))
        table = app.screen.query_one(DataTable)
        await until(lambda: table.row_count == 2)
        rows = [table.get_row_at(i) for i in range(2)]
        assert [str(r[1]) for r in rows] == ["copy", "unverified"]  # newest first
        assert rows[0][0] == "openai/parameter-golf#601" and rows[0][2] == "1.12710"
        assert rows[1][0] == "2026-03-17_NaiveBaseline"
        detail = app.screen.query_one("#audit-detail", Static)
        await until(lambda: "COPY" in str(detail.render()))
        await pilot.press("down")
        await until(lambda: "UNVERIFIED" in str(detail.render()))
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen))
