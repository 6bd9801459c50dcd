"""The one handle every query function takes: ``Db``, over stdlib sqlite3 or SQLAlchemy.

Agents call ``helm context``, ``helm feed post`` and ``helm directive ack`` before and after
every experiment, dozens of processes at a time, and importing SQLModel alone costs about
0.5 s. So the query functions of ``helm.models`` are written once, in portable SQL with named
parameters, against this small interface: the standard library's ``sqlite3`` for the default
SQLite store (no ORM import at all), or a SQLAlchemy connection for any other URL
(PostgreSQL for a team). Python booleans are bound as parameters, never spelled as ``1``/``0``,
so the same text runs on both engines.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from helm.models.version import SCHEMA_VERSION

Row = dict[str, Any]
"""One row of a table, by column name (the names of ``helm.models.tables``)."""

BUSY_TIMEOUT_S = float(os.environ.get("HELM_BUSY_TIMEOUT_S") or 60)
"""How long a writer waits for the lock before giving up (tests shorten it)."""


class NotFound(LookupError):
    """A referenced row (run, agent, directive ...) does not exist."""


class Db(Protocol):
    """The operations the query functions need, inside one transaction."""

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]: ...

    def insert(self, sql: str, params: dict[str, Any]) -> int: ...

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int: ...


class SqliteDb:
    """``Db`` over one stdlib sqlite3 connection (same pragmas as the SQLAlchemy engine)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        cur = self.conn.execute(sql, params or {})
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def insert(self, sql: str, params: dict[str, Any]) -> int:
        return int(self.conn.execute(sql, params).lastrowid or 0)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        return self.conn.execute(sql, params or {}).rowcount


class SqlaDb:
    """``Db`` over a SQLAlchemy connection, for stores that are not SQLite files."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import text

        return [dict(r._mapping) for r in self.conn.execute(text(sql), params or {})]

    def insert(self, sql: str, params: dict[str, Any]) -> int:
        from sqlalchemy import text

        result = self.conn.execute(text(sql + " RETURNING id"), params)
        return int(result.scalar_one())

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        from sqlalchemy import text

        return int(self.conn.execute(text(sql), params or {}).rowcount)


def db_of(session: Any) -> Db:
    """The ``Db`` of an open ORM session (same transaction), for the daemon's code paths."""
    return SqlaDb(session.connection())


def one(db: Db, sql: str, params: dict[str, Any] | None = None) -> Row | None:
    """The first row of a query, or None."""
    found = db.rows(sql, params)
    return found[0] if found else None


def in_list(column: str, values: Iterable[Any], params: dict[str, Any], prefix: str) -> str:
    """``column IN (:p0, :p1 ...)`` with the values bound into ``params`` (never inlined).

    An empty set gives a condition that is always false, which is what ``IN ()`` means.
    """
    names = []
    for i, value in enumerate(values):
        name = f"{prefix}{i}"
        params[name] = value
        names.append(f":{name}")
    return f"{column} IN ({', '.join(names)})" if names else "1 = 0"


def sqlite_ready(path: Path) -> bool:
    """True when ``path`` is a store at exactly this helm's schema (else use the full Store)."""
    try:
        if path.stat().st_size == 0:
            return False
    except OSError:
        return False
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            row = conn.execute("SELECT value FROM helm_meta WHERE key='schema_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row) and str(row[0]) == str(SCHEMA_VERSION)


@contextmanager
def sqlite_tx(path: Path, *, write: bool) -> Iterator[SqliteDb]:
    """One transaction on the SQLite store; writes take the lock up front (BEGIN IMMEDIATE)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
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


def checked_columns(table: str, names: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """``names`` as quoted SQL identifiers, once each is known to be a column of ``table``.

    Column names cannot be bound as parameters, so a write that takes its fields by name
    (``update_run(db, id, status=...)``) formats them into the SQL text: only names from the
    table's own list may get there; anything else is a ValueError, never SQL.
    """
    names = list(names)
    bad = sorted(set(names) - set(allowed))
    if bad:
        raise ValueError(f"not a column of {table}: {', '.join(bad)}")
    return [f'"{n}"' for n in names]


def set_clause(table: str, fields: Mapping[str, Any], allowed: Iterable[str]) -> str:
    """``"a" = :a, "b" = :b``: an UPDATE's assignments for ``fields`` (names checked)."""
    cols = checked_columns(table, fields, allowed)
    return ", ".join(f"{c} = :{k}" for c, k in zip(cols, fields, strict=True))


def insert_sql(table: str, values: Mapping[str, Any], allowed: Iterable[str]) -> str:
    """``INSERT INTO table ("a", "b") VALUES (:a, :b)`` for ``values`` (names checked)."""
    cols = checked_columns(table, values, allowed)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(f':{k}' for k in values)})"
