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

from helm.agents.report import screen_facts
from helm.models.agents import list_agents
from helm.models.base import (
    BaseStats,
    ConfigKey,
    base_pin_id,
    bases_of,
    pooled_seed_spread,
    seed_counts,
)
from helm.models.costs import Usage, campaign_usage, improvement_series
from helm.models.db import Db, NotFound, Row
from helm.models.directives import list_directives
from helm.models.feed import at_risk_run_ids, list_feed
from helm.models.hosts import list_hosts
from helm.models.jobs import find_job, latest_job_of_run, live_jobs_by_placement
from helm.models.pins import latest_pin
from helm.models.runs import (
    best_kept_run,
    count_runs,
    find_run,
    get_run,
    last_ended_runs,
    leaderboard_ranks,
    ranked_rows,
    run_json,
    scored_runs_in_order,
    scored_stamp,
)
from helm.models.screens import screen_links, screen_run_ids
from helm.models.states import ACTIVE_JOB, SCREEN_RUN, JobState
from helm.workspace import Workspace

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
    queue_reason: str | None = None  # why the host's scheduler (Slurm) keeps it waiting
    backend_id: str | None = None  # its Slurm job id
    phase: str | None = None  # what runs after the last step (eval, quantize, round trip ...)
    phase_at: float | None = None  # when that phase began (unix time)

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
            queue_reason=r.get("queue_reason"),
            backend_id=r.get("backend_id"),
            phase=r.get("phase"),
            phase_at=r.get("phase_at"),
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
    queue: tuple[JobView, ...] = ()  # a Slurm host: helm's jobs submitted there
    verdicts: tuple[tuple[str, str, str], ...] = ()  # last check: (level, problem, fix)
    cpu_only: bool = False  # the last check found no nvidia-smi

    @property
    def busy(self) -> int:
        """GPUs in use: on a box, by GPU id; on a Slurm host, those of its running jobs."""
        if self.kind == "slurm":
            return sum(j.gpus for j in self.queue if j.state == JobState.RUNNING)
        return sum(1 for g in self.gpu_list if g.busy)

    @property
    def capacity(self) -> int:
        """GPUs that count toward the fleet's total: a box's own; on a cluster, only those
        helm's jobs hold (the rest is other people's)."""
        return self.busy if self.kind == "slurm" else self.gpus


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
    seeds: dict[ConfigKey, int] = field(default_factory=dict)  # (code, env) -> seeds scored
    feed: tuple[dict[str, Any], ...] = ()
    hosts: tuple[HostView, ...] = ()
    pin: dict[str, Any] | None = None
    base: BaseStats | None = None  # the current pin's base (the header's)
    bases: dict[int, BaseStats] = field(default_factory=dict)  # by pin id: every row's base
    best: dict[str, Any] | None = None  # the best run that counts (kept or promoted)
    directives: tuple[DirectiveView, ...] = ()
    jobs_running: int = 0
    jobs_queued: int = 0
    runs_total: int = 0
    usage: Usage = field(default_factory=Usage)  # the campaign's GPU-time and money so far
    budget: str | None = None  # the budget's header part once one is at 80% or more
    at_risk: frozenset[int] = frozenset()  # live runs the early-abort rule flagged at risk
    screens: frozenset[int] = frozenset()  # live runs that are screens (short, small jobs)

    @property
    def agents_running(self) -> int:
        return sum(1 for a in self.agents if a.state not in ("stopped",))

    @property
    def gpus_total(self) -> int:
        return sum(h.capacity for h in self.hosts if h.enabled)

    @property
    def gpus_busy(self) -> int:
        return sum(h.busy for h in self.hosts if h.enabled)

    @property
    def directives_pending(self) -> int:
        return sum(1 for d in self.directives if d.acked < d.total)

    @property
    def base_bpb(self) -> float | None:
        """The current base's mean val_bpb."""
        return self.base.mean if self.base else None

    @property
    def base_run_ids(self) -> frozenset[int]:
        return frozenset(self.base.run_ids) if self.base else frozenset()

    def base_of_row(self, row: dict[str, Any]) -> BaseStats | None:
        """The base a leaderboard row is compared with (the pin it ran on, else the current)."""
        pin_id = base_pin_id(row, self.base.pin_id if self.base else None)
        return self.bases.get(pin_id) if pin_id is not None else None

    def is_base_run(self, row: dict[str, Any]) -> bool:
        """A run of the current base or of the base it was compared with: ◆, no Δ."""
        own = self.base_of_row(row)
        return any(b is not None and b.contains(row["id"]) for b in (self.base, own))

    def seed_count(self, row: dict[str, Any]) -> int:
        """Seeds scored with the row's code and environment (itself included)."""
        key = (row.get("code_hash"), row.get("env_json"))
        return self.seeds.get(key, 1) if None not in key else 1  # type: ignore[arg-type]


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


def _host(r: dict[str, Any], busy_ids: set[int], jobs: list[JobView]) -> HostView:
    try:
        check = json.loads(r.get("check_json") or "{}")
    except ValueError:
        check = {}
    reported = check.get("gpus") if isinstance(check, dict) else None
    reported = reported if isinstance(reported, list) else []
    gpus: list[GpuView] = []
    slots = 0 if r["kind"] == "slurm" else max(r["gpus"], len(reported))
    for i in range(slots):
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
    cpu_only = isinstance(check, dict) and check.get("nvidia_smi") is False
    return HostView(
        name=r["name"],
        kind=r["kind"],
        gpus=r["gpus"],
        enabled=bool(r["enabled"]),
        reachable=None if r["reachable"] is None else bool(r["reachable"]),
        checked_at=r["checked_at"],
        gpu_list=tuple(gpus),
        error=str(error) if error else None,
        queue=tuple(j for j in jobs if j.host == r["name"]) if r["kind"] == "slurm" else (),
        verdicts=_verdicts(check),
        cpu_only=cpu_only,
    )


def _verdicts(check: object) -> tuple[tuple[str, str, str], ...]:
    """A check's verdicts (``helm.remote.check.verdicts``); a check without them (a Slurm
    host's, or one stored before verdicts) has its ``problems``, each a blocker."""
    found = check.get("verdicts") if isinstance(check, dict) else None
    if isinstance(found, list):
        keys = ("level", "problem", "fix")
        return tuple(tuple(str(v.get(k, "")) for k in keys) for v in found if isinstance(v, dict))  # type: ignore[misc]
    problems = check.get("problems") if isinstance(check, dict) else None
    return tuple(("blocker", str(p), "") for p in problems) if isinstance(problems, list) else ()


_POOLED: dict[str, tuple[tuple[int, int], float | None]] = {}


def _pooled_for(ws: Workspace) -> Callable[[Db], float | None]:
    """The pooled seed spread (a base of one run shows it as its ±), read again only when a
    score was written since: it groups every scored run, too much for every refresh tick."""

    def read(db: Db) -> float | None:
        stamp = scored_stamp(db)
        hit = _POOLED.get(str(ws.root))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = pooled_seed_spread(db)
        _POOLED[str(ws.root)] = (stamp, value)
        return value

    return read


def _board(db: Db, flt: str) -> list[dict[str, Any]]:
    """The leaderboard, narrowed by the store (``ranked_rows``' text filter) so that a filter
    finds runs beyond the first page; ranks stay those among all ranked runs."""
    rows = ranked_rows(db, limit=LEADERBOARD_ROWS, text=flt or None)
    if flt:
        ranks = leaderboard_ranks(db, [r["id"] for r in rows])
    else:
        ranks = {r["id"]: i + 1 for i, r in enumerate(rows)}
    return [
        dict(
            run_json(r),
            rank=ranks[r["id"]],
            code_hash=r["code_hash"],
            env_json=r["env_json"],
            base_pin_id=r["base_pin_id"],
        )
        for r in rows
    ]


def _agent_jobs(jobs: list[JobView]) -> dict[str, JobView]:
    """The job each agent's row shows: its placed job, else its queued one."""
    by_agent: dict[str, JobView] = {}
    for j in jobs:
        if j.agent and j.state != JobState.QUEUED and j.agent not in by_agent:
            by_agent[j.agent] = j
    for j in jobs:  # an agent with only a queued job shows that one
        if j.agent and j.agent not in by_agent:
            by_agent[j.agent] = j
    return by_agent


def _directive(d: dict[str, Any]) -> DirectiveView:
    return DirectiveView(
        id=d["id"],
        text=d["text"],
        targets=tuple(d["targets"]) if d["targets"] is not None else None,
        total=len(d["deliveries"]),
        delivered=sum(1 for x in d["deliveries"] if x["delivered_at"] is not None),
        acked=sum(1 for x in d["deliveries"] if x["acked_at"] is not None),
        created_at=d["created_at"],
    )


def load_snapshot(
    ws: Workspace, *, clock: Callable[[], float], flt: str = "", feed_rows: int = FEED_ROWS
) -> Snapshot:
    """Everything the main screen shows, in one read transaction."""
    with ws.db(write=False) as db:
        jobs = [JobView.of(r) for r in live_jobs_by_placement(db)]
        last = {agent: run_json(r) for agent, r in last_ended_runs(db).items()}
        job_by_agent = _agent_jobs(jobs)
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
            for r in sorted(list_agents(db), key=lambda r: r["name"])
        )
        busy: dict[str, set[int]] = {}
        for j in jobs:
            if j.state in ACTIVE_JOB and j.host:
                busy.setdefault(j.host, set()).update(j.gpu_ids)
        hosts = tuple(_host(r, busy.get(r["name"], set()), jobs) for r in list_hosts(db))
        board = _board(db, flt)
        seeds = seed_counts(db, [(r["code_hash"], r["env_json"]) for r in board if r["code_hash"]])
        best = best_kept_run(db)
        pin = latest_pin(db)
        current = int(pin["id"]) if pin else None
        pins = [current, *(base_pin_id(r, current) for r in board)]
        bases = bases_of(db, pins, pooled=_pooled_for(ws))
        directives = tuple(_directive(d) for d in list_directives(db, limit=20))
        feed = tuple(list_feed(db, limit=feed_rows))
        runs_total = count_runs(db)
        live_runs = [j.run_id for j in jobs if j.run_id is not None]
        at_risk = frozenset(at_risk_run_ids(db, live_runs))
        screens = frozenset(screen_run_ids(db, live_runs))
        taken_at = clock()
        usage = campaign_usage(db, taken_at)  # two small queries: stored sums, running tries
        budget = _budget_line(ws, db, taken_at)
    on_agent_rows = {a.job.id for a in agents if a.job is not None}
    return Snapshot(
        taken_at=taken_at,
        agents=agents,
        jobs=tuple(j for j in jobs if j.id not in on_agent_rows),
        leaderboard=tuple(board),
        seeds=seeds,
        feed=feed,
        hosts=hosts,
        pin=pin,
        base=bases.get(current) if current is not None else None,
        bases=bases,
        best=run_json(best) if best is not None else None,
        directives=directives,
        jobs_running=sum(1 for j in jobs if j.state != JobState.QUEUED),
        jobs_queued=sum(1 for j in jobs if j.state == JobState.QUEUED),
        runs_total=runs_total,
        usage=usage,
        budget=budget,
        at_risk=at_risk,
        screens=screens,
    )


def _budget_line(ws: Workspace, db: Db, now: float) -> str | None:
    """The header's budget part (``budget 85% $425.00/$500.00``), None while every budget is
    below 80% or none is set; a ``[budget]`` table with a typo says so instead of hiding."""
    from helm.agents.budget import BudgetError, budget_state, header_text, load_budget

    try:
        budget = load_budget(ws)
    except BudgetError as exc:
        return f"budget: {exc}"[:60]
    if budget.empty:
        return None
    return header_text(budget_state(db, budget, now))


# The run detail and the plot read more than a snapshot; they load their own rows. -----------
@dataclass(frozen=True)
class RunDetail:
    """A run with its job and parent; ``run`` is None for a job started without a run.

    ``screen`` is ``report.screen_facts`` (the run itself when it is a screen, else the
    screen a full run came through, with the base's screen it was judged against) and
    ``full_run_id`` the full run a screen earned (None: none, or not yet)."""

    run: Row | None
    job: Row | None
    parent: Row | None
    screen: dict[str, Any] | None = None
    full_run_id: int | None = None


def load_detail(ws: Workspace, run_id: int | None, job_id: int | None = None) -> RunDetail:
    """A run (NotFound if it does not exist), its job (the one asked for, else its newest)
    and its parent; or a job alone when there is no run."""
    with ws.db(write=False) as db:
        run = get_run(db, run_id) if run_id is not None else None
        if run is not None:
            job_id = job_id or run["job_id"]
        job = find_job(db, job_id)
        if job is None and run_id is not None:
            job = latest_job_of_run(db, run_id)
        parent = find_run(db, run["parent_id"]) if run is not None else None
        screen, full = None, None
        if run is not None and (run.get("screen") or run.get("screen_run_id") is not None):
            screen = screen_facts(db, run)
            full = screen_links(db, [run["id"]]).get(run["id"], {}).get("full")
    if run is None and job is None:
        raise NotFound(f"no job {job_id}")
    return RunDetail(run=run, job=job, parent=parent, screen=screen, full_run_id=full)


@dataclass(frozen=True)
class PlotPoint:
    run_id: int
    val_bpb: float
    status: str
    description: str


def load_plot_points(ws: Workspace) -> list[PlotPoint]:
    """Every scored run in the order it was made: the x axis of the progress plot. Screens
    are left out: a short run's score is not comparable with a full run's."""
    with ws.db(write=False) as db:
        rows = scored_runs_in_order(db)
    return [
        PlotPoint(r["id"], float(r["val_bpb"]), r["status"], r["description"])
        for r in rows
        if r["status"] not in SCREEN_RUN
    ]


def load_improvements(ws: Workspace, *, clock: Callable[[], float]) -> list[dict[str, Any]]:
    """``costs.improvement_series`` (money per kept improvement), running jobs counted up to
    the app's clock; read in a worker by the spend screen."""
    with ws.db(write=False) as db:
        return improvement_series(db, clock())
