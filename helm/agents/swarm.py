"""The swarm as the operator sees it: create agents, bring them up or down, list them.

``up`` and ``down`` only write what the operator wants (``Agent.desired``); the daemon's
supervisor converges the processes onto it. ``down`` also stops the processes itself, so that
it works (and returns only when they are gone) with no daemon running.
"""

from __future__ import annotations

import json
import time
from typing import Any

from helm.agents import procs
from helm.agents import taskrepo as tr
from helm.agents.drivers import validate_driver
from helm.workspace import Workspace


def _name_prefix(driver: str) -> str:
    return driver if driver in ("sweep", "claude", "codex", "opencode") else "agent"


def add_agent(
    ws: Workspace, name: str, *, driver: str = "sweep", env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Register an agent with its worktree on ``agents/<name>`` (from the current base)."""
    from helm.models.agents import get_agent
    from helm.models.directives import deliver_recent_broadcasts
    from helm.models.pins import latest_pin

    validate_driver(driver)
    tr.ensure_task_repo(ws)
    wt = tr.ensure_worktree(ws, name)
    procs.agent_dir(ws, name)
    with ws.db(write=True) as db:
        pin = latest_pin(db)
        if db.rows("SELECT id FROM agent WHERE name = :n", {"n": name}):
            raise ValueError(f"agent {name!r} exists")
        db.insert(
            "INSERT INTO agent (name, driver, state, desired, worktree, branch, base_pin_id, "
            "restarts, created_at, env_json) VALUES (:n, :d, 'stopped', 'up', :wt, :b, :p, 0, "
            ":t, :env)",
            {
                "n": name,
                "d": driver,
                "wt": str(wt),
                "b": tr.branch_of(name),
                "p": pin["id"] if pin else None,
                "t": time.time(),
                "env": json.dumps(env or {}, sort_keys=True),
            },
        )
        deliver_recent_broadcasts(db, name)
        return get_agent(db, name)


def up(
    ws: Workspace,
    n: int | None = None,
    *,
    driver: str = "sweep",
    env: dict[str, str] | None = None,
    task_repo: str | None = None,
) -> list[str]:
    """Ensure ``n`` agents of ``driver`` want to be up (default: all of them, or one new)."""
    validate_driver(driver)
    tr.ensure_task_repo(ws, task_repo)
    with ws.db(write=False) as db:
        rows = db.rows("SELECT name FROM agent WHERE driver = :d ORDER BY id", {"d": driver})
        taken = {r["name"] for r in db.rows("SELECT name FROM agent")}
    names = [r["name"] for r in rows]
    want = n if n is not None else max(1, len(names))
    chosen = names[:want]
    i = 1
    while len(chosen) < want:
        name = f"{_name_prefix(driver)}-{i}"
        i += 1
        if name in taken:
            continue
        add_agent(ws, name, driver=driver, env=env)
        chosen.append(name)
    with ws.db(write=True) as db:
        for name in chosen:
            fields: dict[str, Any] = {"n": name}
            sql = "UPDATE agent SET desired = 'up'"
            if env:
                sql += ", env_json = :env"
                fields["env"] = json.dumps(env, sort_keys=True)
            db.execute(sql + " WHERE name = :n", fields)
    return chosen


def down(ws: Workspace, names: list[str] | None = None, *, timeout_s: float = 90.0) -> list[str]:
    """Mark agents down and stop their processes (each cancels its job in flight)."""
    from helm.models.agents import agent_names
    from helm.models.db import NotFound

    with ws.db(write=True) as db:
        known = agent_names(db)
        targets = names or known
        unknown = sorted(set(targets) - set(known))
        if unknown:
            raise NotFound(f"unknown agent(s): {', '.join(unknown)}")
        for name in targets:
            db.execute("UPDATE agent SET desired = 'down' WHERE name = :n", {"n": name})
    for name in targets:
        procs.stop(ws, name, timeout_s=timeout_s)
    with ws.db(write=True) as db:
        for name in targets:
            if procs.alive_pid(ws, name) is None:
                db.execute(
                    "UPDATE agent SET state = 'stopped', pid = NULL WHERE name = :n", {"n": name}
                )
    return targets


def listing(ws: Workspace) -> list[dict[str, Any]]:
    """One row per agent: what ``helm swarm ls`` prints and the TUI shows."""
    with ws.db(write=False) as db:
        agents = db.rows("SELECT * FROM agent ORDER BY id")
        stats = {
            r["agent"]: r
            for r in db.rows(
                "SELECT agent, COUNT(*) AS runs, "
                "SUM(CASE WHEN status = 'keep' THEN 1 ELSE 0 END) AS keeps, "
                "SUM(CASE WHEN status = 'crash' THEN 1 ELSE 0 END) AS crashes, "
                "MIN(CASE WHEN status IN ('keep', 'discard', 'done') THEN val_bpb END) AS best "
                "FROM run GROUP BY agent"
            )
        }
        current: dict[int, dict[str, Any]] = {}
        ids = [a["current_run_id"] for a in agents if a["current_run_id"]]
        if ids:
            for r in db.rows(
                "SELECT run.id, run.description, run.status, job.step, job.total_steps, "
                "job.state AS job_state, job.host FROM run LEFT JOIN job ON job.id = run.job_id "
                f"WHERE run.id IN ({','.join(str(int(i)) for i in ids)})"
            ):
                current[r["id"]] = r
    out = []
    for a in agents:
        s = stats.get(a["name"], {})
        cur = current.get(a["current_run_id"] or -1)
        alive = procs.alive_pid(ws, a["name"]) is not None
        state = a["state"] if alive else ("stopped" if a["desired"] == "down" else "down")
        out.append(
            {
                "name": a["name"],
                "driver": a["driver"],
                "desired": a["desired"],
                "state": state,
                "alive": alive,
                "pid": a["pid"] if alive else None,
                "current": None
                if cur is None
                else {
                    "run_id": cur["id"],
                    "description": cur["description"],
                    "status": cur["status"],
                    "step": cur["step"],
                    "total_steps": cur["total_steps"],
                    "host": cur["host"],
                },
                "runs": int(s.get("runs") or 0),
                "keeps": int(s.get("keeps") or 0),
                "crashes": int(s.get("crashes") or 0),
                "best": s.get("best"),
                "restarts": a["restarts"],
                "last_seen_at": a["last_seen_at"],
                "note": a["note"],
                "worktree": a["worktree"],
            }
        )
    return out
