"""Every key flow, driven through the Pilot against a real store filled by the test."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from textual.widgets import DataTable, Log
from tui_campaign import SIZE, settle

from helm.models.agents import list_agents
from helm.models.directives import list_directives
from helm.models.jobs import find_job, list_jobs
from helm.models.pins import latest_pin
from helm.models.runs import count_runs
from helm.tui import commands as cmds
from helm.tui import ops
from helm.tui.app import HelmApp
from helm.tui.screens.detail import RunDetailScreen
from helm.tui.screens.dialogs import BroadcastScreen, ConfirmScreen, PinScreen, SwarmScreen
from helm.tui.screens.views import DiffScreen, HelpScreen, PlotScreen
from helm.tui.widgets.tables import KeyedTable

MakeApp = Callable[..., HelmApp]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def messages(app: HelmApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def rows(app: HelmApp, name: str) -> list[str]:
    return app.main.query_one(f"#{name}", KeyedTable).keys


async def test_broadcast_reaches_the_store_with_targets(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        assert isinstance(app.screen, BroadcastScreen)
        await pilot.press(*"try int5")
        await pilot.press("tab", *"alpha,charlie", "enter")
        await until(lambda: any("directive #2" in m for m in messages(app)))
        with app.ws.db(write=False) as db:
            d = list_directives(db, directive_id=2)[0]
        assert d["text"] == "try int5" and d["targets"] == ["alpha", "charlie"]
        assert [x["agent"] for x in d["deliveries"]] == ["alpha", "charlie"]
        # the header shows the new directive's delivery and acknowledgement
        await settle(app, pilot, fresh=True)
        assert "dir #2 0/2→0✓" in str(app.main.header(app.snapshot))


async def test_broadcast_to_all_and_resend_a_saved_directive(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        await pilot.press("tab", "tab", "enter")  # pick "try int5 for MLP weights" from the list
        await pilot.press("enter")
        await until(lambda: any("directive #2" in m for m in messages(app)))
    with app.ws.db(write=False) as db:
        d = list_directives(db, directive_id=2)[0]
    assert d["text"] == "try int5 for MLP weights" and d["targets"] is None
    assert len(d["deliveries"]) == 3


async def test_cancel_asks_then_cancels(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("1", "c")  # alpha's row: job 1, running
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        with app.ws.db(write=False) as db:
            assert not find_job(db, 1)["cancel_requested"]  # type: ignore[index]
        await pilot.press("c", "y")
        await until(lambda: any("cancelling job #1" in m for m in messages(app)))
    with app.ws.db(write=False) as db:
        assert find_job(db, 1)["cancel_requested"]  # type: ignore[index]


async def test_filter_narrows_and_escape_clears(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert len(rows(app, "leaderboard")) == 11 and len(rows(app, "agents")) == 4
        await pilot.press("slash", *"bravo")
        await until(lambda: rows(app, "agents") == ["agent:bravo"])
        assert rows(app, "leaderboard") == ["run:10", "run:7", "run:4", "run:1"]
        assert rows(app, "feed") == ["post:1"]
        await pilot.press("escape")
        await until(lambda: len(rows(app, "agents")) == 4)


async def test_help_lists_every_command_of_the_registry(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one(DataTable)
        listed = {table.get_row_at(i)[3]: table.get_row_at(i) for i in range(table.row_count)}
        assert set(listed) == {c.id for c in cmds.REGISTRY}
        for c in cmds.REGISTRY:
            assert listed[c.id][1] == c.description
        # and the footer's bindings are the registry's too
        app.pop_screen()
        await pilot.pause()
        shown = {b.id for _, b, *_ in app.active_bindings.values() if b.show}
        assert shown <= {c.id for c in cmds.REGISTRY}


async def test_keymap_override_from_config(campaign, make_app: MakeApp) -> None:
    campaign.config_path.write_text('[keys]\nbroadcast = "B"\n')
    app = make_app(keymap=None)  # read config.toml like `helm` does
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        assert not isinstance(app.screen, BroadcastScreen)
        await pilot.press("B")
        assert isinstance(app.screen, BroadcastScreen)
        await pilot.press("escape", "question_mark")
        table = app.screen.query_one(DataTable)
        keys = {table.get_row_at(i)[3]: table.get_row_at(i)[0] for i in range(table.row_count)}
        assert keys["broadcast"] == "B"


async def test_bad_keymap_is_reported_not_fatal(campaign, make_app: MakeApp) -> None:
    campaign.config_path.write_text('[keys]\nnope = "x"\n')
    app = make_app(keymap=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("nope" in m for m in messages(app))


async def test_enter_opens_run_detail_and_follows_the_log(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("1", "enter")
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == 12
        log = app.screen.query_one(Log)
        await until(lambda: log.line_count >= 15)
        with open(app.ws.job_dir(1) / "train.log", "a") as fh:
            fh.write("step:1300/2000 train_loss:2.7700 train_time:78000ms step_avg:60.00ms\n")
        await until(lambda: log.lines[-1].startswith("step:1300/2000"))
        assert app.screen.curve.train[-1] == (1300.0, 2.77)
        await pilot.press("escape")
        assert app.screen is app.main


async def test_mark_then_diff_against_the_marked_run(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "m")  # run 11 (best) marked
        assert app.marked_run == 11
        await pilot.press("down", "d")  # run 10 diffed against it
        assert isinstance(app.screen, DiffScreen)
        assert (app.screen.run_a, app.screen.run_b) == (10, 11)
        await until(lambda: "#11 → #10" in str(app.screen.query_one("#title").render()))
        await pilot.press("escape")


async def test_promote_key_opens_the_wizard_for_the_selected_run(make_app: MakeApp) -> None:
    from helm.tui.screens.promote import PromoteScreen

    app = make_app()

    def counts() -> tuple[int, int]:
        with app.ws.db(write=False) as db:
            return len(list_jobs(db, live_only=False, limit=1000)), count_runs(db)

    before = counts()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "P")  # the leaderboard's first row: run 11
        assert isinstance(app.screen, PromoteScreen)
        assert app.screen.run_id == 11
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, PromoteScreen))
    assert counts() == before  # opening and closing the wizard queues nothing


async def test_swarm_stop_agent_asks_first(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("1", "down", "s")  # bravo
        assert isinstance(app.screen, SwarmScreen)
        await pilot.click("#stop")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(lambda: any("stopping 1 agent" in m for m in messages(app)))
    with app.ws.db(write=False) as db:
        desired = {r["name"]: r["desired"] for r in list_agents(db)}
    assert desired == {"alpha": "up", "bravo": "down", "charlie": "up"}


async def test_pin_failure_shows_the_error_line(make_app: MakeApp, monkeypatch) -> None:
    failing = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('helm: no PR 99999\\n'); sys.exit(1)",
    ]
    monkeypatch.setattr(ops, "helm_argv", lambda ws, *args: failing)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        assert isinstance(app.screen, PinScreen)
        await pilot.press(*"99999", "enter")
        # never audited: the operator is warned first and must confirm
        await until(lambda: isinstance(app.screen, ConfirmScreen))
        assert "never been audited" in app.screen.question
        await pilot.press("y")
        await until(lambda: "no PR 99999" in messages(app))


async def test_pin_pr_declined_after_the_audit_warning_pins_nothing(
    make_app: MakeApp, monkeypatch
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(ops, "run_helm", lambda ws, *args, **kw: calls.append(args) or "")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p", *"374", "enter")
        await until(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause()
    assert calls == []


async def test_pin_file_changes_the_base(campaign, make_app: MakeApp) -> None:
    base = campaign.root / "my_train_gpt.py"
    base.write_text("print('a base')\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p", *str(base), "enter")
        await until(lambda: any("pin" in m.lower() for m in messages(app)), timeout=60)
    with campaign.db(write=False) as db:
        pin = latest_pin(db)
    assert pin is not None and (pin["kind"], pin["ref"]) == ("file", str(base)), messages(app)


async def test_palette_runs_registry_commands(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p", *"progress plot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, PlotScreen))


async def test_refresh_rate_and_pause(make_app: MakeApp) -> None:
    app = make_app(refresh_rate=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await until(lambda: app.refresh_count >= 2)  # the loop reschedules itself
        await pilot.press("r")
        assert app.refresh_rate == 1.0
        await pilot.press("space")
        assert app.paused and "paused" in str(app.main.header(app.snapshot))
        count = app.refresh_count
        await asyncio.sleep(1.3)
        assert app.refresh_count == count
        await pilot.press("space")
        await until(lambda: app.refresh_count > count)


async def test_worker_errors_become_notifications(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.flows.open_detail(999)
        await until(lambda: any("no run 999" in m for m in messages(app)))
        assert app.is_running
