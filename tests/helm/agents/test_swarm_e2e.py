"""The swarm end to end, through ``helm demo --headless``: real daemon, local CPU host, tiny
data, two sweep agents training the real script on the tiny CPU preset.

While the demo runs, the test steers it as an operator would: a ``set KEY=v`` directive
sent mid-way (both agents must acknowledge it and run with it next), then ``helm pin run``
of the best run (both agents must move onto the new base). Then it interrupts the demo,
which stops its agents and daemon and prints its JSON summary.

The short headless demo runs on both store engines: with ``HELM_DB_URL`` set, the demo, its
daemon and its agent all keep their records on the PostgreSQL server.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helm.agents import procs
from helm.daemon import is_running
from helm.models.agents import list_agents
from helm.models.feed import list_feed
from helm.models.hosts import list_hosts
from helm.models.jobs import live_job_ids
from helm.models.runs import get_run, list_runs, ranked_rows
from helm.models.states import FINISHED_RUN
from helm.workspace import Workspace

HELM = [sys.executable, "-m", "helm.cli"]
AGENTS = ("sweep-1", "sweep-2")


def _env(home: Path) -> dict[str, str]:
    """The environment of a ``helm`` subprocess: this test's home, and its store's URL when
    the ``home`` fixture set one (the postgres engine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HELM_AGENT", "HELM_DB_URL")}
    env["HELM_HOME"] = str(home)
    if os.environ.get("HELM_DB_URL") and os.environ.get("HELM_HOME") == str(home):
        env["HELM_DB_URL"] = os.environ["HELM_DB_URL"]
    return env


def _helm(home: Path, *args: str) -> str:
    out = subprocess.run([*HELM, *args], env=_env(home), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _wait(cond, timeout: float, what: str, proc: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert proc.poll() is None, f"the demo exited early ({proc.returncode})"
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def _runs(ws: Workspace, agent: str | None = None) -> list[dict]:
    """Run rows (every column), oldest first."""
    with ws.db(write=False) as db:
        return [get_run(db, r["id"]) for r in list_runs(db, agent=agent, limit=10_000)[::-1]]


def _live_jobs(ws: Workspace) -> list[int]:
    with ws.db(write=False) as db:
        return live_job_ids(db)


@pytest.mark.slow
def test_two_sweep_agents_follow_a_directive_and_a_pin(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # cheap knobs only, and no separate noise run: the two references measure the noise
    (home / "config.toml").write_text(
        '[agents.sweep]\nmeasure_noise = false\nkeys = ["MATRIX_LR", "SCALAR_LR", "EMBED_LR"]\n'
    )
    log = (tmp_path / "demo.err").open("w")
    demo = subprocess.Popen(
        [
            *HELM,
            "demo",
            "--home",
            str(home),
            "--headless",
            "--agents",
            "2",
            "--duration",
            "600",
            "--json",
        ],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
        # as a shell without job control starts a background command (`make test &`): with
        # SIGINT ignored, which the demo used to inherit and so ran on to its full duration
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    ws = Workspace(home)
    try:
        _wait(lambda: ws.db_path.exists() and len({r["agent"] for r in _runs(ws)}) == 2, 120,
              "both agents' first runs", demo)  # fmt: skip
        # mid-way: both agents are training; the directive reaches them before their next run
        did = json.loads(_helm(home, "directive", "send", "set QK_GAIN_INIT=1.25", "--json"))["id"]

        def followed() -> bool:
            d = json.loads(_helm(home, "directive", "ls", "--json"))
            acks = {x["agent"]: x["acked_at"] for x in d[0]["deliveries"]}
            if d[0]["id"] != did or not all(acks.get(a) for a in AGENTS):
                return False
            for a in AGENTS:
                after = [r for r in _runs(ws, a) if r["created_at"] > acks[a]]
                if not after:
                    return False
                assert all(json.loads(r["env_json"])["QK_GAIN_INIT"] == "1.25" for r in after)
            return True

        _wait(followed, 150, "both agents to acknowledge and follow `set`", demo)
        with ws.db(write=False) as db:
            best = ranked_rows(db, limit=1)[0]["id"]
        pin = json.loads(_helm(home, "pin", "run", str(best), "--json"))

        def moved() -> bool:
            return all(any(r["base_pin_id"] == pin["id"] for r in _runs(ws, a)) for a in AGENTS)

        _wait(moved, 150, "both agents to run on the pinned base", demo)
        ctx = json.loads(_helm(home, "context", "--json"))
        assert ctx["base"]["id"] == pin["id"] and ctx["base"]["kind"] == "run"
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        try:
            out, _ = demo.communicate(timeout=180)
        except subprocess.TimeoutExpired:  # never leave a demo training behind the suite
            os.killpg(demo.pid, signal.SIGKILL)
            demo.communicate(timeout=30)
            raise
        finally:
            log.close()
    assert demo.returncode == 0, (tmp_path / "demo.err").read_text()[-3000:]
    summary = json.loads(out)
    for key in ("runs", "keeps", "crashes", "best_val_bpb", "insights"):
        assert key in summary
    assert summary["scored_runs"] >= 4 and math.isfinite(summary["best_val_bpb"])
    assert summary["keeps"] >= 1 and summary["runs"] >= 4
    scored = [r for r in _runs(ws) if r["val_bpb"] is not None and r["status"] != "cancelled"]
    assert all(0 < r["val_bpb"] < 10 and r["bytes_total"] for r in scored)
    with ws.db(write=False) as db:
        results = list_feed(db, kind="result", limit=10_000)
        agents = list_agents(db)
    assert {r["id"] for r in scored} <= {p["run_id"] for p in results}
    assert all(a["base_pin_id"] == pin["id"] for a in agents)
    # everything the demo started has stopped; nothing is left running
    assert is_running(ws) is None
    assert all(procs.alive_pid(ws, a) is None for a in AGENTS)
    assert not _live_jobs(ws)


@pytest.mark.slow
@pytest.mark.engines
def test_demo_headless_short(home: Path) -> None:
    """``helm demo --headless --duration S --json`` ends on time, cleanly, with its summary,
    and its agent's experiment loop works on the store: it records runs, and no step fails."""
    t0 = time.monotonic()
    out = subprocess.run(
        [
            *HELM,
            "demo",
            "--home",
            str(home),
            "--headless",
            "--agents",
            "1",
            "--duration",
            "20",
            "--json",
        ],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert {"runs", "keeps", "crashes", "best_val_bpb", "insights"} <= set(summary)
    assert summary["agents"] == ["sweep-1"]
    if summary["scored_runs"] == 0:
        assert summary["best_val_bpb"] is None
    assert "running headless for 20s" in out.stderr
    assert time.monotonic() - t0 < 200
    ws = Workspace(home)
    assert is_running(ws) is None and procs.alive_pid(ws, "sweep-1") is None
    assert not _live_jobs(ws)
    # the agent queued its reference run (judged, or cancelled when the demo ended) ...
    runs = _runs(ws, "sweep-1")
    assert runs and runs[0]["description"] == "reference run on this base"
    assert all(r["status"] in FINISHED_RUN | {"cancelled"} for r in runs), runs
    assert summary["runs"] + summary["cancelled"] == len(runs)
    # ... and no step of its loop failed (a failing query is posted as "sweep step failed")
    with ws.db(write=False) as db:
        system = [p["text"] for p in list_feed(db, kind="system", limit=10_000)]
        hosts = list_hosts(db)
    assert not [t for t in system if "failed" in t], system
    # the local host was registered with the tiny data
    assert hosts[0]["kind"] == "local" and hosts[0]["data_dir"] == str(ws.data_dir)
