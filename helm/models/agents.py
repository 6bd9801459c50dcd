"""Agent rows: who is in the swarm, what the operator wants of each, what each is doing."""

from __future__ import annotations

from helm.models.db import Db, NotFound, Row, one


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
