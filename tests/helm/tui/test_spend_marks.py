"""Issue 17 on screen: runs at risk of an early abort, screens and the full runs they earned,
and the money per kept improvement (the ``$`` screen).

Each test drives the real app (``App.run_test``) on the TUI campaign (``tui_campaign.fill``)
plus the runs below, written through ``helm.models`` as the experiment loop and the
early-abort service write them, and reads the cells and lines on screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable, Static
from tui_campaign import SIZE, T0, settle

from helm.models.feed import post_feed
from helm.models.runs import insert_run, update_run
from helm.models.tables import Job
from helm.tui.app import HelmApp
from helm.tui.rows import AGENT_COLUMNS
from helm.tui.screens.detail import RunDetailScreen
from helm.tui.screens.spend import SpendScreen
from helm.tui.widgets.tables import KeyedTable
from helm.workspace import Workspace

MakeApp = Callable[..., HelmApp]
JOB, LAST = AGENT_COLUMNS.index("job"), AGENT_COLUMNS.index("last")
FAIL_NOTE = "screen 1.3150 vs the base's screen 1.3100 (run 14): +0.0050 bpb, does not beat"


@dataclass
class Screens:
    ref: int  # the base's screen
    passed: int  # a candidate's screen that beat it
    full: int  # the full run it earned (kept: the best)
    failed: int  # charlie's screen that did not (charlie's last run)
    live: int  # a screen running now (charlie's job)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def _job(ws: Workspace, cost: float | None, **kw: object) -> None:
    """A job row; a cost of None is set after the insert (as an end of a try writes it)."""
    with ws.store.write() as s:
        job = Job(gpus=1, queued_at=T0 - 500, **kw)  # type: ignore[arg-type]
        s.add(job)
        s.flush()
        job.cost = cost
        s.add(job)


def add_screens(ws: Workspace) -> Screens:
    with ws.db(write=True) as db:

        def run(**kw: object) -> int:
            return insert_run(db, created_at=T0 - 300, finished_at=T0 - 100, **kw)

        ref = run(agent="bravo", screen=True, status="screened", val_bpb=1.3100)
        passed = run(
            agent="bravo", screen=True, status="screen-pass", val_bpb=1.3060, screen_ref_id=ref
        )
        full = run(agent="bravo", status="keep", val_bpb=1.1800, screen_run_id=passed)
        failed = run(
            agent="charlie",
            screen=True,
            status="screen-fail",
            val_bpb=1.3150,
            screen_ref_id=ref,
            verdict_note=FAIL_NOTE,
        )
        live = insert_run(db, agent="charlie", screen=True, status="running", created_at=T0 - 50)
    _job(ws, 2.0, run_id=9, state="succeeded", gpu_seconds=3600.0)  # priced: $2 for run 9
    _job(ws, None, run_id=ref, state="succeeded", gpu_seconds=600.0)  # a host with no price
    _job(
        ws,
        0.0,
        id=9,
        run_id=live,
        agent="charlie",
        state="running",
        host="h100-a",
        gpu_ids_json="[2]",
        started_at=T0 - 40,
    )
    return Screens(ref, passed, full, failed, live)


def cells(app: HelmApp, table: str, key: str) -> list[Text | str]:
    return list(app.main.query_one(f"#{table}", KeyedTable).get_row(key))


def plain(cell: object) -> str:
    return getattr(cell, "plain", str(cell))


def styles(cell: object) -> set[str]:
    assert isinstance(cell, Text)
    return {str(s.style) for s in cell.spans} | {str(cell.style)}


async def test_a_run_at_risk_is_marked_until_it_is_aborted(campaign: Workspace) -> None:
    app = HelmApp(campaign, start_daemon=False, keymap={}, clock=lambda: T0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert "at risk" not in plain(cells(app, "agents", "agent:alpha")[JOB])
        with campaign.db(write=True) as db:  # what the abort service posts, once
            post_feed(
                db, "run 12 at risk", kind="system", run_id=12, tags=("early-abort", "at-risk")
            )
        await settle(app, pilot, fresh=True)
        job = cells(app, "agents", "agent:alpha")[JOB]
        assert plain(job) == "#1 h100-a:0,1 ⚠ at risk"
        assert app.palette.warning in styles(job)
        with campaign.db(write=True) as db:  # stopped: the run is aborted, its job ends
            update_run(db, 12, status="aborted")
        with campaign.store.write() as s:
            job_row = s.get(Job, 1)
            assert job_row is not None
            job_row.state = "cancelled"
            s.add(job_row)
        await settle(app, pilot, fresh=True)
        row = cells(app, "agents", "agent:alpha")
        assert "at risk" not in plain(row[JOB])
        assert plain(row[LAST]) == "#12 - aborted"
        assert app.palette.warning in styles(row[LAST])


async def test_screens_are_marked_and_dim(campaign: Workspace) -> None:
    s = add_screens(campaign)
    app = HelmApp(campaign, start_daemon=False, keymap={}, clock=lambda: T0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        row = cells(app, "agents", "agent:charlie")
        assert plain(row[JOB]) == "#9 h100-a:2 screen"
        assert plain(row[LAST]) == f"#{s.failed} 1.3150 screen-fail"
        assert styles(row[LAST]) == {app.palette.muted}
        board = app.main.query_one("#leaderboard", KeyedTable)
        assert f"run:{s.full}" in board.keys  # the full run is ranked, its screens are not
        assert not {f"run:{i}" for i in (s.ref, s.passed, s.failed)} & set(board.keys)


async def _info(app: HelmApp, pilot: object, run_id: int) -> str:
    screen = RunDetailScreen(run_id)
    await app.push_screen(screen)
    info = screen.query_one("#info", Static)
    await until(lambda: "val_bpb" in plain(info.content))
    return plain(info.content)


async def test_the_detail_links_screens_and_full_runs(campaign: Workspace) -> None:
    s = add_screens(campaign)
    app = HelmApp(campaign, start_daemon=False, keymap={}, clock=lambda: T0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        full = await _info(app, pilot, s.full)
        assert f"screen   #{s.passed} 1.3060 screen-pass" in full
        assert f"vs base  -0.0040 (base's screen #{s.ref} 1.3100)" in full
        app.pop_screen()
        passed = await _info(app, pilot, s.passed)
        assert "kind     screen" in passed and f"full run #{s.full}" in passed
        app.pop_screen()
        failed = await _info(app, pilot, s.failed)
        assert "vs base  +0.0050" in failed
        assert f"full run none: {FAIL_NOTE}" in failed.replace("\n", "")
        app.pop_screen()
        ref = await _info(app, pilot, s.ref)
        assert "full run none: a base's screen" in ref
        app.pop_screen()
        with campaign.db(write=True) as db:  # a candidate's screen names its base's at once
            pending = insert_run(db, agent="charlie", description="screen: pending",
                                 status="running", screen=True, screen_ref_id=s.ref)  # fmt: skip
        waiting = await _info(app, pilot, pending)
        assert "full run not judged yet" in waiting and "a base's screen" not in waiting
        app.pop_screen()
        plain_run = await _info(app, pilot, 10)  # neither: no screen lines
        assert "screen" not in plain_run


async def test_money_per_kept_improvement_screen(campaign: Workspace) -> None:
    s = add_screens(campaign)
    app = HelmApp(campaign, start_daemon=False, keymap={}, clock=lambda: T0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("$")
        assert isinstance(app.screen, SpendScreen)
        table = app.screen.query_one("#spend", DataTable)
        await until(lambda: table.row_count == 2)
        newest, first = (list(map(plain, table.get_row(k))) for k in ("0", "1"))
        # the pin's base is run 8 (1.1924); run 10 (1.1844) is the first to beat it, having
        # cost (with everything made before it) run 9's $2.00
        assert first == ["40m", "#10", "1.1844", "−0.0080", "1.00", "$2.00", "−4.00e-03"]
        # the full run through a screen lowered it again; a screen since ran unpriced: "-"
        assert newest[:4] == ["1m", f"#{s.full}", "1.1800", "−0.0044"]
        assert newest[5:] == ["-", "-"]
        title = plain(app.screen.query_one("#title", Static).content)
        assert "2 improvement(s)" in title and "for -" in title
        await pilot.press("escape")
        assert app.screen is app.main
