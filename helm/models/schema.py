"""Schema version and migrations.

A store records the schema version it was written with. Opening it compares that number with
``SCHEMA_VERSION``: a fresh store gets every table at once; an older one runs the migrations in
order (alembic's operations in batch mode, so column changes work on SQLite too); a newer one
is refused, because an old helm writing a newer schema would corrupt it silently.

To change the schema: edit the tables, bump ``SCHEMA_VERSION`` (in ``version.py``) and add ``MIGRATIONS[N]``, a
function that takes alembic ``Operations`` and upgrades a store from N-1 to N.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.operations import Operations

from helm.models.version import SCHEMA_VERSION

MIGRATIONS: dict[int, Callable[[Operations], None]] = {}


def read_version(conn: Connection) -> int | None:
    """The stored schema version, or None for an empty database."""
    if not inspect(conn).has_table("helm_meta"):
        return None
    row = conn.execute(text("SELECT value FROM helm_meta WHERE key = 'schema_version'")).first()
    return int(row[0]) if row else None


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


def upgrade(conn: Connection, from_version: int) -> None:
    """Run every migration after ``from_version``, in order, in the caller's transaction."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    ops = Operations(MigrationContext.configure(conn, opts={"render_as_batch": True}))
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        step = MIGRATIONS.get(version)
        if step is None:
            raise RuntimeError(f"no migration to schema version {version}")
        step(ops)
        _write_version(conn, version)
