"""Submission rows: the records folders ``helm promote`` wrote (or tried to write).

A promotion records one row whether the folder passed validation (``written``) or not
(``failed``, the validator's report kept), so the operator can see what was attempted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from helm.models.db import Db, Row

WRITTEN = "written"
FAILED = "failed"


def insert_submission(
    db: Db,
    *,
    run_id: int,
    name: str,
    track: str,
    path: str,
    seeds: Sequence[int],
    status: str,
    report: dict[str, Any],
    val_bpb: float | None = None,
    val_bpb_std: float | None = None,
) -> int:
    """Record one promotion's folder and the validator's report; returns the new id."""
    return db.insert(
        "INSERT INTO submission (run_id, name, track, path, seeds_json, val_bpb, "
        "val_bpb_std, status, report_json, created_at) VALUES (:run, :name, :track, :path, "
        ":seeds, :bpb, :std, :status, :report, :t)",
        {
            "run": run_id,
            "name": name,
            "track": track,
            "path": path,
            "seeds": json.dumps(list(seeds)),
            "bpb": val_bpb,
            "std": val_bpb_std,
            "status": status,
            "report": json.dumps(report, default=str),
            "t": time.time(),
        },
    )


def list_submissions(db: Db, *, run_id: int | None = None, limit: int = 100) -> list[Row]:
    """Submissions oldest first, optionally those of one promoted run."""
    sql = "SELECT * FROM submission"
    params: dict[str, Any] = {"n": limit}
    if run_id is not None:
        sql += " WHERE run_id = :run"
        params["run"] = run_id
    return db.rows(sql + " ORDER BY id LIMIT :n", params)
