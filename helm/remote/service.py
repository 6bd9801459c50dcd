"""The dispatcher inside ``helm daemon``: place queued jobs, watch running ones, reattach.

Each tick reads one snapshot of the store (hosts, active and queued jobs, cancel requests),
makes sure every staging or running job has a watcher (this is also the whole reattach
logic: after a restart, the first tick finds them all), and places queued jobs with
``scheduler.place`` on hosts that are connected. Store calls go through one worker thread
(``gate.DbGate``) so the event loop never waits on SQLite's lock, and the network never waits
on a transaction. Watchers see the service only through the ``WatchContext`` it builds.

One box (one SSH connection) per host is kept in ``self.boxes`` and shared by all its jobs;
a separate loop reads each busy host's ``done.log`` ten times a second so a finished job
frees its GPUs within a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict

from helm.daemon import FaultStreak
from helm.models import job_life, job_queue
from helm.models.errors import write_fault
from helm.models.states import JOB_GPU_COUNTS, TERMINAL_JOB
from helm.models.tables import Host, Job
from helm.remote.backend import Box, BoxError
from helm.remote.gate import DbGate
from helm.remote.hosts import box_key, make_box
from helm.remote.launch import JOBS_DIR, done_log, reap_script, remote_job_dir
from helm.remote.probe import probe_host
from helm.remote.scheduler import HostSlots, Pending, QueueSlots, agent_limit, place
from helm.remote.secrets import SecretStore
from helm.remote.settings import RemoteSettings
from helm.remote.slurm import reap as slurm_reap
from helm.remote.slurm_conf import SlurmSettings
from helm.remote.slurm_watch import SlurmJobWatcher
from helm.remote.watcher import JobWatcher, WatchContext
from helm.workspace import Workspace


def spawn(coro, log: logging.Logger, what: str) -> asyncio.Task:  # noqa: ANN001
    """A background task whose failure is logged once, never left for asyncio to report.

    A task that dies with nobody awaiting it ends as "Task exception was never retrieved"
    and a traceback in the daemon log at some later garbage collection: the dispatcher's own
    side tasks (connects, checks, reaps, pokes) read their exception as soon as they end.
    """
    task = asyncio.create_task(coro, name=f"helm-{what}")

    def done(t: asyncio.Task) -> None:
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("%s failed: %r", what, exc)

    task.add_done_callback(done)
    return task


class DispatchService:
    """The daemon's ``dispatch`` service: one ``tick`` places, attaches and checks."""

    name = "dispatch"

    def __init__(
        self,
        ws: Workspace,
        log: logging.Logger | None = None,
        settings: RemoteSettings | None = None,
    ) -> None:
        self.ws = ws
        self.store = ws.store
        self.log = log or logging.getLogger("helm.remote")
        self.settings = settings or RemoteSettings.load(ws)
        self.interval_s = self.settings.tick_s
        self.gate = DbGate()
        self.boxes: dict[str, tuple[tuple, Box]] = {}
        # job id -> its watcher's task (None: a job whose host row is gone, being marked lost)
        self.watchers: dict[int, tuple[asyncio.Task, JobWatcher | None]] = {}
        self.cancel_ids: set[int] = set()
        self._connecting: dict[str, asyncio.Task] = {}
        self._checks: dict[str, asyncio.Task] = {}
        self._checked_at: dict[str, float] = {}
        self._reaps: dict[str, asyncio.Task] = {}
        self._reaped_at: dict[str, float] = {}
        self._monitor: asyncio.Task | None = None
        self._last_heartbeat = 0.0
        self.placed = 0  # jobs placed since start (bench, tests)
        self._tick_lock = asyncio.Lock()
        self._done_offsets: dict[tuple[str, int], int] = {}  # (host, connection) -> bytes read
        self._poked: asyncio.Task | None = None
        self._drops: set[int] = set()  # ended jobs whose secrets are still to be dropped
        self._drop_fault = FaultStreak(self.log, "dropping an ended job's secrets")
        self.ctx = WatchContext(
            ws=ws,
            store=self.store,
            settings=self.settings,
            gate=self.gate,
            is_cancelled=lambda job_id: job_id in self.cancel_ids,
            ended=self._try_ended,
            refused=self._refused,
        )
        self._paused: dict[str, tuple[float, str]] = {}  # Slurm host -> (until, why)

    # Life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Begin watching; the daemon calls it again should it fail (e.g. a full disk)."""
        if self._monitor is None or self._monitor.done():
            self._monitor = spawn(self._watch_done_logs(), self.log, "done-logs")
        await self.tick()

    async def stop(self) -> None:
        """Stop watching; jobs keep running on their boxes and are reattached next start."""
        tasks = [t for t, _ in self.watchers.values()]
        tasks += list(self._checks.values()) + list(self._connecting.values())
        tasks += list(self._reaps.values())
        if self._poked is not None:
            tasks.append(self._poked)
        if self._monitor is not None:
            tasks.append(self._monitor)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.watchers.clear()
        for _, box in self.boxes.values():
            with contextlib.suppress(Exception):
                await box.close()
        self.boxes.clear()
        self.gate.close()

    # One pass -------------------------------------------------------------------------------
    def poke(self) -> None:
        """Run a pass now (a job just ended: its GPUs should not wait for the next tick)."""
        if self._poked is None or self._poked.done():
            self._poked = spawn(self.tick(), self.log, "tick")

    async def tick(self) -> None:
        async with self._tick_lock:
            await self._tick()

    async def _tick(self) -> None:
        fleet = await self.gate(job_life.fleet_state, self.store)
        hosts = {h.name: h for h in fleet.hosts}
        self.cancel_ids = fleet.cancel_ids
        self._reap_watchers()
        if self._drops:
            await self._drop_secrets()
        cancel_queued = [j.id for j in fleet.queued if j.cancel_requested and j.id is not None]
        if cancel_queued:
            await self.gate(job_queue.cancel_queued, self.store, cancel_queued)
        for job in fleet.active:
            if job.id not in self.watchers:
                self._attach(job, hosts.get(job.host or ""))
        self._schedule_checks(hosts)
        self._schedule_reaps(hosts)
        queued = [j for j in fleet.queued if not j.cancel_requested]
        if queued:
            await self._place(queued, fleet.active, hosts)
        await self._heartbeat()

    def _box(self, host: Host) -> Box:
        key = box_key(host)
        entry = self.boxes.get(host.name)
        if entry is None or entry[0] != key:
            box = make_box(
                self.ws,
                host,
                keepalive_s=self.settings.keepalive_s,
                sftp_timeout_s=self.settings.sftp_timeout_s,
            )
            entry = (key, box)
            self.boxes[host.name] = entry
        return entry[1]

    def _attach(self, job: Job, host: Host | None) -> None:
        assert job.id is not None
        if host is None:  # its host row was removed under it: nothing to reconnect to
            task = asyncio.create_task(self._lose(job.id, f"host {job.host} removed"))  # reaped
            self.watchers[job.id] = (task, None)
            return
        kind = SlurmJobWatcher if host.kind == "slurm" else JobWatcher
        watcher = kind(self.ctx, job, host, self._box(host))
        task = asyncio.create_task(watcher.run(), name=f"helm-job-{job.id}")
        self.watchers[job.id] = (task, watcher)

    async def _lose(self, job_id: int, reason: str) -> None:
        job = await self.gate(job_queue.lost, self.store, self.ws.jobs_dir, job_id, reason)
        await self._try_ended(job_id, job)

    async def _try_ended(self, job_id: int, job: Job | None) -> None:
        """A try's end is recorded (``job``: the row as it now is). The job's secrets are kept
        for its retries, then dropped; a pass runs now so its GPUs do not wait for a tick."""
        if job is None or job.state in TERMINAL_JOB:
            self._drops.add(job_id)
            await self._drop_secrets()
        self.poke()

    async def _drop_secrets(self) -> None:
        """Drop ended jobs' secrets; a write that fails (full disk) is retried next tick."""
        for job_id in sorted(self._drops):
            try:
                await self.gate(SecretStore(self.ws.root).drop, f"job:{job_id}")
            except OSError as exc:
                self._drop_fault.failed(write_fault(exc) or str(exc))
                return
            self._drops.discard(job_id)
            self._drop_fault.ok()

    def _reap_watchers(self) -> None:
        for job_id, (task, _) in list(self.watchers.items()):
            if task.done():
                del self.watchers[job_id]
                if not task.cancelled() and task.exception() is not None:
                    self.log.error("job %s watcher died: %r", job_id, task.exception())

    # Placement ------------------------------------------------------------------------------
    def _refused(self, host: str, reason: str) -> None:
        """A Slurm host refused a submission for its own settings (partition, account, QOS,
        no sbatch): it takes no jobs for ``slurm_pause_s``, and waiting jobs say why."""
        self._paused[host] = (time.monotonic() + self.settings.slurm_pause_s, reason)

    def _pause_reason(self, host: Host) -> str | None:
        entry = self._paused.get(host.name)
        if entry is None:
            return None
        if time.monotonic() >= entry[0]:
            del self._paused[host.name]
            return None
        return entry[1]

    def _usable(self, host: Host) -> bool:
        if not host.enabled or self._pause_reason(host) is not None:
            return False
        box = self._box(host)
        if getattr(box, "connected", True):
            return True
        task = self._connecting.get(host.name)
        if task is None or task.done():
            self._connecting[host.name] = spawn(
                self._connect(box), self.log, f"connect-{host.name}"
            )
        return False

    async def _connect(self, box: Box) -> None:
        try:
            await box.ensure()
        except BoxError as exc:
            self.log.warning("%s", exc)

    async def _place(self, queued: list[Job], active: list[Job], hosts: dict[str, Host]) -> None:
        used: dict[str, set[int]] = defaultdict(set)
        usage: dict[str, int] = defaultdict(int)
        for j in active:
            if j.host:
                used[j.host].update(json.loads(j.gpu_ids_json or "[]"))
            if j.agent:
                usage[j.agent] += j.gpus
        enabled = [h for h in hosts.values() if h.enabled]
        slots = [
            HostSlots(h.name, h.gpus, frozenset(used[h.name]), self._usable(h))
            for h in enabled
            if h.kind != "slurm"
        ]
        queues = [self._queue_slots(h, active) for h in enabled if h.kind == "slurm"]
        pending = [
            Pending(j.id, j.gpus, j.priority, j.queued_at, j.agent, j.host)
            for j in queued
            if j.id is not None
        ]
        limit = agent_limit(sum(h.gpus for h in enabled), self.settings.agent_gpu_share)
        plan = place(
            pending,
            slots,
            agent_usage=dict(usage),
            limit=limit,
            now=time.time(),
            reserve_after_s=self.settings.reserve_after_s,
            queues=queues,
        )
        paused = [self._pause_reason(h) for h in enabled if h.kind == "slurm"]
        waiting = dict(plan.impossible)
        why = next((p for p in paused if p), None)
        if why is not None and not plan.placements:  # say why nothing goes to the cluster
            waiting.update({j.id: why for j in pending if j.id not in waiting})
        if waiting and enabled:
            await self.gate(job_queue.note_waiting, self.store, waiting)
        if not plan.placements:
            return
        claimed = await self.gate(job_life.claim, self.store, plan.placements)
        self.placed += len(claimed)
        for job in claimed:
            self._attach(job, hosts[job.host or ""])

    def _queue_slots(self, host: Host, active: list[Job]) -> QueueSlots:
        """How many more jobs helm may submit to a Slurm host, and which sizes fit there."""
        settings = SlurmSettings.from_json(host.slurm_json)
        if settings is None:
            return QueueSlots(host.name, 0, frozenset(), False)
        held = sum(1 for j in active if j.host == host.name)
        counts = set()
        for n in JOB_GPU_COUNTS:
            with contextlib.suppress(ValueError):
                settings.shape(n)
                counts.add(n)
        return QueueSlots(
            host.name, settings.max_submitted - held, frozenset(counts), self._usable(host)
        )

    # Done markers, heartbeats, checks -----------------------------------------------------------
    async def _watch_done_logs(self) -> None:
        """Read each busy host's done.log from where it was last read; wake the watchers of
        the jobs it names. A read that finds nothing new costs one SFTP request."""
        while True:
            by_host: dict[str, list[JobWatcher]] = defaultdict(list)
            for _, w in self.watchers.values():
                if w is not None and w.remote_dir:
                    by_host[w.host.name].append(w)
            await asyncio.gather(*(self._read_done(ws_) for ws_ in by_host.values()))
            await asyncio.sleep(self.settings.done_poll_s)

    async def _read_done(self, watchers: list[JobWatcher]) -> None:
        box = watchers[0].box
        if not box.connected:
            return
        path = done_log((watchers[0].remote_dir or "").rsplit(f"/{JOBS_DIR}/", 1)[0])
        key = (watchers[0].host.name, box.connects_marker())
        try:
            if key not in self._done_offsets:  # first look: start at the end
                self._done_offsets[key] = await box.size(path) or 0
                for w in watchers:  # anything that ended unseen is checked by its watcher
                    w.done.set()
                return
            data = await box.read_from(path, self._done_offsets[key], 1 << 20, keep_open=True)
        except Exception:  # the watchers notice connection trouble themselves
            return
        if not data or not data.endswith(b"\n"):
            return  # nothing new, or a line still being written: next time
        self._done_offsets[key] += len(data)
        ended = {line.split(b" ", 1)[0].decode(errors="replace") for line in data.splitlines()}
        for w in watchers:
            if w.remote_dir and w.remote_dir.rstrip("/").rsplit("/", 1)[-1] in ended:
                w.done.set()

    async def _heartbeat(self) -> None:
        now = time.time()
        if now - self._last_heartbeat < self.settings.heartbeat_s:
            return
        self._last_heartbeat = now
        seen = [
            jid
            for jid, (_, w) in self.watchers.items()
            if w is not None and w.last_seen and now - w.last_seen < self.settings.heartbeat_s
        ]
        if seen:
            await self.gate(job_life.heartbeat, self.store, seen)

    def _schedule_checks(self, hosts: dict[str, Host]) -> None:
        every = self.settings.check_every_s
        if every <= 0:
            return
        now = time.monotonic()
        for name, host in hosts.items():
            if not host.enabled or (name in self._checks and not self._checks[name].done()):
                continue
            if now - self._checked_at.get(name, -1e18) < every:
                continue
            self._checked_at[name] = now
            self._checks[name] = spawn(self.check_host(host), self.log, f"check-{name}")

    def _schedule_reaps(self, hosts: dict[str, Host]) -> None:
        """Now and then, on each connected box, stop tries of jobs that helm gave up on."""
        every = self.settings.reap_every_s
        if every <= 0:
            return
        now = time.monotonic()
        for name, host in hosts.items():
            entry = self.boxes.get(name)
            if entry is None or not getattr(entry[1], "connected", True):
                continue
            if name in self._reaps and not self._reaps[name].done():
                continue
            if now - self._reaped_at.get(name, -1e18) < every:
                continue
            self._reaped_at[name] = now
            self._reaps[name] = spawn(self._reap(host, entry[1]), self.log, f"reap-{name}")

    async def _live_tries(self, host_name: str) -> list[str]:
        """The try folders of the host's jobs that hold it now, read from the store now: a
        reap runs beside the pass that may be placing a job there this very moment."""
        fleet = await self.gate(job_life.fleet_state, self.store)
        return [
            remote_job_dir("", j.id, j.attempts).rsplit("/", 1)[-1]
            for j in fleet.active
            if j.host == host_name and j.id is not None
        ]

    async def _reap(self, host: Host, box: Box) -> None:
        if host.kind == "slurm":  # its nodes are not ours to look into: Slurm's queue is
            try:
                strays = await slurm_reap(
                    box, self.ws.campaign_id, lambda: self._live_tries(host.name)
                )
            except BoxError as exc:
                self.log.info("reap on %s skipped: %s", host.name, exc)
                return
            for sid, name in strays:
                self.log.warning(
                    "host %s: stray Slurm job %s (%s) of a try helm gave up on: scancel",
                    host.name,
                    sid,
                    name,
                )
            return
        try:
            workdir = await box.realpath(host.workdir)
            keep = await self._live_tries(host.name)  # a try placed after this is too young
            script = reap_script(
                f"{workdir}/{JOBS_DIR}", keep, min_age_s=int(self.settings.reap_min_age_s)
            )
            res = await box.run(script, timeout=30)
        except BoxError as exc:
            self.log.info("reap on %s skipped: %s", host.name, exc)
            return
        for line in res.stdout.splitlines():
            folder, _, pid = line.partition(" ")
            self.log.warning(
                "host %s: stray try %s (pid %s) of a job helm gave up on: sent TERM",
                host.name,
                folder,
                pid,
            )

    async def check_host(self, host: Host) -> dict:
        """Run ``host check`` now and store the result (``probe.probe_host``)."""
        check = await probe_host(self._box(host), host)
        if host.kind == "slurm" and check.get("reachable") and not check.get("problems"):
            self._paused.pop(host.name, None)  # its settings work now: take jobs again
        await self.gate(job_life.save_check, self.store, host.name, check["reachable"], check)
        return check


def make_service(ws: Workspace, logger: logging.Logger) -> DispatchService:
    """The daemon's entry point (see ``helm.daemon.SERVICE_FACTORIES``)."""
    return DispatchService(ws, logger.getChild("remote") if logger else None)
