"""Live tables on a running app: they follow the newest rows, and show every cell whole.

Issue 16: the feed stopped following new posts once it was full (the cursor clung to the post
it started on and the view followed it down), and column widths froze at the first data
(``trainin``, ``#6 3``) or at the widest ever seen. Each test drives a real ``HelmApp`` on a
real store and changes the store while the app runs.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import select
from tui_campaign import SIZE, T0, settle

from helm import fmt
from helm.models.tables import Agent, FeedPost, Job, Run
from helm.tui.app import HelmApp
from helm.tui.widgets.tables import KeyedTable
from helm.workspace import Workspace

MakeApp = Callable[..., HelmApp]


def table(app: HelmApp, name: str) -> KeyedTable:
    return app.main.query_one(f"#{name}", KeyedTable)


def top_key(t: KeyedTable) -> str:
    """The key of the first row on screen (every row is one line high)."""
    return t.keys[round(t.scroll_y)]


def shown(t: KeyedTable) -> str:
    """The table's lines as they are drawn (header and the rows in view)."""
    return "\n".join(t.render_line(y).text for y in range(t.size.height))


def post(ws: Workspace, n: int, start: int) -> list[int]:
    """``n`` new feed posts, newest last; their ids."""
    with ws.store.write() as s:
        rows = [
            FeedPost(
                agent="bravo",
                kind="insight",
                text=f"post {start + i}",
                created_at=T0 - 50 + (start + i) / 100,
            )
            for i in range(n)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]  # type: ignore[misc]


async def test_feed_follows_new_posts_past_its_height(campaign: Workspace, make_app: MakeApp):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        feed = table(app, "feed")
        height = feed.size.height
        newest = 0
        for rnd in range(4):  # four rounds of posts, more than the pane can hold
            newest = post(campaign, height, start=rnd * height)[-1]
            await settle(app, pilot, fresh=True)
            await pilot.pause()
            assert feed.row_count > height
            assert feed.keys[0] == f"post:{newest}"
            assert feed.cursor_row == 0 and feed.selected_key == f"post:{newest}", rnd
            assert feed.scroll_y == 0 and top_key(feed) == f"post:{newest}", rnd
            assert f"post {rnd * height + height - 1}" in shown(feed)


async def test_feed_stays_where_the_user_moved(campaign: Workspace, make_app: MakeApp):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        feed = table(app, "feed")
        post(campaign, feed.size.height, start=0)
        await settle(app, pilot, fresh=True)
        feed.focus()
        for _ in range(3):
            await pilot.press("down")
        await pilot.pause()
        chosen, on_screen = feed.selected_key, feed.cursor_row - round(feed.scroll_y)
        assert feed.cursor_row == 3 and chosen is not None
        for rnd in range(3):
            post(campaign, feed.size.height, start=100 + rnd * 50)
            await settle(app, pilot, fresh=True)
            await pilot.pause()
            assert feed.selected_key == chosen, rnd  # the cursor stays on its post
            assert feed.cursor_row - round(feed.scroll_y) == on_screen, rnd  # at its place


async def test_a_scrolled_feed_keeps_its_view(campaign: Workspace, make_app: MakeApp):
    """Scrolled with the wheel (the cursor still on the top row): the view stays put."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        feed = table(app, "feed")
        post(campaign, 3 * feed.size.height, start=0)
        await settle(app, pilot, fresh=True)
        feed.scroll_to(y=5, animate=False)
        await pilot.pause()
        first = top_key(feed)
        post(campaign, 4, start=500)
        await settle(app, pilot, fresh=True)
        await pilot.pause()
        assert top_key(feed) == first
        feed.move_cursor(row=0)  # the cursor back on the first row: it follows again
        await pilot.pause()
        assert feed.scroll_y == 0
        newest = post(campaign, 2, start=600)[-1]
        await settle(app, pilot, fresh=True)
        await pilot.pause()
        assert top_key(feed) == f"post:{newest}" and feed.selected_key == f"post:{newest}"


async def test_leaderboard_cursor_on_top_follows_a_new_best(campaign: Workspace, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        board = table(app, "leaderboard")
        assert board.cursor_row == 0
        with campaign.store.write() as s:
            s.add(Run(id=40, agent="bravo", status="keep", val_bpb=1.0, created_at=T0))
        await settle(app, pilot, fresh=True)
        assert board.keys[0] == "run:40" and board.selected_key == "run:40"


async def test_cells_that_grow_are_shown_whole(campaign: Workspace, make_app: MakeApp):
    """``waiting`` then ``training`` (the column was 7 wide), ``-`` then ``#14 1.2000 keep``."""
    with campaign.store.write() as s:
        for a in s.exec(select(Agent)).all():
            a.state = "waiting"
            a.current_run_id = None
            s.add(a)
        for old in [*s.exec(select(Job)).all(), *s.exec(select(Run)).all()]:
            s.delete(old)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        agents = table(app, "agents")
        assert "waiting" in shown(agents)
        with campaign.store.write() as s:
            bravo = s.exec(select(Agent).where(Agent.name == "bravo")).one()
            bravo.state = "training"
            s.add(bravo)
            s.add(Run(id=14, agent="bravo", status="keep", val_bpb=1.2, created_at=T0 - 9))
        await settle(app, pilot, fresh=True)
        await pilot.pause()
        assert "training" in shown(agents)
        assert "#14 1.2000 keep" in shown(agents)


async def test_widths_shrink_to_what_is_shown(campaign: Workspace, make_app: MakeApp):
    """A long description leaves the leaderboard (filtered out): its column narrows."""
    with campaign.store.write() as s:
        s.add(Run(id=30, agent="bravo", status="keep", val_bpb=1.5, description="x" * 70))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        board = table(app, "leaderboard")
        assert board.columns["what"].content_width == 70  # type: ignore[index]
        app.main.filter_text = "int5"
        await settle(app, pilot, fresh=True)
        await pilot.pause()
        assert "run:30" not in board.keys
        shown_what = [r["description"] for r in app.snapshot.leaderboard]  # type: ignore[union-attr]
        assert shown_what == ["int5 mlp"]
        assert board.columns["what"].content_width == len("int5 mlp")  # type: ignore[index]


async def test_a_job_past_its_last_step_shows_its_phase(campaign: Workspace, make_app: MakeApp):
    """Job #1 (alpha's, 1200/2000) through every phase the parser reports: the cell names the
    phase and its time (the frozen clock is T0), never ``100%`` with a ``0s`` ETA."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        agents = table(app, "agents")
        assert "60%" in shown(agents) and "48s" in shown(agents)
        for i, phase in enumerate(("eval", "quantize", "round trip", "sliding", "ttt", "done")):
            with campaign.store.write() as s:
                job = s.exec(select(Job).where(Job.id == 1)).one()
                job.step, job.eta_s = 2000, 0.0
                job.phase, job.phase_at = phase, T0 - 12 - 30 * i
                s.add(job)
            await settle(app, pilot, fresh=True)
            cells = agents.get_row("agent:alpha")
            progress = str(cells[2])
            assert progress.strip() == f"{phase} {fmt.duration(12 + 30 * i)}", phase
            assert str(cells[4]) == fmt.MISSING  # no ETA: the steps are done
            assert f"{phase} {fmt.duration(12 + 30 * i)}" in shown(agents)
            assert "100%" not in shown(agents)
        with campaign.store.write() as s:  # a new try of the job trains again: the bar is back
            job = s.exec(select(Job).where(Job.id == 1)).one()
            job.step, job.phase, job.phase_at, job.eta_s = 300, None, None, 90.0
            s.add(job)
        await settle(app, pilot, fresh=True)
        assert "15%" in shown(agents) and "1m" in shown(agents)
