"""The insight feed: agents' findings, automatic run results, acks, audit verdicts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from helm.models.db import Db, NotFound, Row, in_list
from helm.models.states import IN_FLIGHT_RUN


def post_json(row: Row) -> dict[str, Any]:
    """A feed row as ``helm feed ls --json`` prints it (tags decoded)."""
    return {
        "id": row["id"],
        "agent": row["agent"],
        "kind": row["kind"],
        "text": row["text"],
        "run_id": row["run_id"],
        "tags": json.loads(row["tags_json"] or "[]"),
        "created_at": row["created_at"],
    }


def post_feed(
    db: Db,
    text: str,
    *,
    agent: str | None = None,
    kind: str = "insight",
    run_id: int | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """Add one post; a post about a run must name a run that exists."""
    text = text.strip()
    if not text:
        raise ValueError("feed text is empty")
    if run_id is not None and not db.rows("SELECT id FROM run WHERE id=:id", {"id": run_id}):
        raise NotFound(f"no run {run_id}")
    params = {
        "agent": agent,
        "kind": kind,
        "text": text,
        "run_id": run_id,
        "tags_json": json.dumps(list(tags)),
        "created_at": time.time(),
    }
    params["id"] = db.insert(
        "INSERT INTO feed_post (agent, kind, text, run_id, tags_json, created_at) "
        "VALUES (:agent, :kind, :text, :run_id, :tags_json, :created_at)",
        params,
    )
    return post_json(params)


def list_feed(
    db: Db, *, since: float | None = None, limit: int = 100, kind: str | None = None
) -> list[dict[str, Any]]:
    """Posts newest first, optionally since a time and of one kind."""
    sql = "SELECT * FROM feed_post WHERE created_at >= :since"
    params: dict[str, Any] = {"since": since or 0.0, "limit": limit}
    if kind:
        sql += " AND kind = :kind"
        params["kind"] = kind
    sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
    return [post_json(r) for r in db.rows(sql, params)]


FEED_KINDS = ("insight", "result", "ack", "verification", "system")
"""Every kind a post is written with: agents' insights, run results, directive acks, audit
verdicts and helm's own notes (``helm feed ls --kind`` accepts exactly these)."""


AT_RISK_TAG = "at-risk"
"""The tag of the early-abort service's one post on a running run that first looks hopeless
(``helm.agents.abort_service``)."""


def at_risk_run_ids(db: Db, run_ids: Sequence[int]) -> set[int]:
    """The runs among ``run_ids`` that the early-abort rule flagged at risk and that are still
    in flight (queued or running): the TUI marks them before they are stopped. An aborted or
    finished run is left out: its status says what became of it."""
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return set()
    params: dict[str, Any] = {"tag": f'%"{AT_RISK_TAG}"%'}
    wanted = in_list("f.run_id", ids, params, "r")
    live = in_list("r.status", sorted(IN_FLIGHT_RUN), params, "st")
    rows = db.rows(
        f"SELECT DISTINCT f.run_id FROM feed_post f JOIN run r ON r.id = f.run_id "
        f"WHERE {wanted} AND {live} AND f.tags_json LIKE :tag",
        params,
    )
    return {int(r["run_id"]) for r in rows}
