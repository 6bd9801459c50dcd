"""Pins: the history of the base every agent builds on; the newest one is the base."""

from __future__ import annotations

import time

from helm.models.db import Db, NotFound, Row, one


def latest_pin(db: Db) -> Row | None:
    """The current base (the newest pin), or None before ``helm init``."""
    return one(db, "SELECT * FROM pin ORDER BY id DESC LIMIT 1")


def find_pin(db: Db, pin_id: int | None) -> Row | None:
    """The pin with this id, or None (also for ``None``)."""
    if pin_id is None:
        return None
    return one(db, "SELECT * FROM pin WHERE id = :id", {"id": pin_id})


def get_pin(db: Db, pin_id: int) -> Row:
    """The pin with this id; NotFound if there is none."""
    row = find_pin(db, pin_id)
    if row is None:
        raise NotFound(f"no pin {pin_id}")
    return row


def pin_history(db: Db, limit: int = 20) -> list[Row]:
    """Pins newest first."""
    return db.rows("SELECT * FROM pin ORDER BY id DESC LIMIT :n", {"n": limit})


def add_pin(db: Db, *, kind: str, ref: str, commit: str, pinned_by: str, note: str | None) -> Row:
    """Record a new base (``kind``: init, pr, run or file); returns the pin row."""
    pin_id = db.insert(
        'INSERT INTO pin (kind, ref, "commit", pinned_by, note, created_at) '
        "VALUES (:k, :r, :c, :b, :n, :t)",
        {"k": kind, "r": ref, "c": commit, "b": pinned_by, "n": note, "t": time.time()},
    )
    return get_pin(db, pin_id)
