"""The queries behind the experiment loop: branch best, reference, spread, duplicates.

Plain SQL over ``Db`` (no ORM), so that ``helm exp run`` and the sweep agent stay cheap.
A branch's *reference* is its latest kept baseline run on its current base (the first run
after a base move or after a ``set`` directive); its *best* is the lowest kept val_bpb since
that reference. Scores from before a reference were measured under other conditions and are
not compared against.
"""

from __future__ import annotations

import json
from typing import Any

from helm.agents.keeprule import pooled_spread
from helm.models.db import Db

SCORED = ("keep", "discard", "done")
_SCORED_SQL = ", ".join(f"'{s}'" for s in SCORED)
IN_FLIGHT = ("queued", "running")


def env_json(env: dict[str, str]) -> str:
    """The canonical form runs are stored and de-duplicated under."""
    return json.dumps(dict(sorted(env.items())), sort_keys=True)


def reference(db: Db, agent: str, base_pin_id: int | None) -> dict[str, Any] | None:
    rows = db.rows(
        "SELECT * FROM run WHERE agent = :a AND base_pin_id = :p AND baseline = 1 "
        "AND status = 'keep' ORDER BY id DESC LIMIT 1",
        {"a": agent, "p": base_pin_id},
    )
    return rows[0] if rows else None


def branch_best(db: Db, agent: str, base_pin_id: int | None) -> dict[str, Any] | None:
    """The agent's best kept run since its reference on this base (None: no reference yet)."""
    ref = reference(db, agent, base_pin_id)
    if ref is None:
        return None
    rows = db.rows(
        "SELECT * FROM run WHERE agent = :a AND base_pin_id = :p AND status = 'keep' "
        "AND val_bpb IS NOT NULL AND id >= :r ORDER BY val_bpb ASC, id DESC LIMIT 1",
        {"a": agent, "p": base_pin_id, "r": ref["id"]},
    )
    return rows[0] if rows else ref


def leader(db: Db, *, exclude_run: int | None = None) -> dict[str, Any] | None:
    rows = db.rows(
        f"SELECT * FROM run WHERE status IN ({_SCORED_SQL}) AND val_bpb IS NOT NULL "
        "AND id != :x ORDER BY val_bpb ASC, id ASC LIMIT 1",
        {"x": exclude_run if exclude_run is not None else -1},
    )
    return rows[0] if rows else None


def seed_spread(db: Db) -> tuple[float | None, int]:
    """Pooled seed-to-seed std of val_bpb over repeated (code, env) configs, and its dof."""
    rows = db.rows(
        f"SELECT code_hash, env_json, seed, val_bpb FROM run WHERE status IN ({_SCORED_SQL}) "
        "AND val_bpb IS NOT NULL AND code_hash IS NOT NULL"
    )
    groups: dict[tuple[str, str], dict[Any, float]] = {}
    for r in rows:
        # one score per seed: a replay of the same seed says nothing about seed noise
        groups.setdefault((r["code_hash"], r["env_json"]), {}).setdefault(r["seed"], r["val_bpb"])
    return pooled_spread(list(g.values()) for g in groups.values())


def has_repeats(db: Db) -> bool:
    return seed_spread(db)[0] is not None


def duplicate(db: Db, code_hash: str, env: str, seed: int | None) -> dict[str, Any] | None:
    """An earlier run of exactly this code, environment and seed (cancelled ones excluded)."""
    rows = db.rows(
        "SELECT * FROM run WHERE code_hash = :h AND env_json = :e "
        "AND COALESCE(seed, -1) = :s AND status != 'cancelled' ORDER BY id DESC LIMIT 1",
        {"h": code_hash, "e": env, "s": -1 if seed is None else seed},
    )
    return rows[0] if rows else None


def in_flight(db: Db, agent: str) -> list[dict[str, Any]]:
    return db.rows(
        "SELECT * FROM run WHERE agent = :a AND status IN ('queued', 'running') ORDER BY id",
        {"a": agent},
    )


def run_at_commit(db: Db, agent: str, commit: str) -> dict[str, Any] | None:
    rows = db.rows(
        'SELECT * FROM run WHERE agent = :a AND "commit" = :c ORDER BY id DESC LIMIT 1',
        {"a": agent, "c": commit},
    )
    return rows[0] if rows else None


def get_run(db: Db, run_id: int) -> dict[str, Any] | None:
    rows = db.rows("SELECT * FROM run WHERE id = :id", {"id": run_id})
    return rows[0] if rows else None


def get_job(db: Db, job_id: int) -> dict[str, Any] | None:
    rows = db.rows("SELECT * FROM job WHERE id = :id", {"id": job_id})
    return rows[0] if rows else None


def pin_by_id(db: Db, pin_id: int | None) -> dict[str, Any] | None:
    if pin_id is None:
        return None
    rows = db.rows("SELECT * FROM pin WHERE id = :id", {"id": pin_id})
    return rows[0] if rows else None


def update_agent(db: Db, name: str, **fields: Any) -> None:
    if not fields:
        return
    sets = ", ".join(f"{k} = :{k}" for k in fields)
    db.execute(f"UPDATE agent SET {sets} WHERE name = :name", {**fields, "name": name})


def update_run(db: Db, run_id: int, **fields: Any) -> None:
    if not fields:
        return
    sets = ", ".join(f'"{k}" = :{k}' for k in fields)
    db.execute(f"UPDATE run SET {sets} WHERE id = :id", {**fields, "id": run_id})
