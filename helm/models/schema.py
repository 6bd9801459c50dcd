"""Schema version, fresh stores and upgrades that work on a populated store.

A store records the schema version it was written with. Opening it compares that number with
``SCHEMA_VERSION``: a fresh store gets every table at once; an older one runs
``migrations.MIGRATIONS`` in order; a newer one is refused, because an old helm writing a
newer schema would corrupt it silently.

An upgrade of a SQLite store runs on a connection of its own with foreign keys switched off
*before* its transaction begins (SQLite ignores the pragma inside one, and a batch alter
rebuilds a table by copy, drop and rename, which a referenced table does not survive with
foreign keys on). ``PRAGMA foreign_key_check`` must come back empty before the commit, and
the file is copied to ``helm.db.bak-<old version>`` first, so a failed or regretted upgrade
loses nothing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from helm.models import errors, migrations
from helm.models.version import SCHEMA_VERSION

MIGRATIONS = migrations.MIGRATIONS


def read_version(conn: Connection) -> int | None:
    """The stored schema version, or None for an empty database."""
    if not inspect(conn).has_table("helm_meta"):
        return None
    row = conn.execute(text("SELECT value FROM helm_meta WHERE key = 'schema_version'")).first()
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise errors.SchemaFault(errors.BAD_VERSION.format(value=row[0])) from None


def _write_version(conn: Connection, version: int) -> None:
    conn.execute(text("DELETE FROM helm_meta WHERE key = 'schema_version'"))
    conn.execute(
        text("INSERT INTO helm_meta (key, value) VALUES ('schema_version', :v)"),
        {"v": str(version)},
    )


def create_fresh(conn: Connection) -> None:
    """Create every table of the current schema in an empty database."""
    from sqlmodel import SQLModel

    import helm.models.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

    SQLModel.metadata.create_all(conn)
    _write_version(conn, SCHEMA_VERSION)


def backup_sqlite(path: Path, version: int) -> Path:
    """A consistent copy of the store as ``helm.db.bak-<version>`` (WAL included)."""
    dest = path.with_name(f"{path.name}.bak-{version}")
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    src = sqlite3.connect(path, timeout=60)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    os.replace(tmp, dest)
    return dest


def run_migrations(conn: Connection, from_version: int) -> None:
    """Every migration after ``from_version``, in order, in the caller's transaction.

    On SQLite the caller's connection must have foreign keys off (see ``upgrade_store``);
    the integrity of every reference is checked here, before the caller commits.
    """
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    ops = Operations(MigrationContext.configure(conn, opts={"render_as_batch": True}))
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        step = MIGRATIONS.get(version)
        if step is None:
            raise errors.SchemaFault(f"has no migration to schema version {version}")
        step(ops)
        _write_version(conn, version)
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            tables = sorted({str(r[0]) for r in broken})
            raise errors.SchemaFault(
                f"was not upgraded: schema {SCHEMA_VERSION} would leave {len(broken)} broken references "
                f"in {', '.join(tables)}; nothing was changed"
            )
