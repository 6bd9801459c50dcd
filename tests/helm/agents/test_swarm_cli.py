"""``helm swarm up|ls|down`` bookkeeping (no daemon: nothing is started here)."""

from __future__ import annotations

import pytest

from helm.workspace import Workspace


@pytest.mark.engines
def test_up_ls_down(helm, ws: Workspace) -> None:
    res = helm("swarm", "up", "-n", "2", "--no-daemon", "--env", "NUM_LAYERS=4", "--json")
    assert res.code == 0, res.err
    assert res.json()["agents"] == ["sweep-1", "sweep-2"]
    assert helm("swarm", "up", "-n", "2", "--no-daemon", "--json").json()["agents"] == [
        "sweep-1",
        "sweep-2",
    ]  # idempotent: -n is a target, not an increment
    res = helm("swarm", "up", "--add", "1", "--no-daemon", "--json")
    assert res.json()["agents"] == ["sweep-1", "sweep-2", "sweep-3"]
    res = helm("swarm", "up", "-n", "1", "--driver", 'my-cli --go "{prompt}"', "--no-daemon")
    assert res.code == 0 and "agent-1" in res.out
    assert helm("swarm", "up", "--driver", "gpt", "--no-daemon").code == 2
    rows = helm("swarm", "ls", "--json").json()
    assert [r["name"] for r in rows] == ["sweep-1", "sweep-2", "sweep-3", "agent-1"]
    assert all(r["state"] == "down" and not r["alive"] and r["runs"] == 0 for r in rows)
    assert (ws.worktrees_dir / "sweep-3" / "train_gpt.py").exists()
    text = helm("swarm", "ls").out
    assert "AGENT" in text and "sweep-2" in text
    res = helm("swarm", "down", "sweep-1", "--json")
    assert res.json()["agents"] == ["sweep-1"]
    rows = {r["name"]: r for r in helm("swarm", "ls", "--json").json()}
    assert rows["sweep-1"]["state"] == "stopped" and rows["sweep-1"]["desired"] == "down"
    assert helm("swarm", "down", "nobody").code == 1
    ctx = helm("context", "--agent", "sweep-2", "--json").json()
    assert ctx["agent"]["branch"] == "agents/sweep-2"
