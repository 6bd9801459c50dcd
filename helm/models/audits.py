"""Audit rows: verdicts on community pull requests (or folders), with their evidence."""

from __future__ import annotations

from helm.models.db import Db, Row


def recent_audits(db: Db, limit: int = 20) -> list[Row]:
    """The newest audits, short form (what an agent's context shows)."""
    return db.rows(
        "SELECT ref, verdict, claimed_bpb, reproduced_bpb, created_at FROM audit "
        "ORDER BY id DESC LIMIT :n",
        {"n": limit},
    )
