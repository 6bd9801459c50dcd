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
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from helm.models import errors, schema
from helm.models.db import BUSY_TIMEOUT_S
from helm.models.errors import StoreError

__all__ = ["Store", "StoreError", "db_url_for", "store_label"]

_READ_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("helm_read_only", default=False)
_SQLITE_MAGIC = b"SQLite format 3\x00"


def db_url_for(home: Path) -> str:
    """The URL for a workspace: ``HELM_DB_URL`` if set, else ``<home>/helm.db``."""
    return os.environ.get("HELM_DB_URL") or f"sqlite:///{home / 'helm.db'}"


def store_label(url: str) -> str:
    """How a store is named in messages: its file, or its URL without the password."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1] or url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse: name no part of it
        return "(HELM_DB_URL)"


def _install_sqlite_hooks(engine: Engine, *, foreign_keys: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Autocommit at the driver level: we issue BEGIN ourselves (pysqlite's own implicit
        # BEGIN is deferred, which is what causes lock-upgrade deadlocks).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN" if _READ_ONLY.get() else "BEGIN IMMEDIATE")


def _sqlite_engine(url: str, **kwargs: object) -> Engine:
    return create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}, **kwargs
    )


def _check_sqlite_file(path: Path, label: str) -> None:
    """Refuse a file that exists but cannot be a store, before SQLite touches it.

    SQLite treats a 0-byte file as an empty database and would happily create a fresh
    campaign in it: a truncated ``helm.db`` (a full disk, a bad copy) must be refused instead.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        detail = errors.UNREADABLE.format(detail=exc.strerror)
        raise StoreError(f"store {label} {detail}") from None
    if not head:
        raise StoreError(f"store {label} " + errors.EMPTY)
    if head != _SQLITE_MAGIC:
        raise StoreError(f"store {label} " + errors.CORRUPT.format(detail="not a SQLite file"))


class Store:
    """A handle on one campaign's database; cheap to create, one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = store_label(url)
        self.is_sqlite = url.startswith("sqlite")
        self.path: Path | None = None
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                self.path = Path(path)
                parent = self.path.parent
                if not parent.is_dir():
                    raise StoreError(f"workspace folder {parent} does not exist")
                if not os.access(parent, os.W_OK):
                    raise StoreError(f"workspace folder {parent} is not writable")
                _check_sqlite_file(self.path, self.label)
            self.engine = _sqlite_engine(url)
            _install_sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        try:
            self._ensure_schema()
        except errors.SchemaFault as exc:
            raise StoreError(f"store {self.label} {exc}") from None
        except StoreError:
            raise
        except Exception as exc:  # unreadable file, not a database, bad URL ...
            line = errors.store_failure(exc, self.label, busy_timeout_s=BUSY_TIMEOUT_S)
            raise StoreError(line or f"cannot open store {self.label}: {exc}") from exc

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
        if version is None:
            # Take the write lock, then look again: another process may have won the race.
            with self.engine.begin() as conn:
                version = schema.read_version(conn)
                self._check_not_newer(version)
                if version is None:
                    schema.create_fresh(conn)
                    return
        if version < schema.SCHEMA_VERSION:
            self._upgrade(version)

    def _upgrade(self, version: int) -> None:
        """Migrate an older store: backed up, foreign keys off, references checked."""
        if not self.is_sqlite:
            with self.engine.begin() as conn:  # PostgreSQL: transactional DDL, FKs checked
                current = schema.read_version(conn)
                if current is not None and current < schema.SCHEMA_VERSION:
                    schema.run_migrations(conn, current)
            return
        if self.path is not None:
            schema.backup_sqlite(self.path, version)
        upgrader = _sqlite_engine(self.url, poolclass=NullPool)
        _install_sqlite_hooks(upgrader, foreign_keys=False)
        try:
            with upgrader.begin() as conn:  # BEGIN IMMEDIATE: one upgrader at a time
                current = schema.read_version(conn)
                self._check_not_newer(current)
                if current is not None and current < schema.SCHEMA_VERSION:
                    schema.run_migrations(conn, current)
        finally:
            upgrader.dispose()

    def _check_not_newer(self, version: int | None) -> None:
        if version is not None and version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"store {self.label} "
                + errors.NEWER.format(found=version, known=schema.SCHEMA_VERSION)
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
