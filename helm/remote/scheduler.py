"""Placement: which queued job goes on which GPUs, decided from a snapshot, with no I/O.

Rules, in the order they apply:

- Order: priority (higher first). Within a priority, jobs that have waited
  ``reserve_after_s`` or more go first, oldest first; younger jobs follow largest first
  (first-fit decreasing), so a burst of mixed 1/2/4-GPU jobs packs the aligned blocks with
  the big jobs while there is room and fills the gaps with the small ones, instead of
  leaving 4-GPU jobs waiting on fragmented hosts at the end of the queue. No job waits long
  for this: once overdue, age rules.
- Fit: a job needs ``gpus`` free GPUs on one host (a pinned job only on its host). Among the
  hosts that fit, best fit wins (fewest GPUs left over), so small jobs pack together and
  whole boxes stay free for 8-GPU jobs. Within a host, an aligned block (0-3, 4-7 for a
  4-GPU job) is preferred: on NVLink boxes those pairs and quads are the well-connected ones.
- No starvation: a job that fits nowhere and has waited ``reserve_after_s`` *reserves* the
  host closest to fitting it (most free GPUs); later, smaller jobs may not take GPUs there,
  so the box drains and the big job starts. Each blocked job reserves at most one host.
  Before that, smaller jobs backfill freely: draining a box at once would idle its GPUs
  every time a 4-GPU job meets a busy fleet, while churn usually frees room soon enough.
- Fair share: an agent above its GPU limit waits while any other job it would compete with
  is waiting; when nobody else wants the GPUs it may use them (idle GPUs earn nothing).
- Cluster queues (Slurm hosts): helm does not pick their GPUs; it keeps at most a few jobs
  submitted to each (``QueueSlots.free``) and lets the cluster's scheduler place them, so
  helm's own order, cancels and pins still act on everything not yet submitted. A job goes
  to a queue when no box fits it right now (a box that fits starts it at once, and costs
  nothing while idle), in the same order as above.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostSlots:
    name: str
    gpus: int
    used: frozenset[int] = frozenset()
    usable: bool = True  # enabled and reachable right now


@dataclass(frozen=True)
class QueueSlots:
    """A host whose own scheduler places jobs (Slurm): how many more helm may submit."""

    name: str
    free: int  # submissions helm may still make there now
    gpu_counts: frozenset[int]  # the GPU counts one job may ask for there (shape fits)
    usable: bool = True  # enabled, reachable and not refusing submissions


@dataclass(frozen=True)
class Pending:
    id: int
    gpus: int
    priority: int = 0
    queued_at: float = 0.0
    agent: str | None = None
    host: str | None = None  # pinned to this host


@dataclass(frozen=True)
class Placement:
    job_id: int
    host: str
    gpu_ids: tuple[int, ...]


@dataclass
class Plan:
    placements: list[Placement]
    impossible: dict[int, str]  # job id -> why no host can ever run it


def agent_limit(total_gpus: int, share: float) -> int | None:
    """GPUs one agent may hold while others wait; None when the share does not limit."""
    if share >= 1.0 or total_gpus <= 0:
        return None
    return max(1, math.ceil(total_gpus * share))


def _pick_ids(free: Sequence[int], n: int) -> tuple[int, ...]:
    free_set = set(free)
    top = max(free) + 1 if free else 0
    for start in range(0, top, n):  # aligned block first
        block = range(start, start + n)
        if all(i in free_set for i in block):
            return tuple(block)
    return tuple(sorted(free)[:n])


def place(
    pending: Iterable[Pending],
    hosts: Sequence[HostSlots],
    *,
    agent_usage: dict[str, int] | None = None,
    limit: int | None = None,
    now: float = 0.0,
    reserve_after_s: float = 0.0,
    queues: Sequence[QueueSlots] = (),
) -> Plan:
    """Decide placements for one scheduling pass (a queue's placement has no GPU ids)."""
    free = {h.name: sorted(set(range(h.gpus)) - set(h.used)) for h in hosts if h.usable}
    by_name: dict[str, object] = {h.name: h for h in hosts}
    by_name.update({q.name: q for q in queues})
    submit = {q.name: q.free for q in queues if q.usable}
    usage = dict(agent_usage or {})
    reserved: set[str] = set()
    plan = Plan([], {})
    blocked_agents: set[str | None] = set()
    deferred: list[Pending] = []

    def try_place(job: Pending) -> bool:
        candidates = [
            h for h in hosts if (job.host is None or h.name == job.host) and h.gpus >= job.gpus
        ]
        lanes = [
            q
            for q in queues
            if (job.host is None or q.name == job.host) and job.gpus in q.gpu_counts
        ]
        if not candidates and not lanes:
            if job.host is not None and job.host not in by_name:
                plan.impossible[job.id] = f"host {job.host!r} does not exist or is disabled"
            elif job.host is not None and any(q.name == job.host for q in queues):
                plan.impossible[job.id] = (
                    f"host {job.host!r} cannot run {job.gpus} GPUs in one job (its nodes and"
                    " --max-nodes)"
                )
            elif not hosts and queues:
                plan.impossible[job.id] = (
                    f"no Slurm host here runs {job.gpus} GPUs in one job (their nodes and"
                    " --max-nodes)"
                )
            else:
                biggest = max((h.gpus for h in hosts), default=0)
                plan.impossible[job.id] = (
                    f"needs {job.gpus} GPUs on one host; the largest host has {biggest}"
                )
            return False
        open_ = [h for h in candidates if h.name in free and h.name not in reserved]
        fits = [h for h in open_ if len(free[h.name]) >= job.gpus]
        if fits:
            best = min(fits, key=lambda h: (len(free[h.name]) - job.gpus, h.name))
            ids = _pick_ids(free[best.name], job.gpus)
            free[best.name] = [i for i in free[best.name] if i not in ids]
            plan.placements.append(Placement(job.id, best.name, ids))
            if job.agent is not None:
                usage[job.agent] = usage.get(job.agent, 0) + job.gpus
            return True
        open_lanes = [q for q in lanes if submit.get(q.name, 0) > 0]
        if open_lanes:  # the one with the most room left, then by name
            lane = max(open_lanes, key=lambda q: (submit[q.name], q.name))
            submit[lane.name] -= 1
            plan.placements.append(Placement(job.id, lane.name, ()))
            if job.agent is not None:
                usage[job.agent] = usage.get(job.agent, 0) + job.gpus
            return True
        if open_ and now - job.queued_at >= reserve_after_s:  # drain the closest host
            target = max(open_, key=lambda h: (len(free[h.name]), -len(h.used), h.name))
            reserved.add(target.name)
        return False

    def order_key(j: Pending) -> tuple:
        overdue = now - j.queued_at >= reserve_after_s
        return (-j.priority, not overdue, 0 if overdue else -j.gpus, j.queued_at, j.id)

    order = sorted(pending, key=order_key)
    for job in order:
        over = limit is not None and usage.get(job.agent or "", 0) + job.gpus > limit
        if over and job.agent is not None:
            deferred.append(job)
            continue
        if not try_place(job) and job.id not in plan.impossible:
            blocked_agents.add(job.agent)
    for job in deferred:
        others_waiting = any(a != job.agent for a in blocked_agents)
        if not others_waiting:
            try_place(job)
    return plan
