"""The sweep driver at the budget (fake backend, real store and queue path): it waits
quietly (one log line, no traceback, no feed post of its own, no run), rechecks, and
resumes with the run it was refused once the budget is raised."""

from __future__ import annotations

import pytest

from helm.agents.sweep import SweepAgent
from helm.models.agents import get_agent
from helm.models.feed import list_feed
from helm.models.runs import list_runs
from helm.models.tables import Job
from helm.workspace import Workspace

SWEEP = '[agents.sweep]\nmeasure_noise = false\nkeys = ["MATRIX_LR", "SCALAR_LR"]\n'


def _spend(ws: Workspace, seconds: float) -> None:
    with ws.store.write() as s:
        s.add(Job(agent="other", state="succeeded", gpu_seconds=seconds, cost=1.0))


def _runs(ws: Workspace, agent: str) -> list[dict]:
    with ws.db(write=False) as db:
        return list_runs(db, agent=agent)


def test_sweep_waits_quietly_at_the_budget_then_resumes(
    task_ws: Workspace, agent: str, backend, capsys: pytest.CaptureFixture[str]
) -> None:
    task_ws.config_path.write_text(SWEEP + "[budget]\ngpu_hours = 1\n")
    _spend(task_ws, 3600.0)  # the campaign's hour is spent
    sa = SweepAgent(task_ws, agent, backend=backend, poll_s=0.01, seed=3, budget_wait_s=0.02)
    sa.run(max_steps=4)
    err = capsys.readouterr().err
    assert _runs(task_ws, agent) == [] and backend.submitted == []
    assert "Traceback" not in err
    waiting = [line for line in err.splitlines() if "waiting" in line]
    assert waiting == ["sweep a1: budget reached: 1.00 of 1.00 GPU-hours (campaign); waiting"]
    with task_ws.db(write=False) as db:
        posts = [p["text"] for p in list_feed(db)]
        row = get_agent(db, agent)
    assert not any("sweep step failed" in p for p in posts)
    assert len([p for p in posts if "budget reached" in p]) == 1  # the crossing, told once
    assert row["state"] == "waiting" and "budget reached" in row["note"]

    task_ws.config_path.write_text(SWEEP + "[budget]\ngpu_hours = 10\n")  # raised
    sa.run(max_steps=1)
    err = capsys.readouterr().err
    assert "resuming" in err and "Traceback" not in err
    runs = _runs(task_ws, agent)
    assert len(runs) == 1 and runs[0]["description"] == "reference run on this base"
    with task_ws.db(write=False) as db:
        assert get_agent(db, agent)["note"] is None


def test_a_run_refused_after_the_check_is_held_not_lost(
    task_ws: Workspace, agent: str, backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget can be reached between the driver's check and the queueing (another agent's
    run ending): the proposal it had taken (a queued sweep value, popped from its memory) is
    the first one run once the budget allows, by this process or a restarted one."""
    from helm.agents import experiment

    roomy, spent = SWEEP + "[budget]\ngpu_hours = 10\n", SWEEP + "[budget]\ngpu_hours = 1\n"
    task_ws.config_path.write_text(roomy)
    _spend(task_ws, 3600.0)
    sa = SweepAgent(task_ws, agent, backend=backend, poll_s=0.01, seed=3, budget_wait_s=0.01)
    sa.step()  # the reference run
    sa.state.queue = [["MATRIX_LR", "0.03", 0]]
    real = experiment.bud.check_queue
    calls = {"n": 0}

    def reached_once(ws, who, **kw):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:  # the experiment's own check, just after the driver's passed
            task_ws.config_path.write_text(spent)
        try:
            return real(ws, who, **kw)
        finally:
            if calls["n"] == 2:
                task_ws.config_path.write_text(roomy)

    monkeypatch.setattr(experiment.bud, "check_queue", reached_once)
    sa.run(max_steps=1)
    assert len(_runs(task_ws, agent)) == 1 and sa.state.queue == []
    # the agent is restarted while it waits: the held proposal is in sweep.json, not lost
    sa = SweepAgent(task_ws, agent, backend=backend, poll_s=0.01, seed=3, budget_wait_s=0.01)
    assert sa.state.held is not None and sa.state.held["changes"] == {"MATRIX_LR": "0.03"}
    sa.run(max_steps=1)
    assert sa.state.held is None
    newest = _runs(task_ws, agent)[0]
    assert "MATRIX_LR 0.025\u21920.03" in newest["description"]
