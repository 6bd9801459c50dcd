"""Agent rows: who is in the swarm, what the operator wants of each, what each is doing."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from helm.models.db import Db, NotFound, Row, one, set_clause

AGENT_COLUMNS = frozenset(
    {
        "name",
        "driver",
        "state",
        "desired",
        "worktree",
        "branch",
        "pid",
        "base_pin_id",
        "current_run_id",
        "restarts",
        "created_at",
        "last_seen_at",
        "last_output_at",
        "note",
        "env_json",
        "started_at",
    }
)
"""The columns of ``agent`` a caller may write by name (all but ``id``; a test compares this
with ``tables.Agent``, which cannot be imported here: it would load SQLModel on the fast path)."""


def agent_names(db: Db) -> list[str]:
    """Every registered agent's name, sorted."""
    return [r["name"] for r in db.rows("SELECT name FROM agent ORDER BY name")]


def find_agent(db: Db, name: str) -> Row | None:
    """The agent called ``name``, or None."""
    return one(db, "SELECT * FROM agent WHERE name = :n", {"n": name})


def get_agent(db: Db, name: str) -> Row:
    """The agent called ``name``; NotFound if there is none."""
    row = find_agent(db, name)
    if row is None:
        raise NotFound(f"no agent {name!r}")
    return row


def list_agents(db: Db, *, driver: str | None = None) -> list[Row]:
    """Every agent (or every one of this driver), in the order they were added."""
    if driver is None:
        return db.rows("SELECT * FROM agent ORDER BY id")
    return db.rows("SELECT * FROM agent WHERE driver = :d ORDER BY id", {"d": driver})


def add_agent(
    db: Db,
    name: str,
    *,
    driver: str,
    worktree: str,
    branch: str,
    base_pin_id: int | None,
    env: Mapping[str, str] | None = None,
) -> Row:
    """Register an agent (stopped, wanted up); ValueError if the name is taken."""
    if find_agent(db, name) is not None:
        raise ValueError(f"agent {name!r} exists")
    db.insert(
        "INSERT INTO agent (name, driver, state, desired, worktree, branch, base_pin_id, "
        "restarts, created_at, env_json) VALUES (:n, :d, :state, :desired, :wt, :b, :p, 0, "
        ":t, :env)",
        {
            "n": name,
            "d": driver,
            "state": "stopped",
            "desired": "up",
            "wt": worktree,
            "b": branch,
            "p": base_pin_id,
            "t": time.time(),
            "env": json.dumps(dict(env or {}), sort_keys=True),
        },
    )
    return get_agent(db, name)


def update_agent(db: Db, name: str, **fields: Any) -> None:
    """Set these columns of agent ``name`` (names checked against ``AGENT_COLUMNS``)."""
    if not fields:
        return
    sets = set_clause("agent", fields, AGENT_COLUMNS)
    db.execute(f"UPDATE agent SET {sets} WHERE name = :name_", {**fields, "name_": name})


def count_restart(db: Db, name: str, **fields: Any) -> None:
    """One more restart of agent ``name`` (in the same statement: no lost increment), and
    optionally other columns with it."""
    sets = f", {set_clause('agent', fields, AGENT_COLUMNS)}" if fields else ""
    db.execute(
        f"UPDATE agent SET restarts = restarts + 1{sets} WHERE name = :name_",
        {**fields, "name_": name},
    )
