"""Which seeds a promotion can reuse, which it must queue, and what that would cost.

A seed is reused only from a finished run of the *same* code (code hash: every file but
``run.env``) and the *same* environment (``SEED`` and run names aside) with a score; a run of
that configuration still queued or running is waited for rather than duplicated. Nothing here
writes anything, so ``--dry-run`` and the TUI wizard can show the plan before any GPU time
is spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from helm.models.jobs import find_job
from helm.models.runs import get_run, runs_with_code
from helm.models.states import FINISHED_RUN, IN_FLIGHT_RUN
from helm.promote import sources as src
from helm.workspace import Workspace

if TYPE_CHECKING:
    from helm.promote.feasibility import Feasibility

DEFAULT_SEEDS = (42, 1337, 2025)
# The script seeds numpy, which takes 0 .. 2**32 - 1 (the store keeps seeds as 64-bit
# integers), so a larger one is refused before any GPU time is spent.
MAX_SEED = 2**32 - 1


class PromoteError(RuntimeError):
    """The promotion cannot go on; the message says why (and names the seed if one failed).

    ``field`` names the option at fault (``author``, ``github_id``, ``name``, ...) so that each
    front end can point at it in its own words: the CLI's flag, the wizard's input.
    """

    def __init__(
        self,
        message: str,
        *,
        seed: int | None = None,
        report: Any = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.seed = seed
        self.report = report
        self.field = field


@dataclass
class SeedSlot:
    """Where one seed's result comes from: an existing run, a run in flight, or a new one."""

    seed: int
    action: str  # reuse | wait | queue
    run_id: int | None = None
    status: str | None = None
    val_bpb: float | None = None


@dataclass
class Plan:
    run: dict[str, Any]
    slots: list[SeedSlot]
    gpus: int
    time_limit_s: float
    est_s_per_seed: float
    est_source: str
    notes: list[str] = field(default_factory=list)
    # seed -> its scored run of this code and config (the evidence of the feasibility check)
    scored: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    feasibility: Feasibility | None = None  # set by ``promote.prepare`` (it knows the SOTA)

    @property
    def run_id(self) -> int:
        return int(self.run["id"])

    @property
    def to_queue(self) -> list[SeedSlot]:
        return [s for s in self.slots if s.action == "queue"]

    @property
    def gpu_hours(self) -> float:
        """Expected cost of the runs to queue: GPUs x measured (or limit) seconds each."""
        return self.gpus * len(self.to_queue) * self.est_s_per_seed / 3600.0

    @property
    def gpu_hours_max(self) -> float:
        """The bound the scheduler enforces: GPUs x the per-job time limit."""
        return self.gpus * len(self.to_queue) * self.time_limit_s / 3600.0

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "seeds": [asdict(s) for s in self.slots],
            "queue": [s.seed for s in self.to_queue],
            "gpus": self.gpus,
            "time_limit_s": self.time_limit_s,
            "est_s_per_seed": self.est_s_per_seed,
            "est_source": self.est_source,
            "gpu_hours": self.gpu_hours,
            "gpu_hours_max": self.gpu_hours_max,
            "notes": self.notes,
            "feasibility": self.feasibility.to_json() if self.feasibility else None,
        }

    def describe(self) -> str:
        lines = [f"promote run #{self.run_id}: {self.run.get('description') or '-'}"]
        for s in self.slots:
            if s.action == "reuse":
                what = f"reuse run #{s.run_id} (val_bpb {s.val_bpb:.8f})"
            elif s.action == "wait":
                what = f"wait for run #{s.run_id} ({s.status})"
            else:
                what = f"queue a new run on {self.gpus} GPU(s)"
            lines.append(f"  seed {s.seed}: {what}")
        n = len(self.to_queue)
        if n:
            lines.append(
                f"cost: {n} run(s) x {self.gpus} GPU(s) x {self.est_s_per_seed:.0f}s "
                f"({self.est_source}) = {self.gpu_hours:.3f} GPU-hours "
                f"(at most {self.gpu_hours_max:.3f} at the {self.time_limit_s:.0f}s limit)"
            )
        else:
            lines.append("cost: nothing to queue")
        lines += [f"note: {n}" for n in self.notes]
        if self.feasibility is not None:
            lines += self.feasibility.lines()
        return "\n".join(lines)


def _same_config(ws: Workspace, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs of exactly this code and environment (any seed, any state), oldest first."""
    if not run.get("code_hash"):
        return [run]
    with ws.db(write=False) as db:
        rows = runs_with_code(db, run["code_hash"])
    want = src.config_env(run)
    return [r for r in rows if src.config_env(r) == want]


def _estimate(ws: Workspace, run: dict[str, Any], limit_s: float) -> tuple[float, str]:
    with ws.db(write=False) as db:
        job = find_job(db, run.get("job_id"))
    if job and job.get("started_at") and job.get("finished_at"):
        wall = float(job["finished_at"]) - float(job["started_at"])
        if wall > 0:
            return wall, f"run #{run['id']}'s measured wall time"
    train_ms = run.get("train_time_ms")
    if train_ms:
        eval_ms = src.log_facts(ws, run).eval_time_ms or 0.0
        return (float(train_ms) + float(eval_ms)) / 1000.0, f"run #{run['id']}'s train + eval"
    return limit_s, "the time limit"


def default_time_limit(ws: Workspace) -> float:
    from helm.agents import config as cfg

    return float(cfg.load(ws.config_path).time_limit_s)


def plan_promotion(
    ws: Workspace,
    run_id: int,
    seeds: tuple[int, ...] | list[int] = DEFAULT_SEEDS,
    *,
    time_limit_s: float | None = None,
) -> Plan:
    """Decide, for each seed, reuse / wait / queue; raises PromoteError for a bad run."""
    if not seeds:
        raise PromoteError("no seeds to promote with", field="seeds")
    if len(set(seeds)) != len(seeds):
        raise PromoteError(f"seeds repeat: {list(seeds)}", field="seeds")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise PromoteError(
                f"seed {seed} is out of range: seeds are 0..{MAX_SEED}", seed=seed, field="seeds"
            )
    with ws.db(write=False) as db:
        run = get_run(db, run_id)
    if run["status"] not in FINISHED_RUN or run.get("val_bpb") is None:
        raise PromoteError(
            f"run {run_id} is {run['status']} without a score: only a finished, scored run "
            "can be promoted"
        )
    limit = time_limit_s if time_limit_s is not None else default_time_limit(ws)
    finished: dict[int, dict[str, Any]] = {}
    flying: dict[int, dict[str, Any]] = {}
    for other in _same_config(ws, run):
        if other["status"] in FINISHED_RUN and other.get("val_bpb") is not None:
            seed = src.effective_seed(ws, other)
            # the promoted run itself wins for its seed; otherwise the oldest result
            if seed is not None and (seed not in finished or other["id"] == run["id"]):
                finished[seed] = other
        elif other["status"] in IN_FLIGHT_RUN:
            seed = src.effective_seed(ws, other, read_log=False)
            if seed is not None:
                flying.setdefault(seed, other)
    slots = []
    for seed in seeds:
        if seed in finished:
            r = finished[seed]
            slots.append(SeedSlot(seed, "reuse", r["id"], r["status"], r["val_bpb"]))
        elif seed in flying:
            r = flying[seed]
            slots.append(SeedSlot(seed, "wait", r["id"], r["status"]))
        else:
            slots.append(SeedSlot(seed, "queue"))
    est, source = _estimate(ws, run, limit)
    notes = []
    if not run.get("code_hash"):
        notes.append("the run has no code hash (not an experiment commit): nothing is reused")
    own_seed = src.effective_seed(ws, run)
    if own_seed not in seeds:
        notes.append(f"the run's own seed {own_seed} is not among the seeds: it is not used")
    plan = Plan(run, slots, int(run.get("gpus") or 1), limit, est, source, notes)
    plan.scored = finished
    return plan
