"""Run rows: one experiment each (a commit plus an environment) and what it scored.

Lower val_bpb is better. The leaderboard ordering (score, then the earlier run) is defined
here once; everything that ranks runs calls ``ranked_rows``.

The experiment loop's questions are here too, as queries only (the keep rule is
``helm.agents.keeprule``; the base, the seeds and the pooled spread are
``helm.models.base``): a branch's *reference* is its latest kept baseline run on its current
base (the first run after a base move or a ``set`` directive); its *best* is the lowest kept
val_bpb since that reference. Scores from before a reference were measured
under other conditions and are not compared against.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from helm.models.db import Db, NotFound, Row, in_list, insert_sql, one, set_clause
from helm.models.states import ENDED_RUN, FINISHED_RUN, IN_FLIGHT_RUN, RunStatus
from helm.models.submissions import WRITTEN

RUN_COLUMNS = frozenset(
    {
        "agent",
        "parent_id",
        "branch",
        "commit",
        "code_hash",
        "description",
        "status",
        "env_json",
        "seed",
        "gpus",
        "val_bpb",
        "val_loss",
        "score_line",
        "bytes_total",
        "bytes_code",
        "bytes_model",
        "train_time_ms",
        "steps",
        "step_avg_ms",
        "host",
        "gpu_type",
        "job_id",
        "tail",
        "created_at",
        "finished_at",
        "base_pin_id",
        "baseline",
        "verdict_note",
        "screen",
        "screen_run_id",
        "screen_ref_id",
    }
)
"""The columns of ``run`` a caller may write by name (all but ``id``; a test compares this
with ``tables.Run``, which cannot be imported here: it would load SQLModel on the fast path)."""

RANK_ORDER = "val_bpb ASC, id ASC"
"""The leaderboard's order, once: lower val_bpb is better; a tie goes to the earlier run."""

_JSON_FIELDS = (
    "id",
    "agent",
    "parent_id",
    "branch",
    "commit",
    "description",
    "status",
    "seed",
    "gpus",
    "val_bpb",
    "val_loss",
    "bytes_total",
    "bytes_code",
    "train_time_ms",
    "steps",
    "host",
    "gpu_type",
    "job_id",
    "created_at",
    "finished_at",
    "tail",
    "screen",
    "screen_run_id",
    "screen_ref_id",
)


def run_json(row: Row) -> dict[str, Any]:
    """A run row as ``helm runs --json`` prints it (environment decoded)."""
    out = {k: row[k] for k in _JSON_FIELDS}
    out["env"] = json.loads(row.get("env_json") or "{}")
    return out


def find_run(db: Db, run_id: int | None) -> Row | None:
    """The run with this id, or None (also for ``None``)."""
    if run_id is None:
        return None
    return one(db, "SELECT * FROM run WHERE id = :id", {"id": int(run_id)})


def get_run(db: Db, run_id: int) -> Row:
    """The run with this id; NotFound if there is none."""
    row = find_run(db, run_id)
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


def list_runs(
    db: Db, *, agent: str | None = None, status: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Runs newest first, as ``run_json`` shapes them."""
    sql = "SELECT * FROM run WHERE 1=1"
    params: dict[str, Any] = {"limit": limit}
    if agent:
        sql += " AND agent = :agent"
        params["agent"] = agent
    if status:
        sql += " AND status = :status"
        params["status"] = status
    return [run_json(r) for r in db.rows(sql + " ORDER BY id DESC LIMIT :limit", params)]


def ranked_rows(
    db: Db,
    *,
    limit: int | None = 50,
    agent: str | None = None,
    exclude_run: int | None = None,
    text: str | None = None,
) -> list[Row]:
    """Finished runs with a score, best first: lowest val_bpb, ties to the earlier run.

    ``text`` keeps runs whose agent, description or status contains it (case-insensitive),
    so that a filtered leaderboard is still ranked by the store, not in Python.
    """
    params: dict[str, Any] = {}
    sql = f"SELECT * FROM run WHERE {in_list('status', sorted(FINISHED_RUN), params, 'st')} "
    sql += "AND val_bpb IS NOT NULL"
    if agent:
        sql += " AND agent = :agent"
        params["agent"] = agent
    if exclude_run is not None:
        sql += " AND id != :x"
        params["x"] = exclude_run
    if text:
        sql += (
            " AND (LOWER(COALESCE(agent, '')) LIKE :t OR LOWER(description) LIKE :t"
            " OR LOWER(status) LIKE :t)"
        )
        params["t"] = f"%{text.lower()}%"
    sql += f" ORDER BY {RANK_ORDER}"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return db.rows(sql, params)


def leaderboard(db: Db, *, limit: int = 50, agent: str | None = None) -> list[dict[str, Any]]:
    """The ranked runs as ``helm leaderboard --json`` prints them, each with its rank."""
    rows = ranked_rows(db, limit=limit, agent=agent)
    return [dict(run_json(r), rank=i + 1) for i, r in enumerate(rows)]


def best_run(db: Db, *, agent: str | None = None, exclude_run: int | None = None) -> Row | None:
    """The top of the leaderboard (optionally one agent's, or all but one run)."""
    rows = ranked_rows(db, limit=1, agent=agent, exclude_run=exclude_run)
    return rows[0] if rows else None


def best_kept_run(db: Db, *, exclude_run: int | None = None) -> Row | None:
    """The best run that counts: kept by the keep rule, or promoted (a written submission).

    A discarded run is never the best, however low it scored: the keep rule judged its gain
    to be within the noise. The header's "best kept", its star and the feed's "vs leader".
    """
    params: dict[str, Any] = {"keep": RunStatus.KEEP.value, "written": WRITTEN}
    sql = (
        "SELECT * FROM run WHERE val_bpb IS NOT NULL AND (status = :keep OR id IN "
        "(SELECT run_id FROM submission WHERE status = :written))"
    )
    if exclude_run is not None:
        sql += " AND id != :x"
        params["x"] = exclude_run
    return one(db, f"{sql} ORDER BY {RANK_ORDER} LIMIT 1", params)


def run_counts(db: Db, agent: str) -> tuple[int, int]:
    """How many runs an agent has made, and how many of them were kept."""
    row = db.rows(
        "SELECT COUNT(*) AS runs, SUM(CASE WHEN status = :keep THEN 1 ELSE 0 END) AS keeps "
        "FROM run WHERE agent = :a",
        {"a": agent, "keep": RunStatus.KEEP.value},
    )[0]
    return int(row["runs"] or 0), int(row["keeps"] or 0)


# Writes --------------------------------------------------------------------------------------
_RUN_DEFAULTS: dict[str, Any] = {
    "description": "",
    "status": RunStatus.QUEUED.value,
    "env_json": "{}",
    "gpus": 1,
    "baseline": False,
    "screen": False,
}


def canonical_env(env: Mapping[str, str]) -> str:
    """The one text a run's environment is stored and de-duplicated under (keys sorted)."""
    return json.dumps(dict(sorted(env.items())), sort_keys=True)


def insert_run(db: Db, **fields: Any) -> int:
    """Record a run (queued, now, unless ``fields`` say otherwise); returns its id.

    ``fields`` are columns of ``run`` (checked against ``RUN_COLUMNS``); ``baseline`` is a
    Python bool, as the BOOLEAN column wants on PostgreSQL.
    """
    values = {**_RUN_DEFAULTS, "created_at": time.time(), **fields}
    return db.insert(insert_sql("run", values, RUN_COLUMNS), values)


def update_run(db: Db, run_id: int, **fields: Any) -> None:
    """Set these columns of run ``run_id`` (names checked against ``RUN_COLUMNS``)."""
    if not fields:
        return
    sets = set_clause("run", fields, RUN_COLUMNS)
    db.execute(f"UPDATE run SET {sets} WHERE id = :id_", {**fields, "id_": int(run_id)})


# The experiment loop's reads -------------------------------------------------------------------
def reference_run(db: Db, agent: str, base_pin_id: int | None) -> Row | None:
    """The agent's latest kept baseline run on this base (None: the next run is a reference)."""
    return one(
        db,
        "SELECT * FROM run WHERE agent = :a AND base_pin_id = :p AND baseline = :yes "
        "AND status = :keep ORDER BY id DESC LIMIT 1",
        {"a": agent, "p": base_pin_id, "yes": True, "keep": RunStatus.KEEP.value},
    )


def branch_best(db: Db, agent: str, base_pin_id: int | None) -> Row | None:
    """The agent's best kept run since its reference on this base (None: no reference yet).

    Ties go to the later run: it is the one the branch is on.
    """
    ref = reference_run(db, agent, base_pin_id)
    if ref is None:
        return None
    best = one(
        db,
        "SELECT * FROM run WHERE agent = :a AND base_pin_id = :p AND status = :keep "
        "AND val_bpb IS NOT NULL AND id >= :r ORDER BY val_bpb ASC, id DESC LIMIT 1",
        {"a": agent, "p": base_pin_id, "r": ref["id"], "keep": RunStatus.KEEP.value},
    )
    return best or ref


def seed_scores(db: Db) -> list[Row]:
    """``code_hash, env_json, seed, val_bpb`` of the finished, scored runs of known code
    whose configuration (code and env) scored under two seeds or more, oldest first: the
    repeats that measure the seed noise (``helm.models.base.seed_spread``). A configuration
    with one seed adds nothing to the spread, so the store leaves it out: a campaign of
    10,000 one-off runs reads none of them."""
    return repeated_scores(db, FINISHED_RUN)


def repeated_scores(db: Db, statuses: Iterable[str]) -> list[Row]:
    """``code_hash, env_json, seed, val_bpb`` of the scored runs in these statuses whose
    configuration scored under two seeds or more, oldest first (full runs: ``seed_scores``;
    screens, which are compared only with screens: ``helm.models.screens``)."""
    params: dict[str, Any] = {}
    wanted = sorted(statuses)

    def scored(t: str) -> str:
        done = in_list(f"{t}status", wanted, params, "st")
        return f"{done} AND {t}val_bpb IS NOT NULL AND {t}code_hash IS NOT NULL"

    return db.rows(
        "SELECT r.code_hash, r.env_json, r.seed, r.val_bpb FROM run r JOIN ("
        f"SELECT code_hash, env_json FROM run WHERE {scored('')} GROUP BY code_hash, env_json "
        "HAVING COUNT(DISTINCT COALESCE(seed, -1)) > 1) g "
        f"ON g.code_hash = r.code_hash AND g.env_json = r.env_json WHERE {scored('r.')} "
        "ORDER BY r.id",
        params,
    )


def scored_stamp(db: Db) -> tuple[int, int]:
    """How many finished runs have a score, and the newest one's id: it changes whenever a
    score is written, so a reader may keep what it derived from the scores until it does
    (one pass over the leaderboard's covering index)."""
    params: dict[str, Any] = {}
    row = db.rows(
        "SELECT COUNT(*) AS n, MAX(id) AS last FROM run WHERE "
        f"{in_list('status', sorted(FINISHED_RUN), params, 'st')} AND val_bpb IS NOT NULL",
        params,
    )[0]
    return int(row["n"] or 0), int(row["last"] or 0)


def config_scores(db: Db, keys: Sequence[tuple[str, str]]) -> list[Row]:
    """``code_hash, env_json, seed, val_bpb`` of the finished, scored runs of these
    configurations (``(code_hash, env_json)`` pairs), oldest first: their seeds
    (``helm.models.base.config_seeds``).

    The pairs are joined as a ``VALUES`` table (columns ``column1, column2`` on SQLite and
    PostgreSQL alike), so the store looks each one up by the code-hash index: a whole
    leaderboard's pairs cost about what one does (an ``OR`` of 200 pairs scanned every run).
    """
    if not keys:
        return []
    params: dict[str, Any] = {}
    values = []
    for i, (code_hash, env) in enumerate(sorted(set(keys))):
        params[f"h{i}"], params[f"e{i}"] = code_hash, env
        values.append(f"(:h{i}, :e{i})")
    finished = in_list("r.status", sorted(FINISHED_RUN), params, "st")
    return db.rows(
        "SELECT r.code_hash, r.env_json, r.seed, r.val_bpb FROM run r "
        f"JOIN (VALUES {', '.join(values)}) k "
        "ON r.code_hash = k.column1 AND r.env_json = k.column2 "
        f"WHERE {finished} AND r.val_bpb IS NOT NULL ORDER BY r.id",
        params,
    )


def find_duplicate(
    db: Db, code_hash: str, env: str, seed: int | None, *, screen: bool = False
) -> Row | None:
    """The latest run of exactly this code, environment (``canonical_env``) and seed that was
    not cancelled, or None; among screens with ``screen``, else among full runs (a screen's
    environment differs from its full run's, but a person may run the same one in full)."""
    return one(
        db,
        "SELECT * FROM run WHERE code_hash = :h AND env_json = :e AND screen = :sc "
        "AND COALESCE(seed, -1) = :s AND status != :cancelled ORDER BY id DESC LIMIT 1",
        {
            "h": code_hash,
            "e": env,
            "sc": bool(screen),
            "s": -1 if seed is None else seed,
            "cancelled": RunStatus.CANCELLED.value,
        },
    )


def in_flight_runs(db: Db, agent: str) -> list[Row]:
    """The agent's runs whose job has not ended (queued or running), oldest first."""
    params: dict[str, Any] = {"a": agent}
    return db.rows(
        f"SELECT * FROM run WHERE agent = :a AND "
        f"{in_list('status', sorted(IN_FLIGHT_RUN), params, 'st')} ORDER BY id",
        params,
    )


def find_run_at_commit(db: Db, agent: str, commit: str) -> Row | None:
    """The agent's latest run of this commit (the parent of the next experiment), or None."""
    return one(
        db,
        'SELECT * FROM run WHERE agent = :a AND "commit" = :c ORDER BY id DESC LIMIT 1',
        {"a": agent, "c": commit},
    )


def last_activity(db: Db, agent: str) -> tuple[float | None, bool]:
    """When the agent last started a run, and whether one of its runs is in flight (a coding
    agent waiting on a job is not stalled)."""
    params: dict[str, Any] = {"a": agent}
    busy = in_list("status", sorted(IN_FLIGHT_RUN), params, "st")
    row = db.rows(
        f"SELECT MAX(created_at) AS t, SUM(CASE WHEN {busy} THEN 1 ELSE 0 END) AS busy "
        "FROM run WHERE agent = :a",
        params,
    )[0]
    return row["t"], bool(row["busy"])


# Views for the swarm ----------------------------------------------------------------------------
def agent_run_stats(db: Db) -> dict[str, Row]:
    """Per agent: ``runs``, ``keeps``, ``crashes`` and the ``best`` finished val_bpb."""
    params: dict[str, Any] = {"keep": RunStatus.KEEP.value, "crash": RunStatus.CRASH.value}
    finished = in_list("status", sorted(FINISHED_RUN), params, "st")
    rows = db.rows(
        "SELECT agent, COUNT(*) AS runs, "
        "SUM(CASE WHEN status = :keep THEN 1 ELSE 0 END) AS keeps, "
        "SUM(CASE WHEN status = :crash THEN 1 ELSE 0 END) AS crashes, "
        f"MIN(CASE WHEN {finished} THEN val_bpb END) AS best "
        "FROM run WHERE agent IS NOT NULL GROUP BY agent",
        params,
    )
    return {r["agent"]: r for r in rows}


def runs_with_jobs(db: Db, run_ids: Sequence[int]) -> dict[int, Row]:
    """These runs by id, each with its job's progress (``step``, ``total_steps``,
    ``job_state``, ``host``; None before the job exists)."""
    params: dict[str, Any] = {}
    rows = db.rows(
        "SELECT run.id, run.description, run.status, job.step, job.total_steps, "
        "job.state AS job_state, job.host FROM run LEFT JOIN job ON job.id = run.job_id "
        f"WHERE {in_list('run.id', [int(i) for i in run_ids], params, 'r')}",
        params,
    )
    return {int(r["id"]): r for r in rows}


def runs_since(db: Db, agents: Sequence[str], since: float) -> list[Row]:
    """Runs these agents made since ``since``, oldest first (what a demo achieved)."""
    params: dict[str, Any] = {"t": since}
    return db.rows(
        "SELECT id, agent, status, val_bpb, description FROM run WHERE "
        f"{in_list('agent', agents, params, 'ag')} AND created_at >= :t ORDER BY id",
        params,
    )


def runs_with_code(db: Db, code_hash: str, *, scored: bool = False) -> list[Row]:
    """Every run of this code hash, oldest first (a promotion's reuse and a diff's seeds);
    ``scored``: only finished runs with a score."""
    params: dict[str, Any] = {"h": code_hash}
    sql = "SELECT * FROM run WHERE code_hash = :h"
    if scored:
        sql += f" AND {in_list('status', sorted(FINISHED_RUN), params, 'st')}"
        sql += " AND val_bpb IS NOT NULL"
    return db.rows(sql + " ORDER BY id", params)


# Views for the TUI -----------------------------------------------------------------------------
def count_runs(db: Db) -> int:
    """How many runs the store holds, whatever their status."""
    return int(db.rows("SELECT COUNT(*) AS n FROM run")[0]["n"])


def status_counts(db: Db) -> dict[tuple[str, bool], int]:
    """How many runs hold each ``(status, is a screen)`` pair (a campaign's outcome, e.g.
    for ``bench/early_abort.py``)."""
    rows = db.rows("SELECT status, screen, COUNT(*) AS n FROM run GROUP BY status, screen")
    return {(str(r["status"]), bool(r["screen"])): int(r["n"]) for r in rows}


def leaderboard_ranks(db: Db, run_ids: Sequence[int]) -> dict[int, int]:
    """The leaderboard rank of each of these runs among *all* ranked runs (``ranked_rows``'
    order), so that a filtered board still shows where each run stands; unranked ids are
    left out."""
    ids = [int(i) for i in run_ids]
    if not ids:
        return {}
    params: dict[str, Any] = {}
    finished = in_list("status", sorted(FINISHED_RUN), params, "st")
    wanted = in_list("id", ids, params, "r")
    rows = db.rows(
        f"SELECT id, rk FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY {RANK_ORDER}) AS rk "
        f"FROM run WHERE {finished} AND val_bpb IS NOT NULL) ranked WHERE {wanted}",
        params,
    )
    return {int(r["id"]): int(r["rk"]) for r in rows}


def last_ended_runs(db: Db) -> dict[str, Row]:
    """Each agent's newest run that has ended (finished, crashed or cancelled), by agent."""
    params: dict[str, Any] = {}
    ended = in_list("status", sorted(ENDED_RUN), params, "st")
    rows = db.rows(
        "SELECT r.* FROM run r JOIN (SELECT agent, MAX(id) AS id FROM run "
        f"WHERE {ended} AND agent IS NOT NULL GROUP BY agent) m ON r.id = m.id",
        params,
    )
    return {r["agent"]: r for r in rows}


def scored_runs_in_order(db: Db) -> list[Row]:
    """``id, val_bpb, status, description`` of every scored run, oldest first (the x axis
    of the progress plot)."""
    return db.rows(
        "SELECT id, val_bpb, status, description FROM run WHERE val_bpb IS NOT NULL ORDER BY id"
    )
