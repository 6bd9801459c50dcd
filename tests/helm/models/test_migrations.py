"""Upgrades of populated stores: foreign keys, backups, and the shipped migration.

Real SQLite files and a real PostgreSQL database; the store is filled through the query
layer, then opened by a newer schema exactly as a helm upgrade would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect

from helm.models import migrations, schema
from helm.models.agents import agent_names
from helm.models.db import SqlaDb
from helm.models.directives import list_directives, send_directive
from helm.models.engine import Store, StoreError
from helm.models.runs import get_run, insert_run
from helm.models.tables import Agent, Host, Job
from helm.models.version import SCHEMA_VERSION


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store location on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'helm.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def _populate(store: Store) -> int:
    """Two agents and one directive delivered to both: rows that reference ``directive``."""
    with store.write() as s:
        s.add(Agent(name="a1"))
        s.add(Agent(name="a2"))
    with store.write() as s:
        return send_directive(SqlaDb(s.connection()), "try int5 for MLP")["id"]


def _deliveries(store: Store, directive_id: int) -> list[str]:
    with store.read() as s:
        d = list_directives(SqlaDb(s.connection()), directive_id=directive_id)
    return [x["agent"] for x in d[0]["deliveries"]] if d else []


def _add_directive_column(ops) -> None:  # noqa: ANN001
    """Alter the table that directive_delivery references (SQLite rebuilds it by copy)."""
    with ops.batch_alter_table("directive") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=True))


def test_upgrade_alters_a_referenced_table_of_a_populated_store(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(url)
    did = _populate(store)
    store.close()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", {SCHEMA_VERSION + 1: _add_directive_column})
    upgraded = Store(url)
    with upgraded.engine.connect() as conn:
        assert schema.read_version(conn) == SCHEMA_VERSION + 1
        assert "priority" in {c["name"] for c in inspect(conn).get_columns("directive")}
    assert _deliveries(upgraded, did) == ["a1", "a2"]
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        backup = path.with_name(f"helm.db.bak-{SCHEMA_VERSION}")
        conn = sqlite3.connect(backup)
        kept = conn.execute("SELECT value FROM helm_meta WHERE key='schema_version'").fetchone()
        assert int(kept[0]) == SCHEMA_VERSION
        assert conn.execute("SELECT COUNT(*) FROM directive_delivery").fetchone()[0] == 2
        conn.close()
        # foreign keys are on again for every ordinary connection after the upgrade
        with upgraded.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    upgraded.close()


def test_upgrade_that_breaks_references_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'helm.db'}"
    store = Store(url)
    did = _populate(store)
    store.close()

    def drop_directives(ops) -> None:  # noqa: ANN001
        ops.execute("DELETE FROM directive")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", {SCHEMA_VERSION + 1: drop_directives})
    with pytest.raises(StoreError, match="was not upgraded: .* broken references in"):
        Store(url)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION)
    again = Store(url)
    with again.engine.connect() as conn:
        assert schema.read_version(conn) == SCHEMA_VERSION
    assert _deliveries(again, did) == ["a1", "a2"]
    again.close()


def _index_names(store: Store) -> set[tuple[str, str]]:
    """The (table, index) pairs helm named itself (engines add their own for constraints)."""
    with store.engine.connect() as conn:
        insp = inspect(conn)
        return {
            (t, i["name"])
            for t in insp.get_table_names()
            for i in insp.get_indexes(t)
            if i["name"].startswith("ix_")
        }


def test_shipped_migration_upgrades_a_version_1_store_to_a_fresh_one(url: str) -> None:
    """A store written by schema 1 (before the query indexes) ends as tables.py defines it."""
    from sqlmodel import SQLModel

    assert set(migrations.MIGRATIONS) == set(range(2, SCHEMA_VERSION + 1))
    declared = {(t.name, i.name) for t in SQLModel.metadata.tables.values() for i in t.indexes}
    store = Store(url)
    assert _index_names(store) == declared
    did = _populate(store)
    with store.write() as s:  # a host and a job from before Slurm hosts existed
        s.add(Host(name="box", kind="ssh"))
        s.add(Job(state="succeeded"))
    v2 = {
        ("run", "ix_run_status_val_bpb"),
        ("run", "ix_run_agent_base_pin"),
        ("directive_delivery", "ix_delivery_agent_acked"),
    }
    with store.engine.begin() as conn:  # take the store back to what schema 1 wrote
        for _table, name in sorted(v2):
            conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(sa.text("DROP INDEX ix_run_screen_run_id"))  # schema 6's, with its column
        if conn.dialect.name == "postgresql":
            for table in ("run", "job"):
                conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN seed TYPE INTEGER"))
        # 3 Slurm, 4 phase, 5 cost, 6 screens
        for table, column in V3_COLUMNS + V4_COLUMNS + V5_COLUMNS + V6_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE helm_meta SET value = '1' WHERE key = 'schema_version'"))
    assert not v2 & _index_names(store)
    store.close()
    upgraded = Store(url)
    with upgraded.engine.connect() as conn:
        assert schema.read_version(conn) == SCHEMA_VERSION
    assert _index_names(upgraded) == declared
    with upgraded.engine.connect() as conn:
        for table in ("run", "job"):
            seed = next(c for c in inspect(conn).get_columns(table) if c["name"] == "seed")
            assert isinstance(seed["type"], sa.BigInteger), (table, seed["type"])
    with upgraded.write() as s:  # a seed past 2**31 fits on every engine now
        run_id = insert_run(SqlaDb(s.connection()), agent="a1", seed=2**32 - 1)
    with upgraded.read() as s:
        assert get_run(SqlaDb(s.connection()), run_id)["seed"] == 2**32 - 1
        assert agent_names(SqlaDb(s.connection())) == ["a1", "a2"]
    assert _deliveries(upgraded, did) == ["a1", "a2"]
    with upgraded.engine.connect() as conn:
        for table, column in V3_COLUMNS + V4_COLUMNS + V5_COLUMNS + V6_COLUMNS:
            assert column in {c["name"] for c in inspect(conn).get_columns(table)}, column
        # rows written before schema 3 read as what they were: SSH/local hosts, plain jobs
        assert conn.execute(sa.text("SELECT slurm_json FROM host")).scalars().all() == ["{}"]
        assert conn.execute(sa.text("SELECT backend_id FROM job")).scalars().all() == [None]
        # and before schema 4, a job with no phase (training, or over)
        phases = conn.execute(sa.text("SELECT phase, phase_at FROM job")).all()
        assert [tuple(p) for p in phases] == [(None, None)]
        # and before schema 5, a host without a price, a job that held nothing known
        assert conn.execute(sa.text("SELECT price_per_gpu_hour FROM host")).scalars().all() == [
            None
        ]
        costs = conn.execute(sa.text("SELECT gpu_seconds, cost FROM job")).all()
        assert [tuple(c) for c in costs] == [(0.0, 0.0)]
        # and before schema 6, every run a full run without a screen
        screens = conn.execute(sa.text("SELECT screen, screen_run_id FROM run")).all()
        assert screens and all(tuple(r) in {(0, None), (False, None)} for r in screens)
    upgraded.close()


V3_COLUMNS = (("host", "slurm_json"), ("job", "backend_id"), ("job", "queue_reason"))
V4_COLUMNS = (("job", "phase"), ("job", "phase_at"))
V5_COLUMNS = (("host", "price_per_gpu_hour"), ("job", "gpu_seconds"), ("job", "cost"))
V6_COLUMNS = (("run", "screen"), ("run", "screen_run_id"), ("run", "screen_ref_id"))
