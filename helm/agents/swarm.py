"""The swarm as the operator sees it: create agents, bring them up or down, list them.

``up`` and ``down`` only write what the operator wants (``Agent.desired``); the daemon's
supervisor converges the processes onto it. ``down`` also stops the processes itself, so that
it works (and returns only when they are gone) with no daemon running.
"""

from __future__ import annotations

import json
from typing import Any

from helm.agents import procs
from helm.agents import taskrepo as tr
from helm.agents.drivers import validate_driver
from helm.models import agents as agent_rows
from helm.models.db import NotFound
from helm.models.directives import deliver_recent_broadcasts
from helm.models.pins import latest_pin
from helm.models.runs import agent_run_stats, runs_with_jobs
from helm.remote.secrets import agent_scope, take_env
from helm.workspace import Workspace


def _name_prefix(driver: str) -> str:
    return driver if driver in ("sweep", "claude", "codex", "opencode") else "agent"


def fixed_env(
    ws: Workspace, name: str, env: dict[str, str] | None, secrets: tuple[str, ...] = ()
) -> dict[str, str]:
    """The agent's fixed environment as it may be stored (secrets ``***``, their values kept
    in the agent's secret scope for each of its jobs); ValueError on a bad ``[secrets]``."""
    return take_env(ws.root, agent_scope(name), env or {}, names=secrets)


def add_agent(
    ws: Workspace,
    name: str,
    *,
    driver: str = "sweep",
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Register an agent with its worktree on ``agents/<name>`` (from the current base)."""
    validate_driver(driver)
    env = fixed_env(ws, name, env, secrets)
    tr.ensure_task_repo(ws)
    wt = tr.ensure_worktree(ws, name)
    procs.agent_dir(ws, name)
    with ws.db(write=True) as db:
        pin = latest_pin(db)
        row = agent_rows.add_agent(
            db,
            name,
            driver=driver,
            worktree=str(wt),
            branch=tr.branch_of(name),
            base_pin_id=pin["id"] if pin else None,
            env=env,
        )
        deliver_recent_broadcasts(db, name)
        return row


def up(
    ws: Workspace,
    n: int | None = None,
    *,
    driver: str = "sweep",
    env: dict[str, str] | None = None,
    task_repo: str | None = None,
    secrets: tuple[str, ...] = (),
) -> list[str]:
    """Ensure ``n`` agents of ``driver`` want to be up (default: all of them, or one new).

    ``env`` (each agent's fixed environment) passes the secret rule, ``secrets`` naming more.
    """
    validate_driver(driver)
    tr.ensure_task_repo(ws, task_repo)
    with ws.db(write=False) as db:
        names = [r["name"] for r in agent_rows.list_agents(db, driver=driver)]
        taken = set(agent_rows.agent_names(db))
    want = n if n is not None else max(1, len(names))
    chosen = names[:want]
    i = 1
    while len(chosen) < want:
        name = f"{_name_prefix(driver)}-{i}"
        i += 1
        if name in taken:
            continue
        add_agent(ws, name, driver=driver, env=env, secrets=secrets)
        chosen.append(name)
    stored = {name: fixed_env(ws, name, env, secrets) for name in chosen} if env else {}
    with ws.db(write=True) as db:
        for name in chosen:
            fields: dict[str, Any] = {"desired": "up"}
            if env:
                fields["env_json"] = json.dumps(stored[name], sort_keys=True)
            agent_rows.update_agent(db, name, **fields)
    return chosen


def down(ws: Workspace, names: list[str] | None = None, *, timeout_s: float = 90.0) -> list[str]:
    """Mark agents down and stop their processes (each cancels its job in flight)."""
    with ws.db(write=True) as db:
        known = agent_rows.agent_names(db)
        targets = names or known
        unknown = sorted(set(targets) - set(known))
        if unknown:
            raise NotFound(f"unknown agent(s): {', '.join(unknown)}")
        for name in targets:
            agent_rows.update_agent(db, name, desired="down")
    for name in targets:
        procs.stop(ws, name, timeout_s=timeout_s)
    with ws.db(write=True) as db:
        for name in targets:
            if procs.alive_pid(ws, name) is None:
                agent_rows.update_agent(db, name, state="stopped", pid=None)
    return targets


def listing(ws: Workspace) -> list[dict[str, Any]]:
    """One row per agent: what ``helm swarm ls`` prints and the TUI shows."""
    with ws.db(write=False) as db:
        agents = agent_rows.list_agents(db)
        stats = agent_run_stats(db)
        current = runs_with_jobs(db, [a["current_run_id"] for a in agents if a["current_run_id"]])
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
