"""Cost on the command line (both engines): a host's price set at ``host add --price`` and
edited with ``host set``, and the GPU-hours and money of runs, agents and the campaign in
``helm runs``, ``helm leaderboard`` and ``helm context`` (tables, text and ``--json``)."""

from __future__ import annotations

import pytest

from helm.models.tables import Agent, Job, Run
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def test_host_price_is_added_shown_edited_and_checked(ws: Workspace, helm) -> None:
    added = helm("host", "add", "box", "--local", "--price", "2.5", "--json")
    assert added.code == 0, added.err
    assert added.json()["price_per_gpu_hour"] == 2.5
    assert helm("host", "add", "free", "--local").code == 0
    listed = {h["name"]: h["price_per_gpu_hour"] for h in helm("host", "ls", "--json").json()}
    assert listed == {"box": 2.5, "free": None}
    lines = helm("host", "ls").out.splitlines()
    assert "$/GPU-H" in lines[0].split()
    assert "2.50" in lines[1].split() and "-" in lines[2].split()
    r = helm("host", "set", "free", "--price", "20")
    assert r.code == 0 and "20.00 USD per GPU-hour" in r.out
    assert (
        helm("host", "set", "box", "--price", "none", "--json").json()["price_per_gpu_hour"] is None
    )
    listed = {h["name"]: h["price_per_gpu_hour"] for h in helm("host", "ls", "--json").json()}
    assert listed == {"box": None, "free": 20.0}
    bad = helm("host", "set", "free", "--price", "-3")
    assert bad.code != 0 and "at least 0" in bad.err
    assert helm("host", "set", "free", "--price", "cheap").code != 0
    assert helm("host", "set", "nowhere", "--price", "1").code != 0
    assert helm("host", "add", "x", "--local", "--price", "nan").code != 0


@pytest.fixture
def spent(ws: Workspace) -> dict[str, int]:
    """Two agents' runs with their jobs' recorded GPU-seconds; bob's on a host without price."""
    with ws.store.write() as s:
        s.add(Agent(name="alice"))
        s.add(Agent(name="bob"))
        runs = {
            "kept": Run(agent="alice", description="kept", status="keep", val_bpb=1.30),
            "unpriced": Run(agent="bob", description="free box", status="keep", val_bpb=1.25),
        }
        for r in runs.values():
            s.add(r)
        s.flush()
        ids = {k: int(r.id or 0) for k, r in runs.items()}
        s.add(
            Job(run_id=ids["kept"], agent="alice", state="succeeded", gpu_seconds=7200.0, cost=8.0)
        )
        unpriced = Job(run_id=ids["unpriced"], agent="bob", state="succeeded", gpu_seconds=1800.0)
        s.add(unpriced)
        s.flush()
        unpriced.cost = None  # as the end of a try on a host without a price leaves it
        s.add(unpriced)
    return ids


def test_runs_and_leaderboard_carry_gpu_hours_and_money(spent: dict[str, int], helm) -> None:
    board = {r["id"]: r for r in helm("leaderboard", "--json").json()}
    kept, unpriced = board[spent["kept"]], board[spent["unpriced"]]
    assert (kept["gpu_seconds"], kept["gpu_hours"], kept["money"]) == (7200.0, 2.0, 8.0)
    assert (unpriced["gpu_hours"], unpriced["money"]) == (0.5, None)
    runs = {r["id"]: r for r in helm("runs", "--json").json()}
    assert runs[spent["kept"]]["money"] == 8.0 and runs[spent["unpriced"]]["money"] is None
    lines = helm("leaderboard").out.splitlines()
    head = lines[0].split()
    cells = {line.split()[1]: line.split() for line in lines[1:]}
    gh, money = head.index("GPU-H"), head.index("$")
    assert cells[str(spent["kept"])][gh : money + 1] == ["2.00", "$8.00"]
    assert cells[str(spent["unpriced"])][gh : money + 1] == ["0.50", "-"]
    text = helm("runs").out
    assert "$8.00" in text and "GPU-H" in text


def test_context_has_the_campaigns_and_the_agents_own_figures(spent: dict[str, int], helm) -> None:
    ctx = helm("context", "--agent", "alice", "--json").json()
    assert ctx["agent"]["usage"] == {"gpu_seconds": 7200.0, "gpu_hours": 2.0, "money": 8.0}
    campaign = ctx["usage"]["campaign"]
    assert campaign["gpu_hours"] == 2.5 and campaign["money"] is None  # bob's host: no price
    text = helm("context", "--agent", "alice").out
    assert "Spent so far: campaign - · 2.50 GPU-h; you $8.00 · 2.00 GPU-h." in text
    bob = helm("context", "--agent", "bob", "--json").json()["agent"]["usage"]
    assert bob == {"gpu_seconds": 1800.0, "gpu_hours": 0.5, "money": None}
    anyone = helm("context", "--json").json()
    assert anyone["agent"] is None and anyone["usage"]["campaign"]["gpu_seconds"] == 9000.0
