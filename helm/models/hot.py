"""The agent-facing queries, in plain SQL, so that agent calls start fast.

Agents call ``helm context``, ``helm feed post`` and ``helm directive ack`` before and after
every experiment, dozens of processes at a time. Importing SQLModel alone costs about 0.5 s
here, so these queries are written once in portable SQL with named parameters and run through
a small ``Db`` interface: the standard library's ``sqlite3`` for the default SQLite store (no
ORM import at all), or a SQLAlchemy connection for any other URL (PostgreSQL). The table and
column names are those of ``helm.models.tables``; tests run both paths on the same store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from helm.models.version import CLAIM_TTL_S, SCHEMA_VERSION

FINISHED = ("keep", "discard", "done")
_FINISHED_SQL = ", ".join(f"'{s}'" for s in FINISHED)


class NotFound(LookupError):
    """A referenced row (run, agent, directive ...) does not exist."""


class Db(Protocol):
    """The two operations the hot path needs, inside one transaction."""

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def insert(self, sql: str, params: dict[str, Any]) -> int: ...

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None: ...


class SqliteDb:
    """``Db`` over one stdlib sqlite3 connection (same pragmas as the SQLAlchemy engine)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params or {})
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def insert(self, sql: str, params: dict[str, Any]) -> int:
        return int(self.conn.execute(sql, params).lastrowid or 0)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.conn.execute(sql, params or {})


class SqlaDb:
    """``Db`` over a SQLAlchemy connection, for stores that are not SQLite files."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from sqlalchemy import text

        return [dict(r._mapping) for r in self.conn.execute(text(sql), params or {})]

    def insert(self, sql: str, params: dict[str, Any]) -> int:
        from sqlalchemy import text

        result = self.conn.execute(text(sql + " RETURNING id"), params)
        return int(result.scalar_one())

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        from sqlalchemy import text

        self.conn.execute(text(sql), params or {})


def sqlite_ready(path: Path) -> bool:
    """True when ``path`` is a store at exactly this helm's schema (else use the full Store)."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(path, timeout=60)
        try:
            row = conn.execute("SELECT value FROM helm_meta WHERE key='schema_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row) and int(row[0]) == SCHEMA_VERSION


@contextmanager
def sqlite_tx(path: Path, *, write: bool) -> Iterator[SqliteDb]:
    """One transaction on the SQLite store; writes take the lock up front (BEGIN IMMEDIATE)."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield SqliteDb(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


# Shapes ---------------------------------------------------------------------------------------
def _run(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: row[k]
        for k in (
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
    }
    out["env"] = json.loads(row.get("env_json") or "{}")
    return out


def _post(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "agent": row["agent"],
        "kind": row["kind"],
        "text": row["text"],
        "run_id": row["run_id"],
        "tags": json.loads(row["tags_json"] or "[]"),
        "created_at": row["created_at"],
    }


# Feed ----------------------------------------------------------------------------------------
def post_feed(
    db: Db,
    text: str,
    *,
    agent: str | None = None,
    kind: str = "insight",
    run_id: int | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
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
    return _post(params)


def list_feed(
    db: Db, *, since: float | None = None, limit: int = 100, kind: str | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM feed_post WHERE created_at >= :since"
    params: dict[str, Any] = {"since": since or 0.0, "limit": limit}
    if kind:
        sql += " AND kind = :kind"
        params["kind"] = kind
    sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
    return [_post(r) for r in db.rows(sql, params)]


# Directives -----------------------------------------------------------------------------------
def agent_names(db: Db) -> list[str]:
    return [r["name"] for r in db.rows("SELECT name FROM agent ORDER BY name")]


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


# Runs, leaderboard, context ---------------------------------------------------------------------
def list_runs(
    db: Db, *, agent: str | None = None, status: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM run WHERE 1=1"
    params: dict[str, Any] = {"limit": limit}
    if agent:
        sql += " AND agent = :agent"
        params["agent"] = agent
    if status:
        sql += " AND status = :status"
        params["status"] = status
    return [_run(r) for r in db.rows(sql + " ORDER BY id DESC LIMIT :limit", params)]


def leaderboard(db: Db, *, limit: int = 50, agent: str | None = None) -> list[dict[str, Any]]:
    """Finished runs with a score, lowest val_bpb first (lower is better); ties: earlier run."""
    sql = f"SELECT * FROM run WHERE status IN ({_FINISHED_SQL}) AND val_bpb IS NOT NULL"
    params: dict[str, Any] = {"limit": limit}
    if agent:
        sql += " AND agent = :agent"
        params["agent"] = agent
    rows = db.rows(sql + " ORDER BY val_bpb ASC, id ASC LIMIT :limit", params)
    return [dict(_run(r), rank=i + 1) for i, r in enumerate(rows)]


def current_pin(db: Db) -> dict[str, Any] | None:
    rows = db.rows("SELECT * FROM pin ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def live_claims(db: Db) -> list[dict[str, Any]]:
    return db.rows(
        "SELECT id, agent, text, created_at, expires_at FROM claim WHERE expires_at > :t "
        "ORDER BY created_at DESC",
        {"t": time.time()},
    )


def add_claim(db: Db, agent: str, text: str, ttl_s: float = CLAIM_TTL_S) -> dict[str, Any]:
    text = text.strip()
    if not text:
        raise ValueError("claim text is empty")
    params = {"agent": agent, "text": text, "at": time.time()}
    params["exp"] = params["at"] + ttl_s
    cid = db.insert(
        "INSERT INTO claim (agent, text, created_at, expires_at) VALUES (:agent, :text, :at, :exp)",
        params,
    )
    return {
        "id": cid,
        "agent": agent,
        "text": text,
        "created_at": params["at"],
        "expires_at": params["exp"],
    }


def get_agent(db: Db, name: str) -> dict[str, Any]:
    rows = db.rows("SELECT * FROM agent WHERE name = :n", {"n": name})
    if not rows:
        raise NotFound(f"no agent {name!r}")
    return rows[0]


def context(db: Db, agent: str | None, *, top: int = 5, feed: int = 10) -> dict[str, Any]:
    """Everything an agent needs before its next experiment, as one JSON-ready dict."""
    me: dict[str, Any] | None = None
    if agent is not None:
        row = get_agent(db, agent)
        counts = db.rows(
            "SELECT COUNT(*) AS runs, SUM(CASE WHEN status = 'keep' THEN 1 ELSE 0 END) AS keeps "
            "FROM run WHERE agent = :a",
            {"a": agent},
        )[0]
        best = leaderboard(db, limit=1, agent=agent)
        me = {
            "name": row["name"],
            "driver": row["driver"],
            "state": row["state"],
            "branch": row["branch"],
            "worktree": row["worktree"],
            "runs": int(counts["runs"] or 0),
            "keeps": int(counts["keeps"] or 0),
            "best": best[0] if best else None,
        }
    audits = db.rows(
        "SELECT ref, verdict, claimed_bpb, reproduced_bpb, created_at FROM audit "
        "ORDER BY id DESC LIMIT 20"
    )
    return {
        "agent": me,
        "base": current_pin(db),
        "directives": (
            list_directives(db, agent=agent, pending_only=True, own_delivery_only=True)
            if agent
            else []
        ),
        "leaderboard": leaderboard(db, limit=top),
        "feed": list_feed(db, limit=feed),
        "claims": live_claims(db),
        "audits": audits,
    }
