"""The directive composer suggests what the agents present can follow (issue 16).

The campaign has one Claude agent (alpha, reads prose) and two sweep agents (bravo, charlie:
only ``sweep/set/focus/stop``). The composer must say which is which, offer grammar lines
the sweep agents parse and prose only when a prose reader is there, and tell, as the
operator types, who can follow the text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.widgets import Input, OptionList, Static
from tui_campaign import SIZE, settle

from helm.agents.directives import parse_directive
from helm.models.agents import update_agent
from helm.tui import composer
from helm.tui.app import HelmApp
from helm.tui.data import AgentView
from helm.tui.screens.dialogs import BroadcastScreen
from helm.workspace import Workspace

MakeApp = Callable[..., HelmApp]


def _agent(name: str, driver: str, state: str = "thinking", desired: str = "up") -> AgentView:
    return AgentView(name, driver, state, desired, None, None, None, None)


def _parses(text: str) -> bool:
    try:
        parse_directive(text)
    except ValueError:
        return False
    return True


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def _text(screen: BroadcastScreen, ident: str) -> str:
    return str(screen.query_one(f"#{ident}", Static).render())


def _suggested(screen: BroadcastScreen) -> list[str]:
    return [s.text for s in screen.suggestions]


# The pure part ---------------------------------------------------------------------------------
def test_audience_splits_sweep_from_prose_readers_and_skips_stopped_agents() -> None:
    agents = [
        _agent("a", "claude"),
        _agent("b", "sweep"),
        _agent("c", "sweep", state="stopped"),
        _agent("d", "aider --yes {prompt}"),
        _agent("e", "codex", desired="down"),
    ]
    aud = composer.audience(agents)
    assert aud.sweep == ("b",)
    assert aud.prose == (("a", "claude"), ("d", "aider --yes {prompt}"))
    assert composer.audience(agents, targets=["b"]).prose == ()


def test_sweep_only_suggestions_all_parse_and_use_the_swarms_knobs() -> None:
    runs = [
        {"id": 9, "env": {"MLP_BITS": "5", "MATRIX_LR": "0.04"}},
        {"id": 4, "env": {"MLP_BITS": "6"}},
    ]
    got = composer.suggestions(composer.audience([_agent("b", "sweep")]), runs)
    assert got and all(_parses(s.text) for s in got)
    assert any(s.text.startswith("sweep MLP_BITS=") for s in got)
    assert not any(s.who == composer.PROSE for s in got)


def test_prose_suggestions_only_for_prose_readers() -> None:
    got = composer.suggestions(composer.audience([_agent("a", "claude")]), [])
    assert got and all(s.who == composer.PROSE for s in got)
    assert composer.suggestions(composer.audience([]), []) == []


def test_verdict_says_who_follows_the_text() -> None:
    aud = composer.audience([_agent("a", "claude"), _agent("b", "sweep")])
    prose = composer.verdict("try int5 for MLP weights", aud)
    assert "b" in prose and "cannot follow" in prose and "a (claude)" in prose
    ok = composer.verdict("sweep MLP_BITS=4,6", aud)
    assert "cannot" not in ok and "b" in ok


# The dialog ------------------------------------------------------------------------------------
async def test_composer_names_prose_readers_and_sweep_agents(
    campaign: Workspace, make_app: MakeApp
) -> None:
    with campaign.db(write=True) as db:  # the swarm has turned one knob on two runs
        db.execute(
            "UPDATE run SET env_json = :env WHERE id IN (4, 10)", {"env": '{"MLP_BITS": "5"}'}
        )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        screen = app.screen
        assert isinstance(screen, BroadcastScreen)
        who = _text(screen, "audience")
        assert "alpha (claude)" in who and "prose" in who
        assert "bravo, charlie" in who and "sweep KEY=a,b" in who
        texts = _suggested(screen)
        kinds = {s.who for s in screen.suggestions}
        assert kinds == {composer.SWEEP, composer.PROSE}
        for s in screen.suggestions:
            if s.who == composer.SWEEP:
                assert _parses(s.text), s.text
        assert "sweep MLP_BITS=4,6,7" in texts  # the knob the runs turned, around its value
        options = screen.query_one("#suggestions", OptionList)
        assert options.option_count == len(texts)


async def test_only_sweep_agents_get_only_grammar(campaign: Workspace, make_app: MakeApp) -> None:
    with campaign.db(write=True) as db:
        update_agent(db, "alpha", driver="sweep")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        screen = app.screen
        assert isinstance(screen, BroadcastScreen)
        box = screen.query_one("#text", Input)
        assert box.placeholder != "e.g. try int5 for MLP weights"
        assert _parses(box.placeholder.removeprefix("e.g. "))
        assert all(_parses(t) for t in _suggested(screen))
        assert "no agent reads free prose" in _text(screen, "audience")
        # prose typed anyway: the composer says nobody present can follow it
        await pilot.press(*"try int5")
        await until(lambda: "cannot follow" in _text(screen, "verdict"))
        box.value = ""
        await pilot.press(*"sweep MLP_BITS=4,6")
        await until(lambda: "can follow" in _text(screen, "verdict"))
        assert "cannot" not in _text(screen, "verdict")


async def test_targets_narrow_who_is_addressed(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b", *"try int5", "tab", *"alpha")
        screen = app.screen
        assert isinstance(screen, BroadcastScreen)
        await until(lambda: "bravo" not in _text(screen, "verdict"))
        assert "alpha (claude)" in _text(screen, "verdict")
        assert "cannot" not in _text(screen, "verdict")


async def test_picking_a_suggestion_fills_the_text(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("b")
        screen = app.screen
        assert isinstance(screen, BroadcastScreen)
        screen.query_one("#suggestions", OptionList).focus()
        await pilot.press("enter")
        assert screen.query_one("#text", Input).value == screen.suggestions[0].text
        assert screen.focused is screen.query_one("#text", Input)
