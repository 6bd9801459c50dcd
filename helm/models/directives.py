"""Directives: instructions from the operator to some or all agents, and their acks."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from helm.models.agents import agent_names
from helm.models.db import Db, NotFound
from helm.models.feed import post_feed


def send_directive(
    db: Db, text: str, *, targets: Sequence[str] | None = None, sender: str = "operator"
) -> dict[str, Any]:
    """Record a directive and a delivery row for each targeted agent (all agents if none)."""
    text = text.strip()
    if not text:
        raise ValueError("directive text is empty")
    known = set(agent_names(db))
    wanted = sorted(set(targets)) if targets else sorted(known)
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise NotFound(f"unknown agent(s): {', '.join(unknown)}")
    did = db.insert(
        "INSERT INTO directive (text, sender, targets_json, created_at) "
        "VALUES (:text, :sender, :targets, :at)",
        {
            "text": text,
            "sender": sender,
            "targets": json.dumps(wanted) if targets else "null",
            "at": time.time(),
        },
    )
    for agent in wanted:
        db.insert(
            "INSERT INTO directive_delivery (directive_id, agent) VALUES (:d, :a)",
            {"d": did, "a": agent},
        )
    return list_directives(db, directive_id=did)[0]


def deliver_recent_broadcasts(db: Db, agent: str, *, window_s: float = 86400.0) -> int:
    """Give a newly registered agent the broadcasts of the last day that it has not seen."""
    rows = db.rows(
        "SELECT id FROM directive WHERE targets_json = 'null' AND created_at >= :t AND id NOT IN "
        "(SELECT directive_id FROM directive_delivery WHERE agent = :a)",
        {"t": time.time() - window_s, "a": agent},
    )
    for r in rows:
        db.insert(
            "INSERT INTO directive_delivery (directive_id, agent) VALUES (:d, :a)",
            {"d": r["id"], "a": agent},
        )
    return len(rows)


def list_directives(
    db: Db,
    *,
    agent: str | None = None,
    pending_only: bool = False,
    directive_id: int | None = None,
    limit: int = 200,
    own_delivery_only: bool = False,
) -> list[dict[str, Any]]:
    """Directives newest first, each with its per-agent deliveries.

    ``own_delivery_only`` (with ``agent``) keeps just that agent's delivery: what an agent's
    context needs, and far less to read when fifty agents share two hundred directives.
    """
    sql = "SELECT * FROM directive WHERE 1=1"
    params: dict[str, Any] = {"limit": limit}
    if directive_id is not None:
        sql += " AND id = :id"
        params["id"] = directive_id
    if agent is not None:
        pending = " AND acked_at IS NULL" if pending_only else ""
        sql += f" AND id IN (SELECT directive_id FROM directive_delivery WHERE agent = :a{pending})"
        params["a"] = agent
    elif pending_only:
        sql += " AND id IN (SELECT directive_id FROM directive_delivery WHERE acked_at IS NULL)"
    sql += " ORDER BY id DESC LIMIT :limit"
    directives = db.rows(sql, params)
    by_id: dict[int, list[dict[str, Any]]] = {d["id"]: [] for d in directives}
    if by_id:
        ids = ",".join(str(int(i)) for i in by_id)
        only = " AND agent = :a" if own_delivery_only and agent is not None else ""
        for r in db.rows(
            f"SELECT directive_id, agent, delivered_at, acked_at FROM directive_delivery "
            f"WHERE directive_id IN ({ids}){only} ORDER BY agent",
            {"a": agent} if only else None,
        ):
            by_id[r["directive_id"]].append(
                {"agent": r["agent"], "delivered_at": r["delivered_at"], "acked_at": r["acked_at"]}
            )
    return [
        {
            "id": d["id"],
            "text": d["text"],
            "sender": d["sender"],
            "targets": json.loads(d["targets_json"] or "null"),
            "created_at": d["created_at"],
            "deliveries": by_id[d["id"]],
        }
        for d in directives
    ]


def mark_delivered(db: Db, agent: str, directive_ids: Sequence[int]) -> None:
    for did in directive_ids:
        db.execute(
            "UPDATE directive_delivery SET delivered_at = :t "
            "WHERE agent = :a AND directive_id = :d AND delivered_at IS NULL",
            {"t": time.time(), "a": agent, "d": int(did)},
        )


def ack_directive(db: Db, directive_id: int, agent: str) -> dict[str, Any]:
    """Record that ``agent`` acted on a directive; a second ack keeps the first time."""
    if not db.rows("SELECT id FROM directive WHERE id = :d", {"d": directive_id}):
        raise NotFound(f"no directive {directive_id}")
    rows = db.rows(
        "SELECT * FROM directive_delivery WHERE directive_id = :d AND agent = :a",
        {"d": directive_id, "a": agent},
    )
    if not rows:
        raise NotFound(f"directive {directive_id} is not addressed to agent {agent!r}")
    row = rows[0]
    if row["acked_at"] is None:
        stamp = time.time()
        row["acked_at"] = stamp
        row["delivered_at"] = row["delivered_at"] or stamp
        db.execute(
            "UPDATE directive_delivery SET acked_at = :t, delivered_at = :dt WHERE id = :id",
            {"t": stamp, "dt": row["delivered_at"], "id": row["id"]},
        )
        post_feed(db, f"acknowledged directive #{directive_id}", agent=agent, kind="ack")
    return {
        "directive_id": directive_id,
        "agent": agent,
        "delivered_at": row["delivered_at"],
        "acked_at": row["acked_at"],
    }
