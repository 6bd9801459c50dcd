"""The swarm end to end, through ``helm demo --headless``: real daemon, local CPU host, tiny
data, two sweep agents training the real script on the tiny CPU preset.

While the demo runs, the test steers it as an operator would: a ``set KEY=v`` directive
sent mid-way (both agents must acknowledge it and run with it next), then ``helm pin run``
of the best run (both agents must move onto the new base). Then it interrupts the demo,
which stops its agents and daemon and prints its JSON summary.
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
from helm.workspace import Workspace

HELM = [sys.executable, "-m", "helm.cli"]
AGENTS = ("sweep-1", "sweep-2")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HELM_AGENT", "HELM_DB_URL")}
    env["HELM_HOME"] = str(home)
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


def _rows(ws: Workspace, sql: str, **params) -> list[dict]:  # noqa: ANN003
    with ws.db(write=False) as db:
        return db.rows(sql, params)


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
        [*HELM, "demo", "--headless", "--agents", "2", "--duration", "600", "--json"],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    ws = Workspace(home)
    try:
        _wait(lambda: ws.db_path.exists() and len(
            _rows(ws, "SELECT DISTINCT agent FROM run")) == 2, 120, "both agents' first runs",
            demo)  # fmt: skip
        # mid-way: both agents are training; the directive reaches them before their next run
        did = json.loads(_helm(home, "directive", "send", "set QK_GAIN_INIT=1.25", "--json"))["id"]

        def followed() -> bool:
            d = json.loads(_helm(home, "directive", "ls", "--json"))
            acks = {x["agent"]: x["acked_at"] for x in d[0]["deliveries"]}
            if d[0]["id"] != did or not all(acks.get(a) for a in AGENTS):
                return False
            for a in AGENTS:
                after = _rows(ws, "SELECT env_json FROM run WHERE agent = :a AND created_at > :t",
                              a=a, t=acks[a])  # fmt: skip
                if not after:
                    return False
                assert all(json.loads(r["env_json"])["QK_GAIN_INIT"] == "1.25" for r in after)
            return True

        _wait(followed, 150, "both agents to acknowledge and follow `set`", demo)
        best = _rows(ws, "SELECT id FROM run WHERE status IN ('keep','discard') "
                         "AND val_bpb IS NOT NULL ORDER BY val_bpb LIMIT 1")[0]["id"]  # fmt: skip
        pin = json.loads(_helm(home, "pin", "run", str(best), "--json"))

        def moved() -> bool:
            return all(
                _rows(
                    ws, "SELECT id FROM run WHERE agent = :a AND base_pin_id = :p", a=a, p=pin["id"]
                )  # fmt: skip
                for a in AGENTS
            )

        _wait(moved, 150, "both agents to run on the pinned base", demo)
        ctx = json.loads(_helm(home, "context", "--json"))
        assert ctx["base"]["id"] == pin["id"] and ctx["base"]["kind"] == "run"
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=180)
        log.close()
    assert demo.returncode == 0, (tmp_path / "demo.err").read_text()[-3000:]
    summary = json.loads(out)
    for key in ("runs", "keeps", "crashes", "best_val_bpb", "insights"):
        assert key in summary
    assert summary["scored_runs"] >= 4 and math.isfinite(summary["best_val_bpb"])
    assert summary["keeps"] >= 1 and summary["runs"] >= 4
    scored = _rows(ws, "SELECT * FROM run WHERE val_bpb IS NOT NULL AND status != 'cancelled'")
    assert all(0 < r["val_bpb"] < 10 and r["bytes_total"] for r in scored)
    results = _rows(ws, "SELECT run_id FROM feed_post WHERE kind = 'result'")
    assert {r["id"] for r in scored} <= {p["run_id"] for p in results}
    agents = _rows(ws, "SELECT * FROM agent ORDER BY name")
    assert all(a["base_pin_id"] == pin["id"] for a in agents)
    # everything the demo started has stopped; nothing is left running
    assert is_running(ws) is None
    assert all(procs.alive_pid(ws, a) is None for a in AGENTS)
    assert not _rows(ws, "SELECT id FROM job WHERE state IN ('queued', 'staging', 'running')")


@pytest.mark.slow
def test_demo_headless_short(tmp_path: Path) -> None:
    """``helm demo --headless --duration S --json`` ends on time, cleanly, with its summary."""
    home = tmp_path / "home"
    t0 = time.monotonic()
    out = subprocess.run(
        [*HELM, "demo", "--headless", "--agents", "1", "--duration", "8", "--json"],
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
    assert "running headless for 8s" in out.stderr
    assert time.monotonic() - t0 < 200
    ws = Workspace(home)
    assert is_running(ws) is None and procs.alive_pid(ws, "sweep-1") is None
    assert not _rows(ws, "SELECT id FROM job WHERE state IN ('queued', 'staging', 'running')")
    # the local host was registered with the tiny data
    hosts = _rows(ws, "SELECT * FROM host")
    assert hosts[0]["kind"] == "local" and hosts[0]["data_dir"] == str(ws.data_dir)
