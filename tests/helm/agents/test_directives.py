"""Directive grammar of the sweep agent, and delivery into worktrees."""

from __future__ import annotations

import pytest

from helm.agents import swarm
from helm.agents.directives import GrammarError, deliver, parse_directive
from helm.workspace import Workspace


def test_grammar() -> None:
    (c,) = parse_directive("sweep matrix_lr=0.02,0.03 , ")
    assert c.verb == "sweep" and c.values == {"MATRIX_LR": ["0.02", "0.03"]}
    (c,) = parse_directive("set NUM_LAYERS=5 MLP_MULT=2")
    assert c.assign == {"NUM_LAYERS": "5", "MLP_MULT": "2"}
    (c,) = parse_directive("focus MATRIX_LR, scalar_lr")
    assert c.keys == ("MATRIX_LR", "SCALAR_LR")
    assert parse_directive("focus all")[0].keys == ()
    cmds = parse_directive("set A=1; sweep B=2,3\nSTOP")
    assert [c.verb for c in cmds] == ["set", "sweep", "stop"]


@pytest.mark.parametrize(
    "text",
    ["try int5 for MLP weights", "set", "set A", "sweep A=", "focus", "stop now", "  "],
)
def test_grammar_rejects(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_directive(text)


@pytest.mark.engines
def test_deliver_writes_files_and_records_delivery(helm, task_ws: Workspace) -> None:
    swarm.add_agent(task_ws, "s1", driver="sweep")
    swarm.add_agent(task_ws, "c1", driver="claude")
    swarm.add_agent(task_ws, "x1", driver="codex")
    did = helm("directive", "send", "set MATRIX_LR=0.03", "--json").json()["id"]
    for name, driver, extra in (("s1", "sweep", None), ("c1", "claude", "CLAUDE.md"),
                                ("x1", "codex", "AGENTS.md")):  # fmt: skip
        wt = task_ws.worktrees_dir / name
        pending = deliver(task_ws, name, wt, driver)
        assert [d["id"] for d in pending] == [did]
        assert "set MATRIX_LR=0.03" in (wt / "DIRECTIVES.md").read_text()
        if extra:
            text = (wt / extra).read_text()
            assert "program.md" in text and "set MATRIX_LR=0.03" in text
    d = helm("directive", "ls", "--json").json()[0]
    assert all(x["delivered_at"] and not x["acked_at"] for x in d["deliveries"])
    # helm's files never enter a commit
    from git import Repo

    assert not Repo(task_ws.worktrees_dir / "c1").is_dirty(untracked_files=True)
    helm("directive", "ack", str(did), "--agent", "s1")
    assert deliver(task_ws, "s1", task_ws.worktrees_dir / "s1", "sweep") == []
    assert "No directives pending" in (task_ws.worktrees_dir / "s1" / "DIRECTIVES.md").read_text()
