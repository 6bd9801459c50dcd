"""Audit rows: verdicts on community pull requests (or folders), with their evidence.

An audit is never updated: re-auditing a ref adds a row, so a ref's verdict is the newest
row for it, and every listing shows the latest audit per ref. ``evidence_json`` holds what
the verdict rests on (findings, the reproduction, the PR's head commit, the script's hash).
"""

from __future__ import annotations

import json
import time
from typing import Any

from helm.models.db import Db, NotFound, Row, in_list, one


def recent_audits(db: Db, limit: int = 20) -> list[Row]:
    """The newest audits, short form (what an agent's context shows)."""
    return db.rows(
        "SELECT ref, verdict, claimed_bpb, reproduced_bpb, created_at FROM audit "
        "ORDER BY id DESC LIMIT :n",
        {"n": limit},
    )


def latest_audits(db: Db) -> list[Row]:
    """The newest audit of every ref, newest first (``helm audit ls``, known scripts)."""
    return db.rows(
        "SELECT * FROM audit WHERE id IN (SELECT MAX(id) FROM audit GROUP BY ref) ORDER BY id DESC"
    )


def latest_audit(db: Db, *refs: str) -> Row | None:
    """The newest audit of any of ``refs`` (a ref may be spelled two ways), or None."""
    params: dict[str, Any] = {}
    cond = in_list("ref", refs, params, "r")
    return one(db, f"SELECT * FROM audit WHERE {cond} ORDER BY id DESC LIMIT 1", params)


def latest_audit_of_number(db: Db, number: int) -> Row | None:
    """The newest audit of pull request ``number`` in any repository (``#N`` on the CLI)."""
    return one(
        db,
        "SELECT * FROM audit WHERE ref LIKE :s ORDER BY id DESC LIMIT 1",
        {"s": f"%#{int(number)}"},
    )


def find_audit(db: Db, audit_id: int | None) -> Row | None:
    """The audit with this id, or None (also for ``None``)."""
    if audit_id is None:
        return None
    return one(db, "SELECT * FROM audit WHERE id = :id", {"id": int(audit_id)})


def get_audit(db: Db, audit_id: int) -> Row:
    """The audit with this id; NotFound if there is none."""
    row = find_audit(db, audit_id)
    if row is None:
        raise NotFound(f"no audit {audit_id}")
    return row


def audit_evidence(db: Db, audit_id: int) -> dict[str, Any] | None:
    """One audit's evidence, decoded (findings, reproduction ...), or None if no such audit."""
    row = one(db, "SELECT evidence_json FROM audit WHERE id = :id", {"id": int(audit_id)})
    return None if row is None else json.loads(row["evidence_json"] or "{}")


def insert_audit(
    db: Db,
    *,
    ref: str,
    verdict: str,
    evidence: dict[str, Any],
    claimed_bpb: float | None = None,
    reproduced_bpb: float | None = None,
) -> Row:
    """Record one audit (rows are never updated: a re-audit adds a row); returns the row."""
    audit_id = db.insert(
        "INSERT INTO audit (ref, claimed_bpb, reproduced_bpb, verdict, evidence_json, "
        "created_at) VALUES (:ref, :c, :r, :v, :e, :t)",
        {
            "ref": ref,
            "c": claimed_bpb,
            "r": reproduced_bpb,
            "v": verdict,
            "e": json.dumps(evidence, default=str),
            "t": time.time(),
        },
    )
    return get_audit(db, audit_id)
