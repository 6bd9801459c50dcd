"""What the TUI shows, read from the store in one short read transaction.

``load_snapshot`` runs in a worker thread every refresh tick and returns plain frozen data,
so the UI thread only renders and never touches the database. It goes through
``Workspace.db`` (the stdlib sqlite3 path for the default store): a full snapshot of a
campaign with 50 agents, 64 running jobs and 10,000 runs costs a few milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from helm.models.db import Db, NotFound
from helm.models.directives import list_directives
from helm.models.feed import list_feed
from helm.models.pins import latest_pin
from helm.models.runs import leaderboard, run_json
from helm.models.states import FINISHED_RUN
from helm.workspace import Workspace

BYTES_CAP = 16_000_000
LIVE_JOB_STATES = ("queued", "staging", "running")
LEADERBOARD_ROWS = 200
FEED_ROWS = 100


@dataclass(frozen=True)
class JobView:
    id: int
    run_id: int | None
    agent: str | None
    state: str
    host: str | None
    gpus: int
    gpu_ids: tuple[int, ...]
    step: int | None
    total_steps: int | None
    train_loss: float | None
    val_bpb: float | None
    eta_s: float | None
    queued_at: float
    started_at: float | None
    cancel_requested: bool

    @classmethod
    def of(cls, r: dict[str, Any]) -> JobView:
        try:
            ids = tuple(int(i) for i in json.loads(r.get("gpu_ids_json") or "[]"))
        except (ValueError, TypeError):
            ids = ()
        return cls(
            id=r["id"],
            run_id=r["run_id"],
            agent=r["agent"],
            state=r["state"],
            host=r["host"],
            gpus=r["gpus"],
            gpu_ids=ids,
            step=r["step"],
            total_steps=r["total_steps"],
            train_loss=r["train_loss"],
            val_bpb=r["val_bpb"],
            eta_s=r["eta_s"],
            queued_at=r["queued_at"],
            started_at=r["started_at"],
            cancel_requested=bool(r["cancel_requested"]),
        )


@dataclass(frozen=True)
class AgentView:
    name: str
    driver: str
    state: str
    desired: str
    current_run_id: int | None
    job: JobView | None
    last: dict[str, Any] | None  # the agent's latest finished run (hot run shape)
    last_seen_at: float | None


@dataclass(frozen=True)
class GpuView:
    index: int
    name: str
    busy: bool
    util: float | None  # percent
    mem_used: float | None  # MiB
    mem_total: float | None  # MiB
    temp: float | None


@dataclass(frozen=True)
class HostView:
    name: str
    kind: str
    gpus: int
    enabled: bool
    reachable: bool | None
    checked_at: float | None
    gpu_list: tuple[GpuView, ...]
    error: str | None

    @property
    def busy(self) -> int:
        return sum(1 for g in self.gpu_list if g.busy)


@dataclass(frozen=True)
class DirectiveView:
    id: int
    text: str
    targets: tuple[str, ...] | None
    total: int
    delivered: int
    acked: int
    created_at: float


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    agents: tuple[AgentView, ...] = ()
    jobs: tuple[JobView, ...] = ()  # live jobs not shown on an agent's row (queued first)
    leaderboard: tuple[dict[str, Any], ...] = ()
    seeds: dict[str, int] = field(default_factory=dict)  # code_hash -> scored runs
    feed: tuple[dict[str, Any], ...] = ()
    hosts: tuple[HostView, ...] = ()
    pin: dict[str, Any] | None = None
    base_bpb: float | None = None
    base_run_ids: frozenset[int] = frozenset()
    best: dict[str, Any] | None = None
    directives: tuple[DirectiveView, ...] = ()
    jobs_running: int = 0
    jobs_queued: int = 0
    runs_total: int = 0

    @property
    def agents_running(self) -> int:
        return sum(1 for a in self.agents if a.state not in ("stopped",))

    @property
    def gpus_total(self) -> int:
        return sum(h.gpus for h in self.hosts if h.enabled)

    @property
    def gpus_busy(self) -> int:
        return sum(h.busy for h in self.hosts if h.enabled)

    @property
    def directives_pending(self) -> int:
        return sum(1 for d in self.directives if d.acked < d.total)


def _num(gpu: dict[str, Any], *names: str) -> float | None:
    """The first numeric field among ``names``: hosts report nvidia-smi fields by many names."""
    for n in names:
        v = gpu.get(n)
        if isinstance(v, int | float):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v.split()[0].rstrip("%"))
            except (ValueError, IndexError):
                continue
    return None


def _host(r: dict[str, Any], busy_ids: set[int]) -> HostView:
    try:
        check = json.loads(r.get("check_json") or "{}")
    except ValueError:
        check = {}
    reported = check.get("gpus") if isinstance(check, dict) else None
    reported = reported if isinstance(reported, list) else []
    gpus: list[GpuView] = []
    for i in range(max(r["gpus"], len(reported))):
        g = reported[i] if i < len(reported) and isinstance(reported[i], dict) else {}
        gpus.append(
            GpuView(
                index=int(g.get("index", i)) if isinstance(g.get("index", i), int) else i,
                name=str(g.get("name", "")),
                busy=i in busy_ids,
                util=_num(g, "utilization_pct", "utilisation", "utilization", "util"),
                mem_used=_num(g, "memory_used_mib", "memory_used", "mem_used"),
                mem_total=_num(g, "memory_total_mib", "memory_total", "memory", "mem_total"),
                temp=_num(g, "temperature_c", "temperature", "temp"),
            )
        )
    error = check.get("error") if isinstance(check, dict) else None
    return HostView(
        name=r["name"],
        kind=r["kind"],
        gpus=r["gpus"],
        enabled=bool(r["enabled"]),
        reachable=None if r["reachable"] is None else bool(r["reachable"]),
        checked_at=r["checked_at"],
        gpu_list=tuple(gpus),
        error=str(error) if error else None,
    )


def _base(
    db: Db, pin: dict[str, Any] | None, board: list[dict[str, Any]]
) -> tuple[float | None, frozenset[int]]:
    """The pinned base's score and the runs that are the base (same commit, or the pinned run)."""
    if pin is None:
        return None, frozenset()
    rows: list[dict[str, Any]] = []
    if pin["kind"] == "run" and str(pin["ref"]).isdigit():
        rows = db.rows("SELECT id, val_bpb FROM run WHERE id = :id", {"id": int(pin["ref"])})
    elif pin.get("commit"):
        rows = db.rows(
            'SELECT id, val_bpb FROM run WHERE "commit" = :c AND val_bpb IS NOT NULL '
            "ORDER BY val_bpb LIMIT 20",
            {"c": pin["commit"]},
        )
    ids = frozenset(int(r["id"]) for r in rows)
    scores = [r["val_bpb"] for r in rows if r["val_bpb"] is not None]
    if scores:
        return min(scores), ids
    audit = db.rows(
        "SELECT reproduced_bpb, claimed_bpb FROM audit WHERE ref = :r ORDER BY id DESC LIMIT 1",
        {"r": pin["ref"]},
    )
    if audit:
        return audit[0]["reproduced_bpb"] or audit[0]["claimed_bpb"], ids
    return None, ids


def _board(db: Db, flt: str) -> list[dict[str, Any]]:
    """The leaderboard (hot's order and rules), narrowed in SQL-fed Python by a filter so
    that it finds runs beyond the first page; ranks stay those among all scored runs."""
    finished = ", ".join(f"'{s}'" for s in FINISHED_RUN)
    sql = (
        f"SELECT * FROM run WHERE status IN ({finished}) AND val_bpb IS NOT NULL "
        "ORDER BY val_bpb ASC, id ASC"
    )
    if not flt:
        sql += f" LIMIT {LEADERBOARD_ROWS}"
    needle = flt.lower()
    out = []
    for i, r in enumerate(db.rows(sql)):
        text = f"#{r['id']} {r['agent'] or ''} {r['description']} {r['status']}".lower()
        if needle in text:
            out.append(dict(run_json(r), rank=i + 1, code_hash=r["code_hash"]))
            if len(out) >= LEADERBOARD_ROWS:
                break
    return out


def load_snapshot(
    ws: Workspace, *, clock: Callable[[], float], flt: str = "", feed_rows: int = FEED_ROWS
) -> Snapshot:
    """Everything the main screen shows, in one read transaction."""
    with ws.db(write=False) as db:
        jobs = [
            JobView.of(r)
            for r in db.rows(
                "SELECT * FROM job WHERE state IN ('queued', 'staging', 'running') "
                "ORDER BY CASE state WHEN 'queued' THEN 1 ELSE 0 END, priority DESC, id"
            )
        ]
        runs_total = int(db.rows("SELECT COUNT(*) AS n FROM run")[0]["n"])
        ended = ", ".join(f"'{s}'" for s in (*FINISHED_RUN, "crash"))
        last_rows = db.rows(
            "SELECT r.* FROM run r JOIN (SELECT agent, MAX(id) AS id FROM run "
            f"WHERE status IN ({ended}) "
            "AND agent IS NOT NULL GROUP BY agent) m ON r.id = m.id"
        )
        last = {r["agent"]: run_json(r) for r in last_rows}
        job_by_agent: dict[str, JobView] = {}
        for j in jobs:
            if j.agent and j.state != "queued" and j.agent not in job_by_agent:
                job_by_agent[j.agent] = j
        for j in jobs:  # an agent with only a queued job shows that one
            if j.agent and j.agent not in job_by_agent:
                job_by_agent[j.agent] = j
        agents = tuple(
            AgentView(
                name=r["name"],
                driver=r["driver"],
                state=r["state"],
                desired=r["desired"],
                current_run_id=r["current_run_id"],
                job=job_by_agent.get(r["name"]),
                last=last.get(r["name"]),
                last_seen_at=r["last_seen_at"],
            )
            for r in db.rows("SELECT * FROM agent ORDER BY name")
        )
        on_agent_rows = {a.job.id for a in agents if a.job is not None}
        busy: dict[str, set[int]] = {}
        for j in jobs:
            if j.state in ("staging", "running") and j.host:
                busy.setdefault(j.host, set()).update(j.gpu_ids)
        hosts = tuple(
            _host(r, busy.get(r["name"], set()))
            for r in db.rows("SELECT * FROM host ORDER BY name")
        )
        board = _board(db, flt)
        hashes = sorted({r["code_hash"] for r in board if r.get("code_hash")})
        seeds: dict[str, int] = {}
        if hashes:
            marks = ", ".join(f":h{i}" for i in range(len(hashes)))
            for r in db.rows(
                f"SELECT code_hash, COUNT(*) AS n FROM run WHERE val_bpb IS NOT NULL "
                f"AND code_hash IN ({marks}) GROUP BY code_hash",
                {f"h{i}": h for i, h in enumerate(hashes)},
            ):
                seeds[r["code_hash"]] = int(r["n"])
        best = leaderboard(db, limit=1)
        pin = latest_pin(db)
        base_bpb, base_ids = _base(db, pin, board)
        directives = tuple(
            DirectiveView(
                id=d["id"],
                text=d["text"],
                targets=tuple(d["targets"]) if d["targets"] is not None else None,
                total=len(d["deliveries"]),
                delivered=sum(1 for x in d["deliveries"] if x["delivered_at"] is not None),
                acked=sum(1 for x in d["deliveries"] if x["acked_at"] is not None),
                created_at=d["created_at"],
            )
            for d in list_directives(db, limit=20)
        )
        feed = tuple(list_feed(db, limit=feed_rows))
    return Snapshot(
        taken_at=clock(),
        agents=agents,
        jobs=tuple(j for j in jobs if j.id not in on_agent_rows),
        leaderboard=tuple(board),
        seeds=seeds,
        feed=feed,
        hosts=hosts,
        pin=pin,
        base_bpb=base_bpb,
        base_run_ids=base_ids,
        best=best[0] if best else None,
        directives=directives,
        jobs_running=sum(1 for j in jobs if j.state != "queued"),
        jobs_queued=sum(1 for j in jobs if j.state == "queued"),
        runs_total=runs_total,
    )


# The run detail and the plot read more than a snapshot; they load their own rows. -----------
@dataclass(frozen=True)
class RunDetail:
    """A run with its job and parent; ``run`` is None for a job started without a run."""

    run: dict[str, Any] | None
    job: dict[str, Any] | None
    parent: dict[str, Any] | None


def _one(db: Db, sql: str, **params: Any) -> dict[str, Any] | None:
    rows = db.rows(sql, params)
    return rows[0] if rows else None


def load_detail(ws: Workspace, run_id: int | None, job_id: int | None = None) -> RunDetail:
    with ws.db(write=False) as db:
        run = job = parent = None
        if run_id is not None:
            run = _one(db, "SELECT * FROM run WHERE id = :id", id=run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            job_id = job_id or run["job_id"]
        if job_id is not None:
            job = _one(db, "SELECT * FROM job WHERE id = :id", id=job_id)
        if job is None and run_id is not None:
            job = _one(
                db, "SELECT * FROM job WHERE run_id = :id ORDER BY id DESC LIMIT 1", id=run_id
            )
        if run is not None and run["parent_id"] is not None:
            parent = _one(db, "SELECT * FROM run WHERE id = :id", id=run["parent_id"])
    if run is None and job is None:
        raise NotFound(f"no job {job_id}")
    return RunDetail(run=run, job=job, parent=parent)


@dataclass(frozen=True)
class PlotPoint:
    run_id: int
    val_bpb: float
    status: str
    description: str


def load_plot_points(ws: Workspace) -> list[PlotPoint]:
    """Every scored run in the order it was made: the x axis of the progress plot."""
    with ws.db(write=False) as db:
        rows = db.rows(
            "SELECT id, val_bpb, status, description FROM run WHERE val_bpb IS NOT NULL ORDER BY id"
        )
    return [PlotPoint(r["id"], float(r["val_bpb"]), r["status"], r["description"]) for r in rows]
