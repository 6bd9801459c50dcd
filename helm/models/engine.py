"""Engine setup: one SQLite file in WAL mode that many processes write at once.

Agents, the daemon and the TUI all write the same file. Three settings make that safe:
WAL (readers never block the writer), a long busy timeout (a writer waits instead of failing),
and ``BEGIN IMMEDIATE`` for write transactions (the write lock is taken up front, so two
writers never both upgrade a read lock and deadlock into "database is locked"). Reads use a
plain deferred ``BEGIN`` so the TUI's polling never queues behind writers.

``HELM_DB_URL`` points the store at any other SQLAlchemy URL (PostgreSQL for a team).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from helm.models import schema

BUSY_TIMEOUT_MS = 60_000
_READ_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("helm_read_only", default=False)


class StoreError(Exception):
    """The store cannot be used (unreadable, or written by a newer helm)."""


def db_url_for(home: Path) -> str:
    """The URL for a workspace: ``HELM_DB_URL`` if set, else ``<home>/helm.db``."""
    return os.environ.get("HELM_DB_URL") or f"sqlite:///{home / 'helm.db'}"


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Autocommit at the driver level: we issue BEGIN ourselves (pysqlite's own implicit
        # BEGIN is deferred, which is what causes lock-upgrade deadlocks).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN" if _READ_ONLY.get() else "BEGIN IMMEDIATE")


class Store:
    """A handle on one campaign's database; cheap to create, one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                parent = Path(path).parent
                if not parent.is_dir():
                    raise StoreError(f"workspace folder {parent} does not exist")
                if not os.access(parent, os.W_OK):
                    raise StoreError(f"workspace folder {parent} is not writable")
            self.engine = create_engine(
                url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
            )
            _install_sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        try:
            self._ensure_schema()
        except StoreError:
            raise
        except Exception as exc:  # unreadable file, not a database, bad URL ...
            raise StoreError(f"cannot open store {url}: {exc}") from exc

    def _ensure_schema(self) -> None:
        """Create or migrate the schema; the common case costs one read."""
        token = _READ_ONLY.set(True)
        try:
            with self.engine.begin() as conn:
                version = schema.read_version(conn)
        finally:
            _READ_ONLY.reset(token)
        if version == schema.SCHEMA_VERSION:
            return
        self._check_not_newer(version)
        # Take the write lock, then look again: another process may have won the race.
        with self.engine.begin() as conn:
            version = schema.read_version(conn)
            self._check_not_newer(version)
            if version is None:
                schema.create_fresh(conn)
            elif version < schema.SCHEMA_VERSION:
                schema.upgrade(conn, version)

    def _check_not_newer(self, version: int | None) -> None:
        if version is not None and version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"store {self.url} was written by a newer helm (schema {version}, "
                f"this helm knows {schema.SCHEMA_VERSION}); upgrade helm"
            )

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock; commits on success."""
        token = _READ_ONLY.set(False)
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        finally:
            _READ_ONLY.reset(token)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only; never waits for writers under WAL."""
        token = _READ_ONLY.set(True)
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
                session.expunge_all()
        finally:
            _READ_ONLY.reset(token)

    def close(self) -> None:
        self.engine.dispose()
