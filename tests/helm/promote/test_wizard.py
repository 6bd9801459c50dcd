"""The TUI's promotion wizard, driven with Textual's Pilot up to its confirmation.

The run is a finished one with a log written by hand in the baseline's format (no training
here): planning reads it for the pre-flight validation. The point under test is that the
plan is shown and nothing at all is queued before the operator says yes.
"""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.widgets import Button, Input, RadioButton, Static

from helm.tui.screens.promote import PromoteScreen
from helm.workspace import Workspace


def _finished_run(ws: Workspace, kit) -> int:  # noqa: ANN001
    run_id = kit.commit_run(
        ws, env=kit.FAST_ENV, seed=42, status="done", val_bpb=1.2, val_loss=2.0,
        bytes_total=1_000_000, job_id=77, description="a good one",
    )  # fmt: skip
    code = (ws.task_dir / "train_gpt.py").stat().st_size
    log = ws.job_dir(77) / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "Hyperparameters:\n  seed: 42\n"
        "step:10/10 val_loss:2.0000 val_bpb:1.2000 train_time:1000ms step_avg:100.00ms\n"
        f"Code size: {code} bytes\n"
        f"Total submission size int8+zlib: {1_000_000} bytes\n"
        "final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000\n"
    )
    return run_id


def _counts(ws: Workspace) -> tuple[int, int, int]:
    with ws.db(write=False) as db:
        return tuple(  # type: ignore[return-value]
            db.rows(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in ("run", "job", "submission")
        )


async def _until(pilot, cond, timeout_s: float = 90.0) -> None:  # noqa: ANN001
    """Let the app run until ``cond()`` holds (the plan is made in a thread worker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, f"the wizard is stuck: {app_error(pilot)}"
        await pilot.pause(0.05)


def app_error(pilot) -> str:  # noqa: ANN001
    screen = pilot.app.screen
    return f"step {screen.step}, error {screen.query_one('#error', Static).render()}"


class Host(App[None]):
    def __init__(self, ws: Workspace, run_id: int) -> None:
        super().__init__()
        self.ws, self.run_id = ws, run_id
        self.results: list[object] = []

    def on_mount(self) -> None:
        self.push_screen(PromoteScreen(self.ws, self.run_id), self.results.append)


async def test_wizard_plans_and_asks_before_any_gpu_time(task_ws: Workspace, kit) -> None:  # noqa: ANN001
    run_id = _finished_run(task_ws, kit)
    before = _counts(task_ws)
    app = Host(task_ws, run_id)
    async with app.run_test(size=(120, 44)) as pilot:
        screen = app.screen
        assert isinstance(screen, PromoteScreen)
        # no author yet: the plan step refuses with the reason, on the form, in words (a
        # person reads a form: no command-line flag), and the cursor goes to that input
        screen.query_one("#plan-btn", Button).press()  # as a click, minus geometry
        error = screen.query_one("#error", Static)
        await _until(pilot, lambda: "an author is required" in str(error.render()))
        assert "--" not in str(error.render())
        assert screen.step == "form" and screen.focused is screen.query_one("#author", Input)

        screen.query_one("#author", Input).value = "Test Author"
        screen.query_one("#github", Input).value = "tester"
        screen.query_one("#name", Input).value = "Wizard"
        screen.query_one("#plan-btn", Button).press()  # as a click, minus geometry
        await _until(pilot, lambda: screen.step == "confirm")
        plan = str(screen.query_one("#plan", Static).render())
        assert "seed 42: reuse run" in plan and "seed 1337: queue a new run" in plan
        question = str(screen.query_one("#question", Static).render())
        assert question.startswith("Queue 2 run(s) on 1 GPU(s) each")
        assert screen.query_one("#confirm").display and not screen.query_one("#form").display
        assert _counts(task_ws) == before  # planned, shown, asked: nothing queued

        await pilot.press("n")  # back to the form, still nothing queued
        assert screen.step == "form"
        assert _counts(task_ws) == before
        await pilot.press("escape")
        await pilot.pause()
    assert app.results == [None]
    assert _counts(task_ws) == before
    assert not (task_ws.submissions_dir / "records").exists()


async def test_the_wizard_defaults_to_non_record_when_a_record_is_out_of_reach(
    task_ws: Workspace, kit
) -> None:  # noqa: ANN001
    """val_bpb 1.2 against the default SOTA 1.061: no number of seeds makes it a record."""
    run_id = _finished_run(task_ws, kit)
    before = _counts(task_ws)
    app = Host(task_ws, run_id)
    async with app.run_test(size=(120, 44)) as pilot:
        screen = app.screen
        reach = screen.query_one("#reach", Static)
        # judged as the wizard opens, from the run already scored: the form says so
        await _until(pilot, lambda: "out of reach" in str(reach.render()))
        assert "mean val_bpb 1.20000 over 1 scored seed(s)" in str(reach.render())
        assert screen.query_one("#non-record", RadioButton).value
        assert not screen.query_one("#record", RadioButton).value

        screen.query_one("#author", Input).value = "Test Author"
        screen.query_one("#github", Input).value = "tester"
        await pilot.press("enter")  # in the author input: plan
        await _until(pilot, lambda: screen.step == "confirm")
        plan = str(screen.query_one("#plan", Static).render())
        assert "a record is out of reach because mean val_bpb 1.20000" in plan
        assert "track: non-record (the default, since a record is out of reach)" in plan
        assert "track_non_record_16mb" in plan and "WARNING" not in plan
        assert _counts(task_ws) == before  # the verdict came before any GPU time

        # back, against a SOTA it clears: the default track follows the plan's verdict
        await pilot.press("n")
        screen.query_one("#sota", Input).value = "10"
        screen.query_one("#plan-btn", Button).press()
        await _until(pilot, lambda: screen.step == "confirm")
        plan = str(screen.query_one("#plan", Static).render())
        assert "a record is within reach" in plan and "track: record (the default" in plan
        assert screen.query_one("#record", RadioButton).value
        assert _counts(task_ws) == before


async def test_the_chosen_track_is_the_only_one_drawn_as_chosen(task_ws: Workspace) -> None:
    """Textual draws ``▐●▌`` for a radio button on and off alike (colour alone differs)."""
    app = Host(task_ws, 1)  # no run 1: the form still draws; planning would say so
    async with app.run_test(size=(120, 44)) as pilot:
        screen = app.screen
        record = screen.query_one("#record", RadioButton)
        other = screen.query_one("#non-record", RadioButton)
        await pilot.pause()

        def glyphs() -> tuple[str, str]:
            return record.render().plain[:3], other.render().plain[:3]

        assert glyphs() == ("▐●▌", "▐○▌")
        await pilot.click("#non-record")
        assert other.value and not record.value
        assert glyphs() == ("▐○▌", "▐●▌")
