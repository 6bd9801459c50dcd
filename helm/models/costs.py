"""What the GPUs cost: GPU-seconds and money per try, job, run, agent, directive, campaign.

A try holds its GPUs from placement (``job.staged_at``) to its end on a box; on a Slurm host
(``job.backend_id`` set) from Slurm's start (``job.started_at``), since a job pending in
Slurm's queue holds none. Every end of a try adds its seconds to ``job.gpu_seconds`` and its
price to ``job.cost`` (``helm.models.job_life``); ``job.cost`` turns NULL for good once any
try ran on a host without a price, so a total never looks cheaper than it was. The sums here
add the running tries of live jobs up to now, so a budget sees a long run while it runs.

Plain SQL over ``Db`` (no ORM): ``helm context`` reads these on the agents' fast path.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from helm.models.db import Db, Row, in_list
from helm.models.states import ACTIVE_JOB


@dataclass(frozen=True)
class Usage:
    """GPU-seconds held and what they cost.

    ``money`` sums the tries whose host had a price; ``money_known`` is False when any try
    ran on a host without one (then ``money`` is a lower bound and ``cost`` is None).
    """

    gpu_seconds: float = 0.0
    money: float = 0.0
    money_known: bool = True

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0

    @property
    def cost(self) -> float | None:
        """The money, or None when part of it is unknown (shown as "-")."""
        return self.money if self.money_known else None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.gpu_seconds + other.gpu_seconds,
            self.money + other.money,
            self.money_known and other.money_known,
        )

    def to_json(self) -> dict[str, Any]:
        """The figures ``--json`` carries (money null when unknown)."""
        return {
            "gpu_seconds": round(self.gpu_seconds, 3),
            "gpu_hours": round(self.gpu_hours, 6),
            "money": None if self.cost is None else round(self.cost, 6),
        }


def try_gpu_seconds(
    gpus: int,
    staged_at: float | None,
    started_at: float | None,
    backend_id: str | None,
    end: float,
) -> float:
    """GPU-seconds one try held up to ``end``: wall seconds times its GPUs.

    The one definition of a try's cost in time (the dispatcher at each end of a try, and the
    sums below for tries still running). A Slurm try counts from Slurm's start, not from its
    submission: while it pends it holds nothing; one that never started held nothing.
    """
    begin = started_at if backend_id is not None else staged_at
    if begin is None:  # a row without its placement time: from its start, at least
        begin = started_at
    if begin is None:
        return 0.0
    return max(0.0, end - begin) * max(1, int(gpus or 1))


def try_cost(gpu_seconds: float, price_per_gpu_hour: float | None) -> float | None:
    """The money of ``gpu_seconds`` on a host at that price; None when it has no price."""
    if price_per_gpu_hour is None:
        return None
    return gpu_seconds / 3600.0 * float(price_per_gpu_hour)


def add_try(
    total_seconds: float, total_cost: float | None, seconds: float, price: float | None
) -> tuple[float, float | None]:
    """A job's ``(gpu_seconds, cost)`` after one more try: cost stays NULL once unknown.

    A try that held nothing (a Slurm job cancelled while pending) leaves the cost as it was,
    priced or not.
    """
    if seconds <= 0:
        return total_seconds, total_cost
    cost = try_cost(seconds, price)
    if total_cost is None or cost is None:
        return total_seconds + seconds, None
    return total_seconds + seconds, total_cost + cost


_LIVE = (
    "SELECT {key} AS k, j.gpus, j.staged_at, j.started_at, j.backend_id, "
    "h.price_per_gpu_hour AS price FROM job j LEFT JOIN host h ON h.name = j.host "
    "WHERE {states}{where}"
)
_ENDED = (
    "SELECT {key} AS k, COALESCE(SUM(j.gpu_seconds), 0) AS s, COALESCE(SUM(j.cost), 0) AS m, "
    "SUM(CASE WHEN j.cost IS NULL THEN 1 ELSE 0 END) AS unknown FROM job j{where}{group}"
)


def _usage_by(
    db: Db,
    key: str | None,
    where: str = "",
    params: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[Any, Usage]:
    """Usage of jobs (``job j``) grouped by column ``key`` of ``j`` (a fixed name; None: all
    in one, under the key 0), the tries already ended (stored sums) plus the running ones up
    to ``now`` (the wall clock by default; the TUI passes its own clock). ``where`` is a
    condition on ``j`` with its values bound in ``params``."""
    params = dict(params or {})
    col = f"j.{key}" if key else "0"
    group = f" GROUP BY j.{key}" if key else ""
    out: dict[Any, Usage] = {}
    sql = _ENDED.format(key=col, where=f" WHERE {where}" if where else "", group=group)
    for r in db.rows(sql, params):
        out[r["k"]] = Usage(float(r["s"] or 0), float(r["m"] or 0), not int(r["unknown"] or 0))
    states = in_list("j.state", sorted(ACTIVE_JOB), params, "live")
    live = _LIVE.format(key=col, states=states, where=f" AND {where}" if where else "")
    now = time.time() if now is None else now
    for r in db.rows(live, params):
        seconds = try_gpu_seconds(r["gpus"], r["staged_at"], r["started_at"], r["backend_id"], now)
        if seconds <= 0:
            continue
        cost = try_cost(seconds, r["price"])
        out[r["k"]] = out.get(r["k"], Usage()) + Usage(seconds, cost or 0.0, cost is not None)
    return out


def campaign_usage(db: Db, now: float | None = None) -> Usage:
    """Everything the campaign's jobs held, running tries included (up to ``now``)."""
    return _usage_by(db, None, now=now).get(0, Usage())


def agent_usage(db: Db, now: float | None = None) -> dict[str, Usage]:
    """{agent: Usage} for every agent that queued a job (jobs without an agent left out)."""
    found = _usage_by(db, "agent", "j.agent IS NOT NULL", now=now)
    return {str(k): u for k, u in found.items()}


def run_usage(db: Db, run_ids: Iterable[int], now: float | None = None) -> dict[int, Usage]:
    """{run id: Usage} of these runs' jobs (a run queued again has several); a run without
    a job is absent (its usage is ``Usage()``)."""
    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return {}
    params: dict[str, Any] = {}
    cond = in_list("j.run_id", ids, params, "run")
    return {int(k): u for k, u in _usage_by(db, "run_id", cond, params, now).items()}


def directive_runs(db: Db) -> dict[int, list[int]]:
    """{directive id: run ids} an agent made after acking the directive, up to its next ack.

    What a directive bought is the agent's work under it: a run belongs to the latest
    directive that agent had acked when the run was created.
    """
    acks = db.rows(
        "SELECT directive_id, agent, acked_at FROM directive_delivery "
        "WHERE acked_at IS NOT NULL ORDER BY agent, acked_at, directive_id"
    )
    by_agent: dict[str, list[Row]] = {}
    for a in acks:
        by_agent.setdefault(a["agent"], []).append(a)
    out: dict[int, list[int]] = {int(a["directive_id"]): [] for a in acks}
    if not by_agent:
        return out
    params: dict[str, Any] = {}
    cond = in_list("agent", sorted(by_agent), params, "a")
    runs = db.rows(f"SELECT id, agent, created_at FROM run WHERE {cond} ORDER BY id", params)
    for r in runs:
        mine = by_agent[r["agent"]]
        i = bisect.bisect_right([float(a["acked_at"]) for a in mine], float(r["created_at"]))
        if i:
            out[int(mine[i - 1]["directive_id"])].append(int(r["id"]))
    return out


def directive_usage(db: Db, now: float | None = None) -> dict[int, Usage]:
    """{directive id: Usage} of the runs made under it (see ``directive_runs``), for every
    acked directive (``Usage()`` when none ran yet)."""
    runs = directive_runs(db)
    per_run = run_usage(db, [r for ids in runs.values() for r in ids], now)
    return {d: sum((per_run.get(r, Usage()) for r in ids), Usage()) for d, ids in runs.items()}


def with_usage(db: Db, rows: list[Row]) -> list[Row]:
    """Run rows (``runs.run_json`` shapes) with their ``gpu_seconds``, ``gpu_hours`` and
    ``money`` (None when unknown) added, in one query, for ``helm runs`` / ``leaderboard``."""
    per_run = run_usage(db, [r["id"] for r in rows])
    return [{**r, **per_run.get(int(r["id"]), Usage()).to_json()} for r in rows]


# What the money bought --------------------------------------------------------------------------
def _counts(db: Db, run_ids: Iterable[int]) -> list[Row]:
    """``id, val_bpb, base_pin_id`` of these runs that count (kept by the keep rule, or
    promoted: ``runs.best_kept_run``'s rule) and have a score."""
    from helm.models.states import RunStatus
    from helm.models.submissions import WRITTEN

    ids = sorted({int(i) for i in run_ids})
    if not ids:
        return []
    params: dict[str, Any] = {"keep": RunStatus.KEEP.value, "written": WRITTEN}
    cond = in_list("id", ids, params, "r")
    return db.rows(
        f"SELECT id, val_bpb, base_pin_id, baseline FROM run WHERE {cond} AND val_bpb IS NOT NULL "
        "AND (status = :keep OR id IN (SELECT run_id FROM submission WHERE status = :written)) "
        "ORDER BY id",
        params,
    )


def _best_delta(db: Db, rows: list[Row]) -> tuple[int | None, float | None]:
    """The run among ``rows`` (``_counts``) furthest below its own base (``base.base_of``
    of the pin it ran on, else the current one), and that Δ; (None, None) when no row has a
    Δ (a reference run is part of its base: it measured the base, it bought nothing)."""
    from helm.models.base import base_pin_id, bases_of
    from helm.models.pins import latest_pin

    current = latest_pin(db)
    cur_id = int(current["id"]) if current else None
    bases = bases_of(db, [base_pin_id(r, cur_id) for r in rows])
    best: tuple[int | None, float | None] = (None, None)
    for r in rows:
        stats = bases.get(base_pin_id(r, cur_id) or -1)
        d = stats.delta(int(r["id"]), float(r["val_bpb"])) if stats else None
        if d is not None and (best[1] is None or d < best[1]):
            best = (int(r["id"]), d)
    return best


def directive_report(db: Db, now: float | None = None) -> list[dict[str, Any]]:
    """Per directive, newest first: what its runs cost and the best Δbpb they bought.

    ``helm directives``: "what did 'try int5 for MLP' cost and what did it buy". The runs
    are ``directive_runs``' (made after an ack, up to that agent's next); the gain is the
    best kept (or promoted) run among them against its base, None when none beat a base.
    """
    rows = db.rows("SELECT id, text, created_at FROM directive ORDER BY id DESC")
    runs = directive_runs(db)
    per_run = run_usage(db, [r for ids in runs.values() for r in ids], now)
    out: list[dict[str, Any]] = []
    for d in rows:
        ids = runs.get(int(d["id"]), [])
        usage = sum((per_run.get(r, Usage()) for r in ids), Usage())
        kept = _counts(db, ids)
        best_run, best_delta = _best_delta(db, kept)
        out.append(
            {
                "id": int(d["id"]),
                "text": d["text"],
                "created_at": d["created_at"],
                "runs": ids,
                "kept": len(kept),
                **usage.to_json(),
                "best_run": best_run,
                "best_delta": best_delta,
            }
        )
    return out


def improvement_per_money(db: Db, now: float | None = None) -> dict[str, Any]:
    """The campaign's gain for its money: ``kept`` improvements (kept runs that are not
    reference runs), ``delta`` (the best kept run's val_bpb minus the first base's mean:
    the whole campaign's progress), ``money`` (the campaign's, None when part is unknown)
    and ``per_money`` (Δbpb per $, None without a Δ or a known, non-zero spend).

    Read by ``helm context`` so an agent (and the operator) sees whether spending more is
    still buying anything."""
    from helm.models.base import base_of
    from helm.models.runs import best_kept_run
    from helm.models.states import RunStatus

    kept = db.rows(
        "SELECT COUNT(*) AS n FROM run WHERE status = :keep AND baseline = :no "
        "AND val_bpb IS NOT NULL",
        {"keep": RunStatus.KEEP.value, "no": False},
    )[0]["n"]
    first = db.rows("SELECT id FROM pin ORDER BY id LIMIT 1")
    base = base_of(db, int(first[0]["id"])) if first else None
    best = best_kept_run(db)
    delta = None
    if base is not None and base.mean is not None and best is not None:
        delta = float(best["val_bpb"]) - base.mean
    money = campaign_usage(db, now).cost
    per = delta / money if delta is not None and money else None
    return {
        "kept": int(kept or 0),
        "delta": delta,
        "best_run": int(best["id"]) if best is not None else None,
        "money": money,
        "per_money": per,
    }


def improvement_series(db: Db, now: float | None = None) -> list[dict[str, Any]]:
    """Money per kept improvement over time: one entry per run that lowered the best.

    Runs are walked in the order they were made (run id, the progress plot's x axis). The
    *best* starts at the first pin's base mean (none without a pin or a score). A run that
    counts (kept by the keep rule, or promoted: ``_counts``' rule) and scores below the best
    is an *improvement*, unless it measured a base: the first base's own runs never move the
    best (its mean is the start, as it is the keep rule's bar, not one seed's lucky draw, and
    ``helm context``'s improvement is measured from it too); another reference run (a newer
    base's, a ``set`` directive's) moves the best without being an improvement, since it
    bought nothing. With no best yet, the first run that counts sets it.

    Each entry: ``run_id``; ``at`` (its finish time, else its creation); ``val_bpb``;
    ``best_before`` and ``best_before_run`` (None: the first base's mean); ``delta``
    (``val_bpb - best_before``, negative = better); ``gpu_seconds``/``gpu_hours``/``money``:
    what every run made after the previous improvement (the first: since the campaign
    began), up to and including this one, cost (jobs without a run are outside); ``per_money``: ``delta / money``,
    Δbpb per $ (negative = gained). ``money`` and ``per_money`` are None when a job among
    those ran on a host without a price (never a guessed 0), ``per_money`` also for $0.
    """
    from helm.models.base import base_of
    from helm.models.states import RunStatus
    from helm.models.submissions import WRITTEN

    runs = db.rows(
        "SELECT id, val_bpb, baseline, status, finished_at, created_at, "
        "CASE WHEN id IN (SELECT run_id FROM submission WHERE status = :written) "
        "THEN 1 ELSE 0 END AS promoted FROM run ORDER BY id",
        {"written": WRITTEN},
    )
    first = db.rows("SELECT id FROM pin ORDER BY id LIMIT 1")
    base = base_of(db, int(first[0]["id"])) if first else None
    best = base.mean if base is not None else None
    best_run: int | None = None
    per_run = run_usage(db, [r["id"] for r in runs], now)
    spent = Usage()
    out: list[dict[str, Any]] = []
    for r in runs:
        rid = int(r["id"])
        spent = spent + per_run.get(rid, Usage())
        counts = r["status"] == RunStatus.KEEP.value or bool(r["promoted"])
        if not counts or r["val_bpb"] is None:
            continue
        bpb = float(r["val_bpb"])
        if base is not None and base.mean is not None and base.contains(rid):
            continue  # the first base's own runs: their mean is the start, not one seed's draw
        measured_base = bool(r["baseline"])
        if best is None or (measured_base and bpb < best):
            best, best_run = bpb, rid
            continue
        if measured_base or bpb >= best:
            continue
        delta = bpb - best
        money = spent.cost
        out.append(
            {
                "run_id": rid,
                "at": r["finished_at"] if r["finished_at"] is not None else r["created_at"],
                "val_bpb": bpb,
                "best_before": best,
                "best_before_run": best_run,
                "delta": delta,
                **spent.to_json(),
                "per_money": delta / money if money else None,
            }
        )
        best, best_run, spent = bpb, rid, Usage()
    return out
