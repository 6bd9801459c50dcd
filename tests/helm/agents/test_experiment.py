"""The experiment protocol with a fake backend (no daemon, no training): verdicts, resets,
dedupe, feed posts, parents, run refs, base moves, and the ``helm exp`` CLI.

On both store engines: the loop's queries (reference, branch best, duplicates, the BOOLEAN
``baseline``) are the ones that broke on PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from git import Repo

from golf_task.limits import ARTIFACT_CAP_BYTES
from helm.agents import experiment
from helm.agents import taskrepo as tr
from helm.agents.experiment import ExperimentError, ExpRequest, run_experiment
from helm.models.feed import list_feed
from helm.models.jobs import get_job
from helm.models.runs import get_run
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def _run(ws: Workspace, run_id: int) -> dict:
    with ws.db(write=False) as db:
        return get_run(db, run_id)


def _head(wt: Path) -> str:
    return Repo(wt).head.commit.hexsha


def test_loop_keep_discard_crash_duplicate(task_ws: Workspace, agent: str, backend) -> None:
    wt = task_ws.worktrees_dir / agent
    ref = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    assert ref.verdict == "keep" and "reference" in ref.note
    better = run_experiment(task_ws, ExpRequest(agent, "lr up", env={"MATRIX_LR": "0.04"}),
                            backend=backend)  # fmt: skip
    assert better.verdict == "keep" and better.delta_best < 0
    assert better.headroom == ARTIFACT_CAP_BYTES - 1_234_567
    assert _head(wt) == better.commit and tr.read_env(wt)["MATRIX_LR"] == "0.04"
    assert _run(task_ws, better.run_id)["parent_id"] == ref.run_id

    (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "\n# tweak\n")
    worse = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.06"}), backend=backend)
    assert worse.verdict == "discard"
    assert _head(wt) == better.commit  # reset to the best
    assert "# tweak" not in (wt / "train_gpt.py").read_text()
    # every run's commit stays reachable
    assert Repo(wt).git.rev_parse(f"refs/runs/{worse.run_id}") == worse.commit

    crash = run_experiment(task_ws, ExpRequest(agent, env={"CRASH": "1"}), backend=backend)
    assert crash.verdict == "crash" and "RuntimeError: boom" in crash.tail
    assert _run(task_ws, crash.run_id)["tail"].endswith("RuntimeError: boom")
    assert _head(wt) == better.commit

    n = len(backend.submitted)
    (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "\n# tweak\n")
    dup = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.06"}), backend=backend)
    assert dup.verdict == "duplicate" and dup.duplicate_of == worse.run_id
    assert len(backend.submitted) == n and _head(wt) == better.commit
    (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "\n# tweak\n")
    forced = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.06"}, force=True),
                            backend=backend)  # fmt: skip
    assert forced.verdict == "discard" and len(backend.submitted) == n + 1
    reseeded = run_experiment(task_ws, ExpRequest(agent, seed=7), backend=backend)
    assert reseeded.verdict in ("keep", "discard")  # not a duplicate: another seed

    with task_ws.db(write=False) as db:
        results = list_feed(db, kind="result")
        job = get_job(db, get_run(db, better.run_id)["job_id"])
    # the result came through the daemon's records: the job ended, the run holds its score
    assert job["state"] == "succeeded" and job["run_id"] == better.run_id
    assert _run(task_ws, better.run_id)["host"] == "fake"
    assert {r["run_id"] for r in results} >= {ref.run_id, better.run_id, worse.run_id,
                                              crash.run_id}  # fmt: skip
    text = next(r["text"] for r in results if r["run_id"] == better.run_id)
    assert "KEEP" in text and "vs best" in text and "headroom" in text


def test_seed_spread_raises_the_bar(
    task_ws: Workspace, agent: str, fake_backend_class: type
) -> None:
    FakeBackend = fake_backend_class  # noqa: N806

    noisy = FakeBackend(lambda env, seed: 1.5 - 0.003 * (env.get("X") == "1") + 0.01 * (seed or 0))
    run_experiment(task_ws, ExpRequest(agent), backend=noisy)  # seed None -> 1.5
    run_experiment(task_ws, ExpRequest(agent, seed=1), backend=noisy)  # spread ~0.007
    res = run_experiment(task_ws, ExpRequest(agent, env={"X": "1"}), backend=noisy)
    assert res.verdict == "discard" and "spread 0.00707" in res.note


def test_move_onto_base_carries_an_uncommitted_edit(task_ws, agent, backend) -> None:
    from helm.agents import pins

    wt = task_ws.worktrees_dir / agent
    run_experiment(task_ws, ExpRequest(agent), backend=backend)
    (task_ws.root / "new.py").write_text("# new base\nLR = 1\n")
    pin = pins.pin_file(task_ws, task_ws.root / "new.py")
    (wt / "notes.txt").write_text("my idea\n")  # an agent's edit in progress
    assert experiment.move_onto_base(task_ws, agent)
    assert (wt / "train_gpt.py").read_text() == "# new base\nLR = 1\n"
    assert (wt / "notes.txt").read_text() == "my idea\n"
    assert _head(wt) == pin["commit"]
    assert not experiment.move_onto_base(task_ws, agent)


def test_no_wait_then_wait_and_in_flight_guard(
    task_ws, agent, monkeypatch, fake_backend_class
) -> None:  # noqa: ANN001
    """A job that is still queued: --no-wait returns, a second run is refused, wait judges."""
    FakeBackend = fake_backend_class  # noqa: N806

    class Slow(FakeBackend):
        def end(self, ws, job_id, bpb) -> None:  # noqa: ANN001
            self.pending = (job_id, bpb)  # the job keeps running; it ends when the test says

    slow = Slow()
    queued = run_experiment(task_ws, ExpRequest(agent, wait=False), backend=slow)
    assert queued.verdict == "queued"
    assert _run(task_ws, queued.run_id)["status"] == "running"
    with pytest.raises(ExperimentError, match="in flight"):
        run_experiment(task_ws, ExpRequest(agent, env={"A": "1"}), backend=slow)
    with pytest.raises(ExperimentError, match="still running"):
        experiment.finalize(task_ws, queued.run_id)
    FakeBackend.end(slow, task_ws, *slow.pending)
    assert _run(task_ws, queued.run_id)["status"] == "done"
    assert experiment.finalize(task_ws, queued.run_id).verdict == "keep"
    assert experiment.finalize(task_ws, queued.run_id).verdict == "keep"  # idempotent


def test_exp_cli(helm, task_ws, agent, monkeypatch, fake_backend_class) -> None:  # noqa: ANN001
    monkeypatch.setattr(experiment, "RemoteBackend", fake_backend_class)
    res = helm("exp", "run", "--agent", agent, "-m", "first", "--json")
    assert res.code == 0, res.err
    out = res.json()
    assert out["verdict"] == "keep" and out["description"] == "first"
    res = helm("exp", "run", "--agent", agent, "--env", "MATRIX_LR=0.04")
    assert res.code == 0 and "KEEP" in res.out and "headroom" in res.out
    monkeypatch.chdir(task_ws.worktrees_dir / agent)  # the agent is found from the cwd
    res = helm("exp", "run", "--env", "MATRIX_LR=0.04", "--json")
    assert res.json()["verdict"] == "duplicate"
    assert helm("exp", "run", "--env", "bad key=1").code == 2
    monkeypatch.chdir(task_ws.root)
    assert helm("exp", "run").code == 2  # no agent
    runs = helm("runs", "--json").json()
    assert json.loads(json.dumps(runs))[0]["status"] == "keep"


def test_writes_by_name_take_only_real_columns(task_ws: Workspace, agent: str) -> None:
    """``update_run`` / ``update_agent`` format column names into SQL: only real ones pass."""
    from helm.models.agents import AGENT_COLUMNS, get_agent, update_agent
    from helm.models.runs import RUN_COLUMNS, update_run
    from helm.models.tables import Agent, Run

    assert set(Run.__table__.columns.keys()) - {"id"} == RUN_COLUMNS
    assert set(Agent.__table__.columns.keys()) - {"id"} == AGENT_COLUMNS
    with task_ws.db(write=True) as db:
        with pytest.raises(ValueError, match="not a column of run: status = 'keep' --"):
            update_run(db, 1, **{"status = 'keep' --": 1})
        with pytest.raises(ValueError, match="not a column of agent: nam"):
            update_agent(db, agent, nam="x")
        update_agent(db, agent, note="checked", pid=None)
        assert get_agent(db, agent)["note"] == "checked"
