"""Claims: "I am trying X", so that agents avoid duplicating each other; they expire."""

from __future__ import annotations

import time
from typing import Any

from helm.models.db import Db, Row
from helm.models.version import CLAIM_TTL_S


def live_claims(db: Db) -> list[Row]:
    """Claims that have not expired, newest first."""
    return db.rows(
        "SELECT id, agent, text, created_at, expires_at FROM claim WHERE expires_at > :t "
        "ORDER BY created_at DESC",
        {"t": time.time()},
    )


def add_claim(db: Db, agent: str, text: str, ttl_s: float = CLAIM_TTL_S) -> dict[str, Any]:
    """Record a claim that expires after ``ttl_s`` seconds."""
    text = text.strip()
    if not text:
        raise ValueError("claim text is empty")
    params = {"agent": agent, "text": text, "at": time.time()}
    params["exp"] = params["at"] + ttl_s
    cid = db.insert(
        "INSERT INTO claim (agent, text, created_at, expires_at) VALUES (:agent, :text, :at, :exp)",
        params,
    )
    return {
        "id": cid,
        "agent": agent,
        "text": text,
        "created_at": params["at"],
        "expires_at": params["exp"],
    }
