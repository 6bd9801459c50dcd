"""Audits in the store: the row, the feed post, the listings, known scripts and the pin gate.

An audit is an ``Audit`` row (ref, claimed and reproduced val_bpb, verdict) whose
``evidence_json`` holds everything else: every finding, the reproduction, the PR's head
commit and the sha256 of its script. Scripts are kept by content under
``<home>/audits/scripts/<sha256>.py``, so every later audit compares against every earlier
one even when the folder it came from is gone. Listings show the latest audit per ref.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from helm.audit import similarity as sim
from helm.audit.fetch import audits_dir
from helm.audit.verdict import PASSING
from helm.models.audits import (
    find_audit,
    insert_audit,
    latest_audit,
    latest_audit_of_number,
    latest_audits,
)
from helm.models.feed import post_feed
from helm.models.pins import latest_pin
from helm.workspace import Workspace

BUNDLED_LABEL = "helm's bundled train_gpt.py (the baseline)"


def bundled_script() -> Path:
    import golf_task

    return Path(golf_task.__file__).resolve().parent / "train_gpt.py"


def script_store(ws: Workspace) -> Path:
    path = audits_dir(ws) / "scripts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_script(ws: Workspace, source: bytes) -> str:
    """Store a script by content; returns its sha256."""
    key = sim.digest(source)
    dest = script_store(ws) / f"{key}.py"
    if not dest.exists():
        dest.write_bytes(source)
    return key


def _base_script(ws: Workspace) -> bytes | None:
    if not (ws.task_dir / ".git").exists():
        return None
    proc = subprocess.run(
        ["git", "-C", str(ws.task_dir), "show", "base:train_gpt.py"],
        capture_output=True,
        timeout=30,
    )
    return proc.stdout if proc.returncode == 0 else None


def known_scripts(ws: Workspace, exclude_ref: str | None = None) -> list[sim.KnownScript]:
    """Scripts an audited one is compared with: the bundled baseline, the pinned base and
    every script audited before (except ``exclude_ref``'s own earlier audits)."""
    known = [sim.KnownScript(BUNDLED_LABEL, "bundled", bundled_script().read_bytes())]
    with ws.db(write=False) as db:
        pin = latest_pin(db)
        rows = latest_audits(db)
    base = _base_script(ws)
    if base is not None and pin is not None and pin["ref"] != exclude_ref:
        claim = next((r["claimed_bpb"] for r in rows if r["ref"] == pin["ref"]), None)
        label = f"the pinned base ({pin['kind']} {pin['ref']})"
        known.append(sim.KnownScript(label, f"base:{pin['ref']}", base, claim))
    for row in rows:
        if row["ref"] == exclude_ref:
            continue
        key = json.loads(row["evidence_json"] or "{}").get("script_sha256")
        path = script_store(ws) / f"{key}.py" if key else None
        if path is None or not path.is_file():
            continue
        claim = row["claimed_bpb"]
        label = f"{row['ref']} (audited: {row['verdict']}" + (
            f", claimed {claim})" if claim is not None else ")"
        )
        known.append(sim.KnownScript(label, row["ref"], path.read_bytes(), claim))
    return known


def latest(ws: Workspace, ref: str) -> dict[str, Any] | None:
    """The newest audit of ``ref``, or None."""
    with ws.db(write=False) as db:
        return latest_audit(db, ref)


def find(ws: Workspace, key: str) -> dict[str, Any] | None:
    """An audit by id, or the latest of a ref: ``owner/name#N``, ``#N``/``N``, a folder."""
    with ws.db(write=False) as db:
        if key.isdigit():
            row = find_audit(db, int(key))
            if row is not None:
                return row
        number = key.lstrip("#")
        if number.isdigit():
            return latest_audit_of_number(db, int(number))
        return latest_audit(db, key, str(Path(key).expanduser().resolve()))


def record(ws: Workspace, evidence: dict[str, Any]) -> dict[str, Any]:
    """Insert the Audit row and post the verdict to the feed as a verification result."""
    repro = evidence.get("reproduction") or {}
    text = f"audit {evidence['ref']}: {evidence['verdict'].upper()}: {evidence['reason']}"
    if len(text) > 400:
        text = text[:397] + "..."
    with ws.db(write=True) as db:
        row = insert_audit(
            db,
            ref=evidence["ref"],
            verdict=evidence["verdict"],
            evidence=evidence,
            claimed_bpb=evidence.get("claimed_bpb"),
            reproduced_bpb=repro.get("mean_bpb"),
        )
        post_feed(db, text, kind="verification", tags=("audit", evidence["verdict"]))
        return row


def listing(ws: Workspace) -> list[dict[str, Any]]:
    """``helm audit ls``: every audited ref's latest verdict with claim, our figure and why."""
    with ws.db(write=False) as db:
        rows = latest_audits(db)
    out = []
    for row in rows:
        ev = json.loads(row["evidence_json"] or "{}")
        repro = ev.get("reproduction") or {}
        out.append(
            {
                "id": row["id"],
                "ref": row["ref"],
                "verdict": row["verdict"],
                "claimed_bpb": row["claimed_bpb"],
                "reproduced_bpb": row["reproduced_bpb"],
                "gap_bpb": repro.get("gap_bpb"),
                "gap_spreads": repro.get("gap_spreads"),
                "similarity": (ev.get("similarity") or {}).get("similarity"),
                "similar_to": (ev.get("similarity") or {}).get("label"),
                "title": (ev.get("pr") or {}).get("title"),
                "author": (ev.get("pr") or {}).get("author"),
                "reason": ev.get("reason"),
                "created_at": row["created_at"],
            }
        )
    return out


def pin_warning(ws: Workspace, ref: str, head_sha: str | None = None) -> str | None:
    """Why pinning ``ref`` is a risk, or None when its latest audit passed at this commit."""
    row = latest(ws, ref)
    if row is None:
        return f"{ref} has never been audited"
    ev = json.loads(row["evidence_json"] or "{}")
    if row["verdict"] not in PASSING:
        return f"{ref}'s audit says {row['verdict']}: {ev.get('reason', '')}".rstrip(": ")
    audited = (ev.get("pr") or {}).get("head_sha")
    if head_sha and audited and audited != head_sha:
        return f"{ref} changed since its audit (audited {audited[:10]}, now {head_sha[:10]})"
    return None
