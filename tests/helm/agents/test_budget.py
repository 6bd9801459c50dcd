"""Budgets (issue 17): config, levels, `helm exp run` refused with the reason, the warning
posted once, per-agent budgets, and a running job never touched.

A real store (both engines) and the experiment loop with the FakeBackend (real job rows,
ended through ``helm.models.job_life``). Where the figure itself is the point (a job that
cost $12.50), ``job.gpu_seconds``/``job.cost`` are set directly on the ended job's row; the
running-job test instead back-dates a live try's ``staged_at`` by an hour and lets
``helm.models.costs`` count it up to now, as the daemon's records would.
"""

from __future__ import annotations

import time

import pytest

from helm.agents import budget as bud
from helm.agents import swarm
from helm.agents.budget import Budget, BudgetError, BudgetReached, Limit, budget_state
from helm.agents.experiment import ExpRequest, run_experiment
from helm.models.feed import list_feed
from helm.models.hosts import insert_host
from helm.models.jobs import get_job
from helm.models.runs import get_run
from helm.workspace import Workspace


def _config(ws: Workspace, text: str) -> None:
    ws.config_path.write_text(text)


def _spend(ws: Workspace, run_id: int, *, cost: float | None, gpu_seconds: float = 60.0) -> None:
    """Set what the run's (ended) job cost: the figure is the point of these tests."""
    with ws.db(write=True) as db:
        job_id = get_run(db, run_id)["job_id"]
        db.execute(
            "UPDATE job SET gpu_seconds = :s, cost = :c WHERE id = :id",
            {"s": gpu_seconds, "c": cost, "id": job_id},
        )


@pytest.fixture
def priced(task_ws: Workspace) -> None:
    """The FakeBackend's host, free: its tries of a few milliseconds cost $0.00 (known), so
    the money in these tests is exactly what ``_spend`` sets."""
    with task_ws.db(write=True) as db:
        insert_host(db, name="fake", kind="local", gpus=8, workdir="/fake", price_per_gpu_hour=0.0)


def _budget_posts(ws: Workspace) -> list[str]:
    with ws.db(write=False) as db:
        return [p["text"] for p in list_feed(db, kind="system") if "budget" in p["tags"]]


def _runs(ws: Workspace) -> int:
    with ws.db(write=False) as db:
        return len(db.rows("SELECT id FROM run"))


# Config ---------------------------------------------------------------------------------------
def test_load_budget(ws: Workspace) -> None:
    assert bud.load_budget(ws).empty  # no config.toml: no budget
    _config(
        ws,
        "[budget]\nmoney = 500.0\ngpu_hours = 40\n"
        "[budget.agents]\na1 = 100\na2 = {gpu_hours = 5}\n",
    )
    b = bud.load_budget(ws)
    assert b.campaign == Limit(money=500.0, gpu_hours=40.0)
    assert b.agents == {"a1": Limit(money=100.0), "a2": Limit(gpu_hours=5.0)}
    for bad, says in (
        ('[budget]\nmoney = "500"\n', "[budget] money must be a positive number"),
        ("[budget]\nmoney = 0\n", "positive"),
        ("[budget]\ngpu_hours = true\n", "positive"),
        ("[budget]\nmony = 5\n", "unknown key 'mony'"),
        ("[budget.agents]\na1 = {hours = 5}\n", "[budget.agents] a1 has unknown key"),
        ("[budget.agents]\na1 = -1\n", "[budget.agents] a1 must be a positive number"),
    ):
        _config(ws, bad)
        with pytest.raises(BudgetError, match=None) as exc:
            bud.load_budget(ws)
        assert says in str(exc.value)


# Levels -----------------------------------------------------------------------------------------
@pytest.mark.engines
def test_levels_lines_and_views(task_ws: Workspace, agent: str, backend) -> None:  # noqa: ANN001
    run = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    budget = Budget(Limit(money=500.0, gpu_hours=40.0), {agent: Limit(gpu_hours=1.0)})
    _spend(task_ws, run.run_id, cost=60.0, gpu_seconds=1800.0)  # $60, 0.5 GPU-hours
    with task_ws.db(write=False) as db:
        st = budget_state(db, budget)
    assert st.campaign.level == "ok" and st.campaign.unit == "money"  # 12% beats 1.25%
    assert st.campaign.line == "budget at 12%: $60.00 of $500.00 (campaign)"
    assert st.agents[agent].line == "budget at 50%: 0.50 of 1.00 GPU-hours (agent a1)"
    assert bud.header_text(st) is None  # nothing to say while all is ok

    _spend(task_ws, run.run_id, cost=425.0, gpu_seconds=3000.0)
    with task_ws.db(write=False) as db:
        st = budget_state(db, budget)
    assert st.campaign.level == "warn" and st.agents[agent].level == "warn"
    assert st.campaign.line == "budget at 85%: $425.00 of $500.00 (campaign)"
    assert st.worst(agent).scope == "campaign"  # 85% beats the agent's 83%
    assert bud.header_text(st) == "budget 85% $425.00/$500.00 · near budget: a1"

    _spend(task_ws, run.run_id, cost=512.3, gpu_seconds=3000.0)
    with task_ws.db(write=False) as db:
        st = budget_state(db, budget)
    assert st.campaign.level == "stop" and st.level(agent) == "stop"
    assert st.line(agent) == "budget reached: $512.30 of $500.00 (campaign)"
    assert st.to_json(agent)["campaign"]["share"] == pytest.approx(1.0246)
    text = bud.context_lines(st.to_json(agent))
    assert text[:2] == ["## Budget", "- budget reached: $512.30 of $500.00 (campaign)"]
    assert "refuses" in text[-1]
    with task_ws.db(write=False) as db:
        assert bud.context_budget(task_ws, db, agent) is None  # no [budget] in config.toml
        task_ws.config_path.write_text("[budget]\nmoney = 500.0\n")
        assert bud.context_budget(task_ws, db, agent)["level"] == "stop"

    _spend(task_ws, run.run_id, cost=None, gpu_seconds=3000.0)  # a host without a price
    with task_ws.db(write=False) as db:
        st = budget_state(db, Budget(Limit(money=500.0)))
    assert st.campaign.level == "ok" and not st.campaign.money_known
    assert st.campaign.line == "budget at 0%: at least $0.00 of $500.00 (campaign)"


# exp run refused ------------------------------------------------------------------------------
@pytest.mark.engines
@pytest.mark.usefixtures("priced")
def test_exp_run_refused_with_the_reason(task_ws: Workspace, agent: str, backend, helm) -> None:  # noqa: ANN001
    run = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    _config(task_ws, "[budget]\nmoney = 500.0\n")
    _spend(task_ws, run.run_id, cost=512.3)
    wt = task_ws.worktrees_dir / agent
    edited = (wt / "train_gpt.py").read_text() + "\n# my idea\n"
    (wt / "train_gpt.py").write_text(edited)
    runs, submitted = _runs(task_ws), len(backend.submitted)

    with pytest.raises(
        BudgetReached, match=r"^budget reached: \$512\.30 of \$500\.00 \(campaign\)$"
    ):
        run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.04"}), backend=backend)
    r = helm("exp", "run", "--agent", agent, "--no-wait", "-m", "try it")
    assert r.code == 3 and r.out == ""
    assert r.err == "helm: budget reached: $512.30 of $500.00 (campaign)\n"
    # nothing was committed, recorded or queued; the agent's edit is still in its worktree
    assert _runs(task_ws) == runs and len(backend.submitted) == submitted
    assert (wt / "train_gpt.py").read_text() == edited
    with task_ws.db(write=False) as db:
        assert len(db.rows("SELECT id FROM job")) == 1

    _config(task_ws, "[budget]\nmoney = 1000.0\n")  # the operator raises it: runs again
    ok = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.04"}), backend=backend)
    assert ok.verdict in ("keep", "discard")


@pytest.mark.engines
@pytest.mark.usefixtures("priced")
def test_warning_posted_once_per_crossing(task_ws: Workspace, agent: str, backend) -> None:  # noqa: ANN001
    _config(task_ws, "[budget]\nmoney = 10.0\n")
    first = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    assert _budget_posts(task_ws) == []
    _spend(task_ws, first.run_id, cost=8.5)
    for lr in ("0.03", "0.035", "0.045"):  # three runs queued at 85%: one warning
        res = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": lr}), backend=backend)
        assert res.verdict in ("keep", "discard")
    warn = "budget at 85%: $8.50 of $10.00 (campaign); at 100% no new job is queued for it"
    assert _budget_posts(task_ws) == [warn]

    _spend(task_ws, first.run_id, cost=11.0)
    for _ in range(2):
        with pytest.raises(BudgetReached):
            run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.05"}), backend=backend)
    stop = (
        "budget reached: $11.00 of $10.00 (campaign); no new job is queued for it, "
        "running jobs finish"
    )
    assert _budget_posts(task_ws) == [stop, warn]  # newest first; each once
    with task_ws.db(write=False) as db:
        assert all(
            p["agent"] is None for p in list_feed(db, kind="system") if "budget" in p["tags"]
        )

    _config(task_ws, "[budget]\nmoney = 12.0\n")  # raised: 92% of a new limit is a new crossing
    run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.05"}), backend=backend)
    assert _budget_posts(task_ws)[0].startswith("budget at 91%: $11.00 of $12.00 (campaign)")


@pytest.mark.engines
@pytest.mark.usefixtures("priced")
def test_agent_budget_stops_only_that_agent(task_ws: Workspace, agent: str, backend, helm) -> None:  # noqa: ANN001
    swarm.add_agent(task_ws, "a2", driver="sweep")
    _config(task_ws, "[budget.agents]\na1 = 5.0\n")
    mine = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    theirs = run_experiment(task_ws, ExpRequest("a2", seed=7), backend=backend)  # no dup
    assert theirs.run_id != mine.run_id
    _spend(task_ws, mine.run_id, cost=6.0)
    _spend(task_ws, theirs.run_id, cost=50.0)  # a2 has no budget; the campaign has none

    with pytest.raises(BudgetReached, match=r"budget reached: \$6\.00 of \$5\.00 \(agent a1\)"):
        run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.03"}), backend=backend)
    r = helm("exp", "run", "--agent", agent, "--no-wait")
    assert (r.code, r.err) == (3, "helm: budget reached: $6.00 of $5.00 (agent a1)\n")
    other = run_experiment(task_ws, ExpRequest("a2", env={"MATRIX_LR": "0.035"}), backend=backend)
    assert other.verdict in ("keep", "discard")
    with task_ws.db(write=False) as db:
        posts = [p for p in list_feed(db, kind="system") if "budget" in p["tags"]]
    assert [(p["agent"], p["text"].split(";")[0]) for p in posts] == [
        ("a1", "budget reached: $6.00 of $5.00 (agent a1)")
    ]


@pytest.mark.engines
def test_reaching_a_budget_never_touches_a_running_job(
    task_ws: Workspace,
    agent: str,
    fake_backend_class,  # noqa: ANN001
) -> None:
    class StartOnly(fake_backend_class):  # type: ignore[misc, valid-type]
        """Places and starts the job; it is still running when the next run is asked."""

        def submit(self, ws, code_dir, **kw) -> int:  # noqa: ANN001
            from helm.agents.experiment import RemoteBackend

            job_id = RemoteBackend().submit(ws, code_dir, **kw)
            self.start(ws, job_id)
            return job_id

    backend = StartOnly()
    swarm.add_agent(task_ws, "a2", driver="sweep")
    _config(task_ws, "[budget]\ngpu_hours = 0.5\n")
    queued = run_experiment(task_ws, ExpRequest(agent, wait=False), backend=backend)
    with task_ws.db(write=True) as db:
        job_id = get_run(db, queued.run_id)["job_id"]
        # the try has held its GPU for an hour (costs counts it up to now while it runs)
        db.execute(
            "UPDATE job SET staged_at = :t WHERE id = :id", {"t": time.time() - 3600, "id": job_id}
        )
    with pytest.raises(BudgetReached, match=r"budget reached: 1\.00 of 0\.50 GPU-hours"):
        run_experiment(task_ws, ExpRequest("a2"), backend=backend)
    with task_ws.db(write=False) as db:
        job = get_job(db, job_id)
    assert job["state"] == "running" and not job["cancel_requested"]
    assert backend.cancelled == []
    # it ends normally and is judged; its try's hour is on its row
    backend.end(task_ws, job_id, 1.5)
    res = experiment_finalize(task_ws, queued.run_id)
    assert res.verdict == "keep"
    with task_ws.db(write=False) as db:
        job = get_job(db, job_id)
    assert job["state"] == "succeeded" and job["gpu_seconds"] >= 3600


def experiment_finalize(ws: Workspace, run_id: int):  # noqa: ANN201
    from helm.agents.experiment import finalize

    return finalize(ws, run_id)


def test_an_agents_budget_never_stops_the_operator(task_ws: Workspace, agent: str, backend) -> None:  # noqa: ANN001
    """Promotion seeds and ``helm job run`` are the operator's jobs: only the campaign's
    budget stops them, not an agent that spent its own."""
    run = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    _spend(task_ws, run.run_id, cost=60.0, gpu_seconds=1800.0)
    _config(task_ws, f"[budget]\nmoney = 500.0\n[budget.agents]\n{agent} = 50.0\n")
    with pytest.raises(BudgetReached, match=r"agent a1"):
        bud.check_queue(task_ws, agent)
    assert bud.check_queue(task_ws, None).campaign.level == "ok"  # not refused
    _config(task_ws, "[budget]\nmoney = 50.0\n")
    with pytest.raises(BudgetReached, match=r"campaign"):
        bud.check_queue(task_ws, None)
