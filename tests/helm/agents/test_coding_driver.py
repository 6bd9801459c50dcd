"""A coding-agent driver end to end, with a fake agent CLI standing in for ``claude``.

The real CLIs cannot run here; ``fake_agent_cli.py`` honours the same contract (reads
program.md and CLAUDE.md, calls ``helm context``, edits train_gpt.py, ``helm exp run``,
``helm feed post``, exits). The task is a fast fake script so that the test exercises the
driver, the daemon, the local host and the experiment protocol in seconds.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from git import Repo

from helm.agents import procs, swarm
from helm.daemon import start_detached
from helm.daemon import stop as stop_daemon
from helm.workspace import Workspace

HERE = Path(__file__).parent


def _wait(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _task_source(tmp_path: Path) -> Path:
    src = tmp_path / "task-src"
    src.mkdir()
    shutil.copy(HERE / "fake_train_gpt.py", src / "train_gpt.py")
    repo = Repo.init(src)
    repo.git.add("-A")
    # an identity of its own: a fresh machine may have no global git user
    repo.git.commit(
        "-m",
        "fake task",
        "--author",
        "t <t@t>",
        env={"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"},
    )
    return src


@pytest.mark.slow
def test_claude_preset_with_a_fake_cli(ws: Workspace, tmp_path: Path) -> None:
    from helm.remote.hosts import add_host

    ws.config_path.write_text(
        "[agents]\nbackoff_s = [1, 2]\n"
        f"[agents.drivers]\nclaude = '{sys.executable} {HERE / 'fake_agent_cli.py'} {{prompt}}'\n"
    )
    with ws.store.write() as s:
        add_host(ws, s, "local", local=True, gpus=1)
    names = swarm.up(ws, 1, driver="claude", task_repo=str(_task_source(tmp_path)))
    assert names == ["claude-1"]
    wt = ws.worktrees_dir / "claude-1"
    start_detached(ws)
    try:
        from helm.models.directives import list_directives, send_directive
        from helm.models.feed import list_feed
        from helm.models.runs import get_run, list_runs

        with ws.db(write=True) as db:
            did = send_directive(db, "focus on the learning rate")["id"]

        def two_judged() -> bool:
            with ws.db(write=False) as db:
                rows = list_runs(db, agent="claude-1")
            return sum(r["status"] in ("keep", "discard") for r in rows) >= 2

        _wait(two_judged, 150, "two judged runs by the fake agent")
        with ws.db(write=False) as db:
            runs = [get_run(db, r["id"]) for r in reversed(list_runs(db, agent="claude-1"))]
            posts = [p for p in list_feed(db) if p["agent"] == "claude-1"]
            d = list_directives(db, directive_id=did)[0]
        assert runs[0]["baseline"] and runs[0]["val_bpb"] == pytest.approx(1.94)
        assert runs[1]["status"] == "keep" and runs[1]["val_bpb"] == pytest.approx(1.93)
        assert runs[1]["parent_id"] == runs[0]["id"]
        assert {"result", "insight", "ack"} <= {p["kind"] for p in posts}
        assert d["deliveries"][0]["acked_at"] is not None
        assert "LR = 0.07" in Repo(wt).git.show(f"{runs[1]['commit']}:train_gpt.py")
        log = (ws.agents_dir / "claude-1" / "driver.log").read_text()
        assert "starting:" in log and "verdict keep" in log and "restarting in" in log
        row = swarm.listing(ws)[0]
        assert row["alive"] and row["runs"] >= 2 and row["restarts"] >= 1
    finally:
        swarm.down(ws, timeout_s=30)
        stop_daemon(ws)
    assert procs.alive_pid(ws, "claude-1") is None


def test_stalled_agent_is_shown(ws: Workspace, tmp_path: Path) -> None:
    """A CLI that says nothing and runs nothing is marked stalled (no daemon needed)."""
    silent = tmp_path / "silent.py"
    silent.write_text("import time\ntime.sleep(60)\n")
    ws.config_path.write_text(
        f"[agents]\nstall_s = 2\n[agents.drivers]\nclaude = '{sys.executable} {silent} {{prompt}}'\n"
    )
    swarm.add_agent(ws, "quiet", driver="claude")
    procs.spawn(ws, "quiet", ws.worktrees_dir / "quiet")
    try:

        def stalled() -> bool:
            from helm.models.agents import get_agent

            with ws.db(write=False) as db:
                return get_agent(db, "quiet")["state"] == "stalled"

        _wait(stalled, 30, "the agent to be marked stalled")
        assert swarm.listing(ws)[0]["note"].startswith("no experiment or output")
    finally:
        assert procs.stop(ws, "quiet", timeout_s=30)
