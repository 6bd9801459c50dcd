"""The sweep agent's decisions with the fake backend: references, directives, search,
insights; plus knob discovery and neighbours."""

from __future__ import annotations

import json

import pytest

from helm.agents import taskrepo as tr
from helm.agents.knobs import Knob, discover
from helm.agents.search import neighbours
from helm.agents.sweep import SweepAgent
from helm.models.agents import get_agent
from helm.models.feed import list_feed
from helm.models.runs import get_run, list_runs
from helm.workspace import Workspace

SCRIPT = """
import os
class Hyperparameters:
    matrix_lr: float = 0.025
    num_layers: int = 4
    model_dim: int = 512
    ema_enabled: bool = True
    muon_momentum: float = 0.99
    run_id: str = ""
"""


def test_discover_and_neighbours() -> None:
    knobs = discover(SCRIPT)
    assert knobs["MATRIX_LR"] == Knob("MATRIX_LR", float, 0.025)
    assert knobs["EMA_ENABLED"].kind is bool and "RUN_ID" not in knobs
    loose = discover('import os\nlr = float(os.environ.get("LR", "0.04"))\n'
                     'n = int(os.environ.get("N_LAYER", 9))\n')  # fmt: skip
    assert loose["LR"] == Knob("LR", float, 0.04) and loose["N_LAYER"] == Knob("N_LAYER", int, 9)
    assert neighbours(knobs["NUM_LAYERS"], 4)[:2] == [5, 3]
    assert all(v % 64 == 0 for v in neighbours(knobs["MODEL_DIM"], 512))
    assert all(0.9 < v < 1.0 for v in neighbours(knobs["MUON_MOMENTUM"], 0.99))
    assert neighbours(knobs["EMA_ENABLED"], True) == [False]
    assert discover((tr.bundled_dir() / "train_gpt.py").read_text())["MATRIX_LR"].kind is float


def _config(ws: Workspace, extra: str = "") -> None:
    ws.config_path.write_text(
        '[agents.sweep]\nmeasure_noise = false\nkeys = ["MATRIX_LR", "SCALAR_LR"]\n' + extra
    )


def _runs(ws: Workspace, agent: str) -> list[dict]:
    """The agent's run rows, oldest first."""
    with ws.db(write=False) as db:
        return [get_run(db, r["id"]) for r in reversed(list_runs(db, agent=agent))]


def _posts(ws: Workspace, kind: str) -> list[str]:
    """The texts of the feed's posts of this kind, oldest first."""
    with ws.db(write=False) as db:
        return [p["text"] for p in reversed(list_feed(db, kind=kind))]


def test_sweep_searches_and_posts_insights(task_ws, agent, backend) -> None:
    _config(task_ws)
    sa = SweepAgent(task_ws, agent, backend=backend, poll_s=0.01, seed=3)
    sa.run(max_steps=6)
    runs = _runs(task_ws, agent)
    assert runs[0]["baseline"] and runs[0]["status"] == "keep"
    changed = [set(json.loads(r["env_json"])) for r in runs[1:]]
    assert all(keys <= {"MATRIX_LR", "SCALAR_LR"} for keys in changed)
    insights = _posts(task_ws, "insight")
    assert insights and " bpb over 1 run" in insights[0]
    assert "\u2192" in insights[0]


@pytest.mark.engines
def test_sweep_obeys_set_sweep_focus_stop(helm, task_ws, agent, backend) -> None:
    _config(task_ws)
    sa = SweepAgent(task_ws, agent, backend=backend, poll_s=0.01, seed=1)
    sa.step()  # reference
    did = helm("directive", "send", "set SCALAR_LR=0.03", "--json").json()["id"]
    sa.step()
    last = _runs(task_ws, agent)[-1]
    assert json.loads(last["env_json"])["SCALAR_LR"] == "0.03" and last["baseline"]
    assert "directive #" in last["description"]
    d = helm("directive", "ls", "--json").json()[0]
    assert d["id"] == did and d["deliveries"][0]["acked_at"] is not None
    # the fixed value survives a discard of later experiments
    helm("directive", "send", "sweep MATRIX_LR=0.02,0.05")
    sa.step()
    sa.step()
    envs = [json.loads(r["env_json"]) for r in _runs(task_ws, agent)[-2:]]
    assert [e["MATRIX_LR"] for e in envs] == ["0.02", "0.05"]
    assert all(e["SCALAR_LR"] == "0.03" for e in envs)
    texts = _posts(task_ws, "insight")
    assert any(t.startswith("sweep #") and "best MATRIX_LR=" in t for t in texts)
    helm("directive", "send", "try something clever")
    helm("directive", "send", "stop")
    sa.step()
    assert sa.stopped_by_directive
    with task_ws.db(write=False) as db:
        row = get_agent(db, agent)
    assert row["desired"] == "down"
    assert any("not in the sweep grammar" in n for n in _posts(task_ws, "system"))
    assert helm("directive", "ls", "--pending", "--json").json() == []


def test_second_agent_reference_uses_another_seed(task_ws, backend) -> None:
    from helm.agents import swarm

    _config(task_ws)
    for name in ("s1", "s2"):
        swarm.add_agent(task_ws, name)
        SweepAgent(task_ws, name, backend=backend, poll_s=0.01).step()
    (r1,), (r2,) = _runs(task_ws, "s1"), _runs(task_ws, "s2")
    assert r1["seed"] is None and r2["seed"] == 1338  # same code and env: a noise sample
    assert r2["status"] == "keep"


def test_propose_never_offers_a_vetoed_value() -> None:
    import random

    from helm.agents.search import propose

    knobs = discover(SCRIPT)
    offered = set()
    for seed in range(40):
        p = propose(knobs, {}, ["NUM_LAYERS"], random.Random(seed), random_prob=0.0,
                    seen=lambda env: False, avoid=lambda k, v: (k, v) == ("NUM_LAYERS", "5"))  # fmt: skip
        assert p is not None and p.changes != {"NUM_LAYERS": "5"}
        offered.add(p.changes["NUM_LAYERS"])
    unvetoed = propose(knobs, {}, ["NUM_LAYERS"], random.Random(0), random_prob=0.0,
                       seen=lambda env: False)  # fmt: skip
    assert unvetoed is not None and unvetoed.changes == {"NUM_LAYERS": "5"}  # nearest first
    assert offered == {"3"}  # the next nearest value instead


def test_a_value_that_crashed_is_remembered(task_ws, agent, fake_backend_class) -> None:
    task_ws.config_path.write_text(
        '[agents.sweep]\nmeasure_noise = false\nkeys = ["NUM_KV_HEADS"]\n'
    )

    def heads_must_divide(env: dict[str, str], seed: int | None) -> float | None:
        kv = int(env.get("NUM_KV_HEADS", "4"))
        return None if kv == 0 or 8 % kv else 1.5  # a crash, as the real script's assert

    sa = SweepAgent(task_ws, agent, backend=fake_backend_class(heads_must_divide), poll_s=0.01,
                    seed=0)  # fmt: skip
    sa.run(max_steps=3)
    crashed = [r for r in _runs(task_ws, agent) if r["status"] == "crash"]
    assert crashed, "the first local move (NUM_KV_HEADS 4→5) should have crashed"
    assert sa.state.crashed and all(x.startswith("NUM_KV_HEADS=") for x in sa.state.crashed)
    assert SweepAgent(task_ws, agent).state.crashed == sa.state.crashed  # persisted
    texts = _posts(task_ws, "insight")
    assert any("crashed the script; not trying that value again" in t for t in texts)


def test_an_aborted_run_is_learnt_as_a_discard(task_ws, agent) -> None:  # noqa: ANN001
    """The early-abort service stopped the run (worse than the base beyond the noise): the
    sweep counts it like a discard (an insight says so), never as a crash that bans the value."""
    from helm.agents.report import ExpResult
    from helm.agents.search import Proposal

    sa = SweepAgent(task_ws, agent, poll_s=0.01, seed=0)
    p = Proposal({"MATRIX_LR": "2.5"}, "local: sweep MATRIX_LR=2.5", kind="local")
    sa.learn(p, ExpResult(run_id=None, verdict="aborted", note="early abort at step 34"))
    assert sa.state.crashed == []  # not a broken value: an unpromising one
    assert any("aborted early, worse than the base" in t for t in _posts(task_ws, "insight"))
