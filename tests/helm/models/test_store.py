"""The store itself: WAL, schema versions and migrations, unusable workspaces."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect

from helm.models import schema
from helm.models.engine import Store, StoreError
from helm.models.tables import FeedPost
from helm.workspace import Workspace, WorkspaceError


def test_fresh_store_is_wal_and_versioned(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'helm.db'}")
    with store.write() as s:
        s.add(FeedPost(text="hi"))
    conn = sqlite3.connect(tmp_path / "helm.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = conn.execute("SELECT value FROM helm_meta WHERE key='schema_version'").fetchone()
    assert int(version[0]) == schema.SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path, helm, home: Path) -> None:
    Workspace(home).ensure().store  # noqa: B018
    conn = sqlite3.connect(home / "helm.db")
    conn.execute("UPDATE helm_meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    r = helm("feed", "ls")
    assert r.code == 1
    assert "written by a newer helm (schema 99" in r.err


def test_migration_runs_in_order_with_batch_ops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old store gains what later versions added; the version moves with each step."""
    url = f"sqlite:///{tmp_path / 'helm.db'}"
    Store(url).close()
    import sqlalchemy as sa

    def add_priority(ops) -> None:  # noqa: ANN001
        with ops.batch_alter_table("feed_post") as batch:
            batch.add_column(sa.Column("pinned", sa.Boolean(), nullable=True))

    def add_index(ops) -> None:  # noqa: ANN001
        ops.create_index("ix_feed_pinned", "feed_post", ["pinned"])

    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 2)
    monkeypatch.setattr(
        schema,
        "MIGRATIONS",
        {schema.SCHEMA_VERSION - 1: add_priority, schema.SCHEMA_VERSION: add_index},
    )
    store = Store(url)
    with store.engine.connect() as conn:
        cols = {c["name"] for c in inspect(conn).get_columns("feed_post")}
        idx = {i["name"] for i in inspect(conn).get_indexes("feed_post")}
        assert schema.read_version(conn) == schema.SCHEMA_VERSION
    assert "pinned" in cols and "ix_feed_pinned" in idx


def test_missing_migration_is_an_error_not_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'helm.db'}"
    Store(url).close()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", {})
    with pytest.raises(StoreError, match="no migration to schema version"):
        Store(url)


def test_garbage_database_file_gives_clear_error(home: Path, helm) -> None:
    home.mkdir(parents=True)
    (home / "helm.db").write_bytes(b"this is not sqlite" * 100)
    r = helm("feed", "ls")
    assert r.code == 1 and r.err.startswith("helm: ") and "helm.db" in r.err


def test_unwritable_workspace_is_refused(tmp_path: Path, helm) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = helm("--home", str(blocker / "sub"), "feed", "ls")
    assert r.code == 1 and "cannot create workspace" in r.err
    with pytest.raises(WorkspaceError):
        Workspace(blocker / "sub").ensure()


def test_init_creates_layout(home: Path, helm) -> None:
    r = helm("init")
    assert r.code == 0
    for name in ("helm.db", "jobs", "data", "submissions", "worktrees", "logs"):
        assert (home / name).exists(), name
