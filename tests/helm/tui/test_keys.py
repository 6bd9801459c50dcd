"""Movement and the one registry (issue 16), driven through the Pilot on the filled campaign.

Each test presses what a k9s/lazygit user presses and checks what moved: the cursor row,
the scroll offset, the zoomed pane, the focused pane, the active tab. Then the registry:
every binding of every screen and dialog comes from it, a remapped dialog key works and
shows in help, and the palette lists helm's commands only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Log, TabbedContent
from tui_campaign import SIZE, settle

from helm.models.jobs import find_job
from helm.tui import commands as cmds
from helm.tui.app import HelmApp
from helm.tui.screens.community import CommunityScreen
from helm.tui.screens.detail import RunDetailScreen
from helm.tui.screens.dialogs import (
    BroadcastScreen,
    ConfirmScreen,
    Dialog,
    PinScreen,
    SwarmScreen,
)
from helm.tui.screens.main import MainScreen
from helm.tui.screens.spend import SpendScreen
from helm.tui.screens.views import DiffScreen, HelpScreen, PlotScreen
from helm.tui.widgets.tables import KeyedTable

MakeApp = Callable[..., HelmApp]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def table(app: HelmApp, name: str) -> KeyedTable:
    return app.main.query_one(f"#{name}", KeyedTable)


def help_rows(app: HelmApp) -> dict[str, tuple[str, ...]]:
    """The help screen's rows by command id (the screen must be on top)."""
    grid = app.screen.query_one(DataTable)
    return {grid.get_row_at(i)[3]: tuple(grid.get_row_at(i)) for i in range(grid.row_count)}


# Movement on the main screen ------------------------------------------------------------------
async def test_j_k_move_the_cursor_of_the_focused_pane(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        board = table(app, "leaderboard")
        assert app.main.focused is board and board.cursor_row == 0
        await pilot.press("j", "j")
        assert board.cursor_row == 2
        await pilot.press("k")
        assert board.cursor_row == 1


async def test_g_G_home_end_jump_to_the_first_and_last_row(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        board = table(app, "leaderboard")
        last = board.row_count - 1
        await pilot.press("G")
        assert board.cursor_row == last
        await pilot.press("g")
        assert board.cursor_row == 0
        await pilot.press("end")
        assert board.cursor_row == last
        await pilot.press("home")
        assert board.cursor_row == 0


async def test_end_on_the_feed_jumps_down_not_sideways(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("3")
        feed = table(app, "feed")
        assert app.main.focused is feed
        await pilot.press("end")
        await pilot.pause()
        assert feed.cursor_row == feed.row_count - 1
        assert feed.scroll_x == 0


async def test_page_down_and_page_up_move_by_a_page(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 20)) as pilot:  # short panes: 11 runs are > a page
        await settle(app, pilot)
        await pilot.press("2")
        board = table(app, "leaderboard")
        await pilot.press("pagedown")
        down = board.cursor_row
        assert 0 < down <= board.row_count - 1
        await pilot.press("pageup")
        assert board.cursor_row == 0


async def test_number_keys_focus_each_pane(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key, name in (("3", "feed"), ("4", "fleet"), ("2", "leaderboard"), ("1", "agents")):
            await pilot.press(key)
            assert app.main.focused is table(app, name), key


async def test_z_zooms_the_focused_pane_and_esc_restores(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "z")
        assert app.main.maximized is app.main.query_one("#pane-leaderboard")
        await pilot.press("z")
        assert app.main.maximized is None
        await pilot.press("3", "z")
        assert app.main.maximized is app.main.query_one("#pane-feed")
        await pilot.press("escape")
        assert app.main.maximized is None
        assert app.main.focused is table(app, "feed")


async def test_j_types_into_the_filter_instead_of_moving(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", "j", "home", "k")
        box = app.main.query_one("#filter")
        assert box.value == "kj"  # type: ignore[attr-defined]  # home moved the text cursor


async def test_the_progress_plot_moved_to_v(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("g")
        assert app.screen is app.main
        await pilot.press("v")
        assert isinstance(app.screen, PlotScreen)


# Movement in the run detail ---------------------------------------------------------------------
async def _open_detail(app: HelmApp, pilot: object, lines: int = 0) -> RunDetailScreen:
    if lines:
        with open(app.ws.job_dir(1) / "train.log", "a") as fh:
            fh.writelines(f"step:{1200 + i}/2000 train_loss:2.8000\n" for i in range(lines))
    await pilot.press("1", "enter")  # type: ignore[attr-defined]
    screen = app.screen
    assert isinstance(screen, RunDetailScreen)
    log = screen.query_one(Log)
    await until(lambda: log.line_count >= 15 + lines)
    await pilot.pause()  # type: ignore[attr-defined]
    return screen


async def test_detail_tabs_by_brackets_and_numbers(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = await _open_detail(app, pilot)
        tabs = screen.query_one(TabbedContent)
        assert tabs.active == "tab-log"
        await pilot.press("right_square_bracket")
        assert tabs.active == "tab-diff"
        await pilot.press("left_square_bracket")
        assert tabs.active == "tab-log"
        await pilot.press("2")
        assert tabs.active == "tab-diff"
        assert screen.focused is screen.query_one("#diff")  # j/k now scroll the diff
        await pilot.press("1")
        assert tabs.active == "tab-log" and screen.focused is screen.query_one(Log)


async def test_detail_tab_keys_are_on_screen_and_in_the_footer(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = await _open_detail(app, pilot)
        labels = [str(t.label) for t in screen.query("ContentTab")]
        assert labels[0].startswith("1 ") and labels[1].startswith("2 ")
        shown = {b.id for _, b, *_ in screen.active_bindings.values() if b.show}
        assert {"next_tab", "prev_tab"} <= shown
        title = str(screen.query_one("#title").render())
        assert "[" in title and "]" in title and "tab" in title


async def test_detail_log_scrolls_with_g_G_j_k(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = await _open_detail(app, pilot, lines=200)
        log = screen.query_one(Log)
        assert screen.focused is log
        await until(lambda: log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y)
        await pilot.press("g")
        await pilot.pause()
        assert log.scroll_y == 0
        await pilot.press("j", "j", "j")
        await pilot.pause()
        assert log.scroll_y == 3
        await pilot.press("k")
        await pilot.pause()
        assert log.scroll_y == 2
        await pilot.press("G")
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y


async def test_detail_z_zooms_the_log(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = await _open_detail(app, pilot)
        await pilot.press("z")
        assert screen.maximized is screen.query_one(Log)
        await pilot.press("escape")  # first unzooms, then goes back
        assert screen.maximized is None and app.screen is screen
        await pilot.press("escape")
        assert app.screen is app.main


# The registry ---------------------------------------------------------------------------------
SCREENS = [
    HelmApp,
    MainScreen,
    RunDetailScreen,
    DiffScreen,
    PlotScreen,
    SpendScreen,
    CommunityScreen,
    HelpScreen,
    Dialog,
    ConfirmScreen,
    BroadcastScreen,
    PinScreen,
    SwarmScreen,
]


def _own_bindings(cls: type) -> list[Binding]:
    out = []
    for b in cls.__dict__.get("BINDINGS", []):
        out.extend(Binding.make_bindings([b]))
    return out


@pytest.mark.parametrize("cls", SCREENS, ids=lambda c: c.__name__)
def test_every_binding_of_every_screen_comes_from_the_registry(cls: type) -> None:
    for b in _own_bindings(cls):
        assert b.id in cmds.BY_ID, f"{cls.__name__}: {b.key} -> {b.action} is not in the registry"
        assert cmds.BY_ID[b.id].action == b.action


def test_the_promotion_wizard_keys_are_in_the_registry() -> None:
    """The lead switches ``PromoteScreen.BINDINGS`` to ``cmds.bindings_for(cmds.PROMOTE)``."""
    from helm.tui.screens.promote import PromoteScreen

    assert {c.id for c in cmds.commands_for(cmds.PROMOTE)} == {
        "promote_confirm",
        "promote_back",
        "promote_close",
    }
    for b in _own_bindings(PromoteScreen):
        assert b.id in cmds.BY_ID, f"PromoteScreen: {b.key} -> {b.action}"


async def test_a_remapped_dialog_key_works_and_shows_in_help(make_app: MakeApp) -> None:
    app = make_app(keymap={"confirm_yes": "o"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("1", "c")  # alpha's job 1
        assert isinstance(app.screen, ConfirmScreen)
        assert "(o)" in str(app.screen.query_one("#yes").label)  # type: ignore[attr-defined]
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # y no longer answers
        await pilot.press("o")
        await until(lambda: not isinstance(app.screen, ConfirmScreen))
        await until(lambda: bool(find_job_cancel(app)))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = help_rows(app)
        assert rows["confirm_yes"][0] == "o"
        for dialog_key in ("confirm_no", "dialog_close", "help_close", "promote_confirm"):
            assert dialog_key in rows


def find_job_cancel(app: HelmApp) -> bool:
    with app.ws.db(write=False) as db:
        return bool(find_job(db, 1)["cancel_requested"])  # type: ignore[index]


async def test_help_lists_movement_with_the_current_keys(make_app: MakeApp) -> None:
    app = make_app(keymap={"cursor_down": "ctrl+n"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "ctrl+n")
        assert table(app, "leaderboard").cursor_row == 1
        await pilot.press("question_mark")
        rows = help_rows(app)
        assert rows["cursor_down"][0] == "ctrl+n"
        for ident in ("cursor_up", "top", "bottom", "page_up", "page_down", "zoom", "next_tab"):
            assert ident in rows
        # movement works inside help too (its own table)
        grid = app.screen.query_one(DataTable)
        await pilot.press("G")
        assert grid.cursor_row == grid.row_count - 1


def _palette_prompts(app: HelmApp) -> list[str]:
    return [str(o.hit.text) for o in app.screen.query_one(CommandList).options]  # type: ignore[attr-defined]


async def test_the_palette_lists_only_helm_commands(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await until(lambda: len(_palette_prompts(app)) > 5)
        prompts = _palette_prompts(app)
        labels = {
            f"{c.description} ({cmds.display_key(c.key)})" for c in cmds.palette_commands(app.main)
        }
        assert set(prompts) <= labels, set(prompts) - labels
        for builtin in ("Keys", "Screenshot", "Maximize", "Minimize"):
            assert not any(p.startswith(builtin) for p in prompts), builtin
        await pilot.press(*"screenshot")
        await pilot.pause(0.3)
        assert _palette_prompts(app) == []
