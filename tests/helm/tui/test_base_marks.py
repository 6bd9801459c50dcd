"""Issue 16's misleading numbers on the main screen, on a store the experiment loop wrote.

Each test drives the real app (``App.run_test``) on ``loop_campaign``'s story and reads what
is on screen: the header line and the leaderboard's cells. The numbers they expect follow
from the one definition of the base (``helm.models.base``): the base of a pin is the pinned
run (for a run pin) and the reference runs on it that re-ran it unchanged; Δ base is a run's
val_bpb minus the mean of the base of the pin it ran on; a base run shows ◆ instead.
"""

from __future__ import annotations

import re
import statistics

import pytest
from loop_campaign import Story, build
from textual.widgets import Static
from tui_campaign import SIZE, settle

from helm.models.feed import list_feed
from helm.tui.app import HelmApp
from helm.tui.rows import BOARD_COLUMNS
from helm.tui.widgets.tables import KeyedTable
from helm.workspace import Workspace

pytestmark = pytest.mark.engines

DELTA, SEEDS = BOARD_COLUMNS.index("Δ base"), BOARD_COLUMNS.index("seeds")


def app_on(ws: Workspace) -> HelmApp:
    return HelmApp(ws, start_daemon=False, keymap={})


def header(app: HelmApp) -> str:
    content = app.main.query_one("#header", Static).content
    return getattr(content, "plain", str(content))


def cells(app: HelmApp, run_id: int) -> list[str]:
    table = app.main.query_one("#leaderboard", KeyedTable)
    return [getattr(c, "plain", str(c)) for c in table.get_row(f"run:{run_id}")]


def vs_base(ws: Workspace, run_id: int) -> str:
    with ws.db(write=False) as db:
        text = next(p["text"] for p in list_feed(db, kind="result") if p["run_id"] == run_id)
    found = re.search(r"vs base (\S+?)[,)]", text)
    assert found, text
    return found.group(1).replace("\u2212", "-")


async def test_best_is_over_kept_runs_and_labelled_so(ws: Workspace) -> None:
    """Run "S 1.2797" scored lowest but was discarded (within the noise): it is not the best."""
    story = build(ws, pin=False)
    discarded, kept = story.id("S 1.2797"), story.id("S 1.28")
    app = app_on(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert story.results["S 1.2797"].verdict == "discard"
        assert f"best kept 1.2800 #{kept}" in header(app), header(app)
        assert "★" in cells(app, kept)[0] and "★" not in cells(app, discarded)[0]


async def test_seeds_count_the_same_code_and_environment(ws: Workspace) -> None:
    """Every run shares one code hash (the sweep changes only run.env): seeds counts runs of
    the same code *and* canonical environment, as ``helm diff`` does."""
    story = build(ws)
    app = app_on(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        seeds = {name: cells(app, story.id(name))[SEEDS] for name in story.results}
    assert seeds == {
        "ref a1": "2",  # S unset: seed none and seed 2
        "ref a2": "2",
        "S 1.28": "3",  # the pinned run and its two re-runs (seeds 5 and 6)
        "rerun a1": "3",
        "rerun a2": "3",
        "S 1.2797": "1",
        "S 1.29": "1",
        "S 1.27": "1",
    }


async def test_a_pinned_run_is_the_base_it_names_once(ws: Workspace) -> None:
    """Right after the pin: the header names the run once and shows the base's figures; the
    pinned run is ◆ and no row's Δ is empty; later re-runs join the base."""
    story = build(ws, rerun=False)
    pinned = story.id("S 1.28")
    app = app_on(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        head = header(app)
        # one run: the ± is the campaign's pooled seed spread (ref a1 / ref a2: 0.0002/√2)
        assert "run run" not in head and f"base run #{pinned} 1.2800 ±0.0001 (n=1)" in head, head
        assert "◆" in cells(app, pinned)[0] and cells(app, pinned)[DELTA] == "◆"
        # runs made on the init pin are compared with that pin's base: its two references
        deltas = {n: cells(app, story.id(n))[DELTA] for n in story.results}
        assert deltas == {
            "ref a1": "◆",
            "ref a2": "◆",
            "S 1.28": "◆",
            "S 1.2797": "-0.0204",  # 1.2797 - 1.3001
            "S 1.29": "-0.0099",  # 1.2902 - 1.3001
        }

        story2 = Story(ws)
        from loop_campaign import exp

        exp(ws, story2, "rerun a1", "a1", seed=5)
        exp(ws, story2, "rerun a2", "a2", seed=6)
        await settle(app, pilot, fresh=True)
        head = header(app)
        scores = [1.28, 1.2805, 1.2806]
        mean, sd = statistics.mean(scores), statistics.stdev(scores)
        assert f"base run #{pinned} {mean:.4f} ±{sd:.4f} (n=3)" in head, head
        for run_id in (pinned, story2.id("rerun a1"), story2.id("rerun a2")):
            assert "◆" in cells(app, run_id)[0] and cells(app, run_id)[DELTA] == "◆"


async def test_feed_and_leaderboard_use_the_same_base(ws: Workspace) -> None:
    """The feed's "vs base" and the leaderboard's Δ base of a run are the same number."""
    story = build(ws)
    app = app_on(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for name in ("S 1.27", "S 1.29", "S 1.2797"):
            run_id = story.id(name)
            assert vs_base(ws, run_id) == cells(app, run_id)[DELTA], name
        mean = statistics.mean([1.28, 1.2805, 1.2806])
        assert cells(app, story.id("S 1.27"))[DELTA] == f"{1.2706 - mean:+.4f}"
