"""Screens' reads: a screen is a short, small run of a candidate, or of the code it changes,
that decides whether the candidate earns its full run (``helm.agents.screen``). Their scores
are at a fraction of the steps, so they have queries of their own and never mix with the
ranked runs of ``helm.models.runs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from helm.models.db import Db, Row, in_list
from helm.models.runs import repeated_scores
from helm.models.states import SCREEN_RUN


def screen_scores(db: Db) -> list[Row]:
    """``code_hash, env_json, seed, val_bpb`` of the scored screens whose configuration was
    screened under two seeds or more, oldest first: the repeats that measure a screen's own
    seed noise (fewer steps, noisier than a full run's), for ``helm.agents.screen``."""
    return repeated_scores(db, SCREEN_RUN)


def screen_run_ids(db: Db, run_ids: Sequence[int]) -> set[int]:
    """The runs among these that are screens (``run.screen``: the short, small jobs that
    decide whether a candidate earns its full run), for the TUI to mark their live jobs."""
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return set()
    params: dict[str, Any] = {"yes": True}
    cond = in_list("id", ids, params, "r")
    return {
        int(r["id"]) for r in db.rows(f"SELECT id FROM run WHERE {cond} AND screen = :yes", params)
    }


def screen_links(db: Db, run_ids: Sequence[int]) -> dict[int, dict[str, int | None]]:
    """For each of these runs, its screening relatives: ``screen`` (the screen a full run
    came through), ``full`` (the full run a screen earned), ``ref`` (the base's screen a
    candidate's screen was judged against). Runs without any are left out."""
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return {}
    params: dict[str, Any] = {}
    wanted = in_list("id", ids, params, "i")
    earned = in_list("screen_run_id", ids, params, "j")
    out: dict[int, dict[str, int | None]] = {}
    for r in db.rows(
        f"SELECT id, screen_run_id, screen_ref_id FROM run WHERE ({wanted}) "
        "AND (screen_run_id IS NOT NULL OR screen_ref_id IS NOT NULL)",
        params,
    ):
        out.setdefault(r["id"], {})["screen"] = r["screen_run_id"]
        if r["screen_ref_id"] is not None:
            out[r["id"]]["ref"] = r["screen_ref_id"]
    for r in db.rows(f"SELECT id, screen_run_id FROM run WHERE {earned}", params):
        out.setdefault(r["screen_run_id"], {})["full"] = r["id"]
    return {
        k: {"screen": v.get("screen"), "full": v.get("full"), "ref": v.get("ref")}
        for k, v in out.items()
    }
