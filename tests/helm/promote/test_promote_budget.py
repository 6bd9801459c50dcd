"""`helm promote` at 100% of the campaign budget: refused before any seed is queued unless
``--past-budget`` says so (issue 17). A real store and config.toml; the spend is set on a
job row directly (the figure is the point), and the plan is reduced to its slots, since what
is checked is the gate in front of the queueing, not the promotion itself (test_promote_e2e).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helm.models.job_queue import insert_job
from helm.models.states import JobState
from helm.promote import promote
from helm.promote.plan import PromoteError
from helm.promote.promote import PromoteOptions, check_budget
from helm.workspace import Workspace


def _spent(ws: Workspace, cost: float) -> None:
    """One ended job of the campaign that cost ``cost`` (set on its row)."""
    with ws.store.write() as s:
        job = insert_job(s, run_id=None, agent=None, entry="train_gpt.py", env_json="{}",
                         gpus=1, seed=None, time_limit_s=60.0, priority=0, host=None,
                         max_attempts=1)  # fmt: skip
        job.state, job.gpu_seconds, job.cost = JobState.SUCCEEDED, 60.0, cost
        s.add(job)


def _prepared(*, past_budget: bool, actions: tuple[str, ...] = ("queue",)) -> SimpleNamespace:
    slots = [SimpleNamespace(action=a, seed=42 + i, run_id=None) for i, a in enumerate(actions)]
    return SimpleNamespace(
        plan=SimpleNamespace(slots=slots), opts=PromoteOptions(past_budget=past_budget)
    )


def test_promotion_refused_at_budget_unless_past_budget(ws: Workspace, monkeypatch) -> None:  # noqa: ANN001
    ws.config_path.write_text("[budget]\nmoney = 500.0\n")
    _spent(ws, 512.3)
    queued: list[int] = []

    def fake_queue(_ws, _p, slot) -> int:  # noqa: ANN001
        queued.append(slot.seed)
        raise KeyboardInterrupt  # stop right after the gate: queueing is what was allowed

    monkeypatch.setattr(promote, "_queue", fake_queue)
    with pytest.raises(PromoteError) as exc:
        promote.execute(ws, _prepared(past_budget=False))  # type: ignore[arg-type]
    assert str(exc.value) == (
        "budget reached: $512.30 of $500.00 (campaign); --past-budget queues the seeds anyway"
    )
    assert queued == []
    with pytest.raises(PromoteError, match="interrupted"):
        promote.execute(ws, _prepared(past_budget=True))  # type: ignore[arg-type]
    assert queued == [42]
    # nothing to queue (every seed reused or in flight): nothing to refuse
    check_budget(ws, _prepared(past_budget=False, actions=("reuse", "wait")))  # type: ignore[arg-type]


def test_cli_passes_past_budget(ws: Workspace, helm, monkeypatch) -> None:  # noqa: ANN001
    seen: list[bool] = []

    def fake_prepare(_ws, _run, opts, **_kw):  # noqa: ANN001, ANN202
        seen.append(opts.past_budget)
        raise PromoteError("stop here")

    monkeypatch.setattr(promote, "prepare", fake_prepare)
    assert helm("promote", "1", "--author", "a", "--github-id", "b").code == 1
    assert helm("promote", "1", "--author", "a", "--github-id", "b", "--past-budget").code == 1
    assert seen == [False, True]


def _candidate(ws: Workspace, kit, job_id: int) -> int:  # noqa: ANN001
    """A scored run of the tiny config (seed 42, with its log): promoting it queues 2 seeds."""
    from test_feasibility import scored_run  # the same committed run and log the plan reads

    return scored_run(ws, kit, seed=42, bpb=4.0, job_id=job_id)


def test_dry_run_says_the_budget_is_reached_and_what_past_budget_does(
    task_ws: Workspace, helm, kit
) -> None:  # noqa: ANN001
    """The plan of a promotion whose seeds the real promote would refuse says so, in words and
    in --json, without telling the feed (a dry run writes nothing)."""
    run_id = _candidate(task_ws, kit, 91)
    plain = helm("promote", str(run_id), "--dry-run", "--sota", "10")
    assert plain.code == 0, plain.err
    assert not [x for x in plain.out.splitlines() if x.startswith("budget")]  # no [budget]
    assert helm("promote", str(run_id), "--dry-run", "--json").json()["budget"] is None

    task_ws.config_path.write_text("[budget]\nmoney = 500.0\n")
    _spent(task_ws, 512.3)
    line = "budget reached: $512.30 of $500.00 (campaign)"
    r = helm("promote", str(run_id), "--dry-run", "--sota", "10")
    assert r.code == 0, r.err
    assert f"{line}; the 2 seed(s) to queue need --past-budget" in r.out
    data = helm("promote", str(run_id), "--dry-run", "--json", "--sota", "10").json()
    assert data["budget"]["level"] == "stop" and data["budget"]["line"] == line
    assert data["budget"]["refused"] is True
    past = helm("promote", str(run_id), "--dry-run", "--sota", "10", "--past-budget")
    assert f"{line}; --past-budget: the 2 seed(s) would be queued anyway" in past.out
    data = helm("promote", str(run_id), "--dry-run", "--json", "--past-budget").json()
    assert data["budget"]["refused"] is False
    assert not (task_ws.root / "budget-posted.json").exists()  # no crossing told
    with task_ws.db(write=False) as db:
        assert db.rows("SELECT COUNT(*) AS n FROM feed_post")[0]["n"] == 0
        assert db.rows("SELECT COUNT(*) AS n FROM job")[0]["n"] == 1  # only the spend


def test_dry_run_at_80_percent_warns_and_refuses_nothing(task_ws: Workspace, helm, kit) -> None:  # noqa: ANN001
    run_id = _candidate(task_ws, kit, 92)
    task_ws.config_path.write_text("[budget]\nmoney = 500.0\n")
    _spent(task_ws, 420.0)
    r = helm("promote", str(run_id), "--dry-run", "--sota", "10")
    assert "budget at 84%: $420.00 of $500.00 (campaign)" in r.out
    assert "--past-budget" not in r.out
    data = helm("promote", str(run_id), "--dry-run", "--json").json()
    assert (data["budget"]["level"], data["budget"]["refused"]) == ("warn", False)
