"""Run rows: one experiment each (a commit plus an environment) and what it scored.

Lower val_bpb is better. The leaderboard ordering (score, then the earlier run) is defined
here once; everything that ranks runs calls ``leaderboard``.
"""

from __future__ import annotations

import json
from typing import Any

from helm.models.db import Db, NotFound, Row, in_list, one
from helm.models.states import FINISHED_RUN

_JSON_FIELDS = (
    "id",
    "agent",
    "parent_id",
    "branch",
    "commit",
    "description",
    "status",
    "seed",
    "gpus",
    "val_bpb",
    "val_loss",
    "bytes_total",
    "bytes_code",
    "train_time_ms",
    "steps",
    "host",
    "gpu_type",
    "job_id",
    "created_at",
    "finished_at",
    "tail",
)


def run_json(row: Row) -> dict[str, Any]:
    """A run row as ``helm runs --json`` prints it (environment decoded)."""
    out = {k: row[k] for k in _JSON_FIELDS}
    out["env"] = json.loads(row.get("env_json") or "{}")
    return out


def find_run(db: Db, run_id: int | None) -> Row | None:
    """The run with this id, or None (also for ``None``)."""
    if run_id is None:
        return None
    return one(db, "SELECT * FROM run WHERE id = :id", {"id": int(run_id)})


def get_run(db: Db, run_id: int) -> Row:
    """The run with this id; NotFound if there is none."""
    row = find_run(db, run_id)
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


def list_runs(
    db: Db, *, agent: str | None = None, status: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Runs newest first, as ``run_json`` shapes them."""
    sql = "SELECT * FROM run WHERE 1=1"
    params: dict[str, Any] = {"limit": limit}
    if agent:
        sql += " AND agent = :agent"
        params["agent"] = agent
    if status:
        sql += " AND status = :status"
        params["status"] = status
    return [run_json(r) for r in db.rows(sql + " ORDER BY id DESC LIMIT :limit", params)]


def ranked_rows(
    db: Db,
    *,
    limit: int | None = 50,
    agent: str | None = None,
    exclude_run: int | None = None,
    text: str | None = None,
) -> list[Row]:
    """Finished runs with a score, best first: lowest val_bpb, ties to the earlier run.

    ``text`` keeps runs whose agent, description or status contains it (case-insensitive),
    so that a filtered leaderboard is still ranked by the store, not in Python.
    """
    params: dict[str, Any] = {}
    sql = f"SELECT * FROM run WHERE {in_list('status', sorted(FINISHED_RUN), params, 'st')} "
    sql += "AND val_bpb IS NOT NULL"
    if agent:
        sql += " AND agent = :agent"
        params["agent"] = agent
    if exclude_run is not None:
        sql += " AND id != :x"
        params["x"] = exclude_run
    if text:
        sql += (
            " AND (LOWER(COALESCE(agent, '')) LIKE :t OR LOWER(description) LIKE :t"
            " OR LOWER(status) LIKE :t)"
        )
        params["t"] = f"%{text.lower()}%"
    sql += " ORDER BY val_bpb ASC, id ASC"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return db.rows(sql, params)


def leaderboard(db: Db, *, limit: int = 50, agent: str | None = None) -> list[dict[str, Any]]:
    """The ranked runs as ``helm leaderboard --json`` prints them, each with its rank."""
    rows = ranked_rows(db, limit=limit, agent=agent)
    return [dict(run_json(r), rank=i + 1) for i, r in enumerate(rows)]


def best_run(db: Db, *, agent: str | None = None, exclude_run: int | None = None) -> Row | None:
    """The top of the leaderboard (optionally one agent's, or all but one run)."""
    rows = ranked_rows(db, limit=1, agent=agent, exclude_run=exclude_run)
    return rows[0] if rows else None


def run_counts(db: Db, agent: str) -> tuple[int, int]:
    """How many runs an agent has made, and how many of them were kept."""
    row = db.rows(
        "SELECT COUNT(*) AS runs, SUM(CASE WHEN status = :keep THEN 1 ELSE 0 END) AS keeps "
        "FROM run WHERE agent = :a",
        {"a": agent, "keep": "keep"},
    )[0]
    return int(row["runs"] or 0), int(row["keeps"] or 0)
