"""The base as the experiment loop sees it: the pin's feed post, the keep rule's starting
point, and the numbers of a result ("vs base", "vs leader"), on runs the loop itself made.

The fake backend's score is the run's ``S`` environment value plus ``seed x 1e-4``, so each
expected number is written out below.
"""

from __future__ import annotations

import statistics

import pytest

from helm.agents import pins, swarm
from helm.agents.experiment import ExpRequest, run_experiment
from helm.models.feed import list_feed
from helm.models.runs import get_run
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def score(env: dict[str, str], seed: int | None) -> float:
    return float(env.get("S", "1.30")) + (seed or 0) * 1e-4


@pytest.fixture
def scored(fake_backend_class: type):  # noqa: ANN201
    return fake_backend_class(score)


def test_pinning_a_run_names_it_once(task_ws: Workspace, agent: str, scored) -> None:  # noqa: ANN001
    run_experiment(task_ws, ExpRequest(agent), backend=scored)
    kept = run_experiment(task_ws, ExpRequest(agent, env={"S": "1.28"}), backend=scored)
    pin = pins.pin_run(task_ws, kept.run_id)
    run_experiment(task_ws, ExpRequest(agent, seed=5), backend=scored)  # moves onto the pin
    with task_ws.db(write=False) as db:
        texts = [p["text"] for p in list_feed(db, kind="system")]
    pinned = next(t for t in texts if t.startswith("base pinned to"))
    assert pinned.startswith(f"base pinned to run #{kept.run_id} (commit "), pinned
    moved = next(t for t in texts if t.startswith("moved onto base"))
    assert moved == f"moved onto base pin #{pin['id']} (run #{kept.run_id})", moved
    assert not any("run run" in t for t in texts)


def test_the_keep_rule_starts_from_the_base_mean(
    task_ws: Workspace,
    agent: str,
    scored,  # noqa: ANN001
) -> None:
    """a2's reference drew an unlucky seed (1.3040 against a1's 1.3000). A change that beats
    a2's own reference by 0.0070 beats the base (their mean, 1.3020) by only 0.0050, inside
    the bar (2 x the pooled spread 0.0040/sqrt(2) = 0.00566): it is discarded, and the
    result says what it was compared with."""
    swarm.add_agent(task_ws, "a2", driver="sweep")
    run_experiment(task_ws, ExpRequest(agent), backend=scored)  # 1.3000
    run_experiment(task_ws, ExpRequest("a2", seed=40), backend=scored)  # 1.3040
    res = run_experiment(task_ws, ExpRequest("a2", env={"S": "1.293"}, seed=40), backend=scored)
    assert res.val_bpb == pytest.approx(1.2970)
    assert res.verdict == "discard", res.note
    assert "improvement +0.00500 is within 0.00566" in res.note
    assert res.best_before == pytest.approx(1.3020) and res.delta_best == pytest.approx(-0.005)
    assert res.base_bpb == pytest.approx(1.3020) and res.delta_base == pytest.approx(-0.005)
    # a clear gain over the base is still kept, and the branch best is measured from it
    res = run_experiment(task_ws, ExpRequest("a2", env={"S": "1.28"}, seed=40), backend=scored)
    assert res.verdict == "keep" and res.best_before == pytest.approx(1.3020)
    nxt = run_experiment(task_ws, ExpRequest("a2", env={"S": "1.27"}, seed=40), backend=scored)
    assert nxt.verdict == "keep" and nxt.best_before == pytest.approx(1.2840)


def test_a_result_compares_with_the_base_mean_and_the_best_kept(
    task_ws: Workspace,
    agent: str,
    scored,  # noqa: ANN001
) -> None:
    """ "vs base" is against the mean of the base's runs (both agents' references and the
    pinned run), "vs leader" against the best run that counts (a discard does not)."""
    swarm.add_agent(task_ws, "a2", driver="sweep")
    run_experiment(task_ws, ExpRequest(agent), backend=scored)  # 1.3000
    kept = run_experiment(task_ws, ExpRequest(agent, env={"S": "1.28"}), backend=scored)
    low = run_experiment(task_ws, ExpRequest(agent, env={"S": "1.2797"}), backend=scored)
    assert low.verdict == "discard"  # lowest score, within the noise
    pin = pins.pin_run(task_ws, kept.run_id)
    refs = [
        run_experiment(task_ws, ExpRequest(agent, seed=5), backend=scored),  # 1.2805
        run_experiment(task_ws, ExpRequest("a2", seed=6), backend=scored),  # 1.2806
    ]
    assert [r.verdict for r in refs] == ["keep", "keep"]
    assert all(r.delta_base is None for r in refs)  # part of the base: no delta to itself
    with task_ws.db(write=False) as db:  # re-runs of the pinned code, unchanged
        assert {get_run(db, r.run_id)["commit"] for r in refs} == {pin["commit"]}
    res = run_experiment(task_ws, ExpRequest("a2", env={"S": "1.27"}, seed=6), backend=scored)
    mean = statistics.mean([1.28, 1.2805, 1.2806])
    assert res.base_bpb == pytest.approx(mean)
    assert res.delta_base == pytest.approx(1.2706 - mean)
    assert res.best_before == pytest.approx(mean)  # a2's first best on this base
    assert res.leader_bpb == pytest.approx(1.28)  # not the discarded 1.2797
    with task_ws.db(write=False) as db:
        text = next(p["text"] for p in list_feed(db, kind="result") if p["run_id"] == res.run_id)
    assert f"vs base {1.2706 - mean:+.4f}".replace("-", "\u2212") in text, text


def test_context_prints_the_base_figures(
    helm,
    task_ws: Workspace,
    agent: str,
    scored,  # noqa: ANN001
) -> None:
    swarm.add_agent(task_ws, "a2", driver="sweep")
    run_experiment(task_ws, ExpRequest(agent), backend=scored)  # 1.3000
    run_experiment(task_ws, ExpRequest("a2", seed=2), backend=scored)  # 1.3002
    out = helm("context").out
    sd = statistics.stdev([1.30, 1.3002])
    assert f"mean val_bpb 1.3001 ±{sd:.4f} over 2 reference runs" in out, out
    base = helm("context", "--json").json()["base"]["stats"]
    assert base["n"] == 2 and base["mean"] == pytest.approx(1.3001)
