"""The promotion's progress: each state of a seed told once, steps by tenths, errors once.

Issue 16: the wizard's progress log repeated lines and showed errors twice. The cause: every
poll that saw the store's step move (it moves with every streamed log line) wrote another
"seed S: run #R job #J running ... step N/M" line, "wrote <folder>" was written by its event
and again at the end, and a failure went both into the log and onto the error line beside it.

A seed here is really queued (``helm.remote.jobs.submit_job``) and the store is moved through
the daemon's own writes (``helm.models.job_life``: claim, mark_running, save_progress per log
line, finish with the parsed log); only the training process is replaced by a thread that
writes those rows, as many steps as a real run streams, in a few seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from textual.app import App
from textual.widgets import Log, Static

from golf_task.log_summary import LogSummary
from golf_task.logs import parse_file
from helm.agents import taskrepo as tr
from helm.models import job_life
from helm.models.runs import get_run, insert_run
from helm.models.states import JobState
from helm.promote.promote import Event, PromoteOptions, execute, prepare
from helm.tui.screens.promote import PromoteScreen
from helm.workspace import Workspace

R = 0.59  # bpb per nat of the hand-written logs
STEPS = 200


def _log_text(ws: Workspace, seed: int, bpb: float, steps: int = 10) -> str:
    loss = bpb / R
    code = (ws.task_dir / "train_gpt.py").stat().st_size
    return (
        f"Hyperparameters:\n  seed: {seed}\n"
        f"step:{steps}/{steps} val_loss:{loss:.4f} val_bpb:{bpb:.4f} train_time:1000ms "
        "step_avg:5.00ms\n"
        f"Code size: {code} bytes\n"
        "Total submission size int8+zlib: 1000000 bytes\n"
        f"final_int8_zlib_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}\n"
    )


def scored_run(ws: Workspace, kit, *, seed: int, bpb: float, job_id: int) -> int:  # noqa: ANN001
    run_id = kit.commit_run(
        ws, env=kit.FAST_ENV, seed=seed, status="done", val_bpb=bpb, val_loss=bpb / R,
        bytes_total=1_000_000, train_time_ms=1000, job_id=job_id, description="candidate",
    )  # fmt: skip
    log = ws.job_dir(job_id) / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text(_log_text(ws, seed, bpb))
    return run_id


@dataclass
class Flight:
    run_id: int
    job_id: int


def queued_seed(ws: Workspace, of: int, seed: int) -> Flight:
    """A run of the same code and config as run ``of`` on ``seed``, queued as a real job."""
    from helm.remote.jobs import submit_job

    with ws.db(write=False) as db:
        run = get_run(db, of)
    with ws.db(write=True) as db:
        run_id = insert_run(
            db, agent=None, parent_id=of, branch=run["branch"], commit=run["commit"],
            code_hash=run["code_hash"], description=f"seed {seed}", env_json=run["env_json"],
            seed=seed, gpus=1,
        )  # fmt: skip
    code = tr.export_commit(ws.task_dir, run["commit"], ws.root / f"export-{run_id}")
    job = submit_job(ws, ws.store, code, seed=seed, run_id=run_id, time_limit_s=300)
    assert job.id is not None
    return Flight(run_id, job.id)


@dataclass
class _Placement:
    job_id: int
    host: str
    gpu_ids: tuple[int, ...] = (0,)


def play_daemon(ws: Workspace, flight: Flight, seed: int, bpb: float, step_s: float) -> None:
    """What the daemon writes for a job that trains STEPS steps: claim, start, one progress
    row per streamed log line, then the end with the parsed log."""
    job_life.claim(ws.store, [_Placement(flight.job_id, "box1")])
    job_life.mark_running(ws.store, flight.job_id, 4242, "box1", "/remote/job")
    for step in range(1, STEPS + 1):
        summary = LogSummary(step=step, total_steps=STEPS, train_loss=3.0, last_val_bpb=None)
        job_life.save_progress(ws.store, flight.job_id, step * 100, summary)
        time.sleep(step_s)
    log = ws.job_dir(flight.job_id) / "train.log"
    log.write_text(_log_text(ws, seed, bpb, steps=STEPS))
    job_life.finish(
        ws.store, flight.job_id, JobState.SUCCEEDED, exit_code=0, error=None,
        summary=parse_file(log), offset=log.stat().st_size, tail="",
    )  # fmt: skip


def _opts(**kw: object) -> PromoteOptions:
    base = {"seeds": (42, 1337), "author": "Test Author", "github_id": "tester", "poll_s": 0.01}
    return PromoteOptions(**{**base, **kw})  # type: ignore[arg-type]


def test_waiting_tells_each_state_once_and_the_steps_by_tenths(task_ws: Workspace, kit) -> None:  # noqa: ANN001
    ws = task_ws
    first = scored_run(ws, kit, seed=42, bpb=4.0, job_id=81)
    flight = queued_seed(ws, first, 1337)
    prepared = prepare(ws, first, _opts(track="non-record", name="Steps"))
    assert [s.action for s in prepared.plan.slots] == ["reuse", "wait"]
    events: list[Event] = []
    daemon = threading.Thread(target=play_daemon, args=(ws, flight, 1337, 4.01, 0.005))
    daemon.start()
    try:
        result = execute(ws, prepared, events.append)
    finally:
        daemon.join()
    texts = [e.text for e in events]
    assert not [t for t, n in Counter(texts).items() if n > 1], texts  # nothing told twice
    progress = [e.text for e in events if e.kind == "progress"]
    tag = f"seed 1337: run #{flight.run_id} job #{flight.job_id}"
    # the states the seed went through, in order (the poll may miss a short one, never repeat)
    states = [t.removeprefix(tag).strip() for t in progress]
    assert states[-1] in ("succeeded on box1", "running on box1"), progress
    assert len(states) <= 4 and "running on box1" in states, progress
    steps = [e.text for e in events if e.kind == "step"]
    assert 1 <= len(steps) <= 10, steps  # 200 store updates, at most one line per tenth
    assert all(t.startswith("seed 1337: step ") for t in steps)
    assert [e.kind for e in events][-2:] == ["validating", "written"]
    assert sum(t.startswith("wrote ") for t in texts) == 1
    assert result.folder.is_dir()


# ---------------------------------------------------------------------------- the wizard


class Host(App[None]):
    def __init__(self, ws: Workspace, run_id: int) -> None:
        super().__init__()
        self.ws, self.run_id = ws, run_id

    def on_mount(self) -> None:
        self.push_screen(PromoteScreen(self.ws, self.run_id))


async def _until(pilot, cond, timeout_s: float = 90.0) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        screen = pilot.app.screen
        assert loop.time() < deadline, f"stuck at {screen.step}: {_text(screen, '#error')}"
        await pilot.pause(0.05)


def _text(screen, selector: str) -> str:  # noqa: ANN001
    return str(screen.query_one(selector, Static).render())


def _fill(screen, *, seeds: str, name: str) -> None:  # noqa: ANN001
    from textual.widgets import Input

    screen.query_one("#seeds", Input).value = seeds
    screen.query_one("#author", Input).value = "Test Author"
    screen.query_one("#github", Input).value = "tester"
    screen.query_one("#name", Input).value = name


def _visible_text(screen) -> str:  # noqa: ANN001
    """Every text the operator can see in the wizard: the Statics shown and the log's lines."""
    parts = [
        str(w.render())
        for w in screen.query(Static)
        if all(getattr(a, "display", True) for a in w.ancestors_with_self)
    ]
    parts += list(screen.query_one("#progress-log", Log).lines)
    return "\n".join(parts)


async def test_the_wizard_logs_each_thing_once_and_keeps_steps_on_a_live_line(
    task_ws: Workspace, kit
) -> None:  # noqa: ANN001
    ws = task_ws
    first = scored_run(ws, kit, seed=42, bpb=4.0, job_id=82)
    flight = queued_seed(ws, first, 1337)
    app = Host(ws, first)
    daemon = threading.Thread(target=play_daemon, args=(ws, flight, 1337, 4.01, 0.02))
    async with app.run_test(size=(120, 50)) as pilot:
        screen = app.screen
        await _until(pilot, lambda: screen.feasibility is not None)
        _fill(screen, seeds="42,1337", name="LiveLine")
        await pilot.press("enter")  # plan (Input.Submitted)
        await _until(pilot, lambda: screen.step == "confirm")
        daemon.start()
        await pilot.press("y")
        await _until(pilot, lambda: screen.step == "finished", timeout_s=120)
        daemon.join()
        lines = list(screen.query_one("#progress-log", Log).lines)
        assert not [t for t, n in Counter(lines).items() if n > 1], lines
        assert not [t for t in lines if " step " in t], lines  # steps live on the seed's line
        assert sum(t.startswith("wrote ") for t in lines) == 1, lines
        assert screen.result is not None and Path(screen.result.folder).is_dir()
        assert "seed 1337: val_bpb 4.01000000" in lines  # the score, in the log once
        status = _text(screen, "#seed-status")  # the steps: one line, replaced in place
        assert status.startswith("seed 1337: step ") and status.count("\n") == 0, status
        assert status not in lines


async def test_a_failure_is_shown_once(task_ws: Workspace, kit) -> None:  # noqa: ANN001
    """A record asked for against the verdict: the validator refuses it, and says so once."""
    ws = task_ws
    first = scored_run(ws, kit, seed=42, bpb=4.0, job_id=83)
    app = Host(ws, first)
    async with app.run_test(size=(120, 50)) as pilot:
        screen = app.screen
        await _until(pilot, lambda: screen.feasibility is not None)
        assert screen.query_one("#non-record").value  # out of reach: the default moved
        await pilot.click("#record")  # the operator insists
        _fill(screen, seeds="42", name="Insist")
        await pilot.click("#plan-btn")
        await _until(pilot, lambda: screen.step == "confirm")
        assert "WARNING: a record is out of reach" in _text(screen, "#plan")
        assert _text(screen, "#question").startswith("A record is out of reach")
        await pilot.press("y")
        await _until(pilot, lambda: screen.step == "finished")
        seen = _visible_text(screen)
        assert seen.count("validation failed") == 1, seen
        assert seen.count("3 seeds are customary") == 1, seen  # the validator's message
    assert not list((ws.submissions_dir / "records").rglob("*_Insist"))
