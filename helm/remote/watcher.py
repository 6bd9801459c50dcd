"""One job's life on its box: stage, launch, stream, and record how it ended.

A watcher holds no state that matters: everything it needs to resume is in the Job row
(``remote_dir``, ``pid``, ``log_offset``) and on the box (``helm.pid``, ``helm.exit``,
``train.log``). So a daemon restart simply starts a fresh watcher per staging or running job,
and a dropped connection is just an exception after which the watcher tries again. A job is
declared ``lost`` only when its box stays unreachable past ``lost_after_s``, or when its
process is gone and left no exit code.

Faults are named, never guessed at. A box that refuses a file (upload, launch) or a job that
fails or vanishes is probed (``check.disk_problem``): "No space left on device on box: ..."
or "Read-only file system ..." becomes the job's error. A full workspace here is waited out:
store writes and log copies are retried (``_record``, the run loop) and never counted against
the job. A try that died on a corrupt compile cache (``corrupt_cache_sign``) has helm's cache
folders on that box quarantined and is retried once, as its history says.

A watcher knows its dispatcher only through a ``WatchContext`` (settings, the store's gate,
cancel requests, what to do once a try has ended), so this module never imports the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from golf_task.log_summary import LogSummary
from helm.daemon import FaultStreak
from helm.models import job_life, job_queue
from helm.models.engine import Store
from helm.models.errors import write_fault
from helm.models.states import JobState
from helm.models.tables import Host, Job
from helm.remote.backend import Box, BoxError, HostKeyError
from helm.remote.check import disk_problem
from helm.remote.gate import DbGate
from helm.remote.hosts import host_env, python_for
from helm.remote.launch import (
    EXIT_FILE,
    JOBS_DIR,
    LOG_FILE,
    PID_FILE,
    compile_cache_env,
    done_log,
    job_environment,
    kill_command,
    launch_argv,
    launch_command,
    launch_files,
    remote_job_dir,
)
from helm.remote.logstream import LogStream
from helm.remote.secrets import SecretStore, resolve_env
from helm.remote.settings import RemoteSettings
from helm.workspace import Workspace

CHUNK = 1 << 20
ARTIFACT_SUFFIXES = (".txt", ".ptz", ".pt", ".json", ".log")
MAX_HELPER_FAILURES = 3
T = TypeVar("T")


class LaunchError(Exception):
    """The box refused to start the job (bad interpreter, full disk ...): the job fails."""


@dataclass
class WatchContext:
    """What every watcher shares with the dispatcher that runs it (built by the service)."""

    ws: Workspace
    store: Store
    settings: RemoteSettings
    gate: DbGate  # every store call goes through it: the event loop never touches the store
    is_cancelled: Callable[[int], bool]  # an operator asked this job to stop
    ended: Callable[[int, Job | None], Awaitable[None]]  # a try's end is recorded (the row)
    workdirs: dict[str, tuple[int, str]] = field(default_factory=dict)
    """host -> (connection marker, resolved work folder): resolved once per connection."""
    queues: dict[str, Any] = field(default_factory=dict)
    """Slurm host -> its ``slurm.SlurmQueue`` (one squeue per poll for all its jobs)."""
    refused: Callable[[str, str], None] = lambda host, reason: None
    """A host refused a submission for its settings: placement pauses it (the service)."""


class JobWatcher:
    """Drives one job from staging to its recorded end; read by the service for the box,
    ``remote_dir``, ``done`` (its done-marker wake-up) and ``last_seen`` (heartbeats)."""

    def __init__(self, ctx: WatchContext, job: Job, host: Host, box: Box) -> None:
        assert job.id is not None
        self.ctx = ctx
        self.job = job
        self.id: int = job.id
        self.host = host
        self.box = box
        self.log = logging.getLogger(f"helm.remote.job{self.id}")
        self.done = asyncio.Event()  # set by the service when the done marker shows up
        self.remote_dir: str | None = job.remote_dir
        self.last_seen: float | None = None
        self._trouble_since: float | None = None
        self._kill: tuple[str, float, bool] | None = None  # reason, TERM sent at, KILL sent
        self._ws_fault = FaultStreak(self.log, f"job {self.id}: writing to the workspace")

    # Driver -----------------------------------------------------------------------------
    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._drive()
                return
            except asyncio.CancelledError:
                raise
            except BoxError as exc:
                self._trouble_since = self._trouble_since or time.time()
                if isinstance(exc, HostKeyError) or self._unreachable_too_long():
                    await self._give_up(str(exc))
                    return
                self.log.info("job %s: %s; retrying", self.id, exc)
            except LaunchError as exc:
                await self._end(JobState.FAILED, None, f"launch failed: {exc}", None)
                return
            except Exception as exc:
                fault = write_fault(exc)
                if fault is not None:  # our disk is full: the job is fine, wait for room
                    self._ws_fault.failed(fault)
                    await asyncio.sleep(self.ctx.settings.retry_s)
                    continue
                failures += 1
                self.log.exception("job %s: unexpected error", self.id)
                if failures >= MAX_HELPER_FAILURES:
                    await self._end(JobState.FAILED, None, f"helm error: {exc}", None)
                    return
            await asyncio.sleep(self.ctx.settings.retry_s)

    def _unreachable_too_long(self) -> bool:
        since = self._trouble_since
        if self.box.down_since is not None:
            since = min(since or self.box.down_since, self.box.down_since)
        return since is not None and time.time() - since >= self.ctx.settings.lost_after_s

    async def _give_up(self, reason: str) -> None:
        if self._kill is not None and self._kill[0] == "time limit":
            await self._end(JobState.FAILED, None, "time limit exceeded; box unreachable", None)
            return
        self.log.warning("job %s lost: %s", self.id, reason)
        ctx = self.ctx
        job = await self._record(job_queue.lost, ctx.store, ctx.ws.jobs_dir, self.id, reason)
        await ctx.ended(self.id, job)

    async def _record(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store write that must land: retried while the workspace's disk is full (or the
        store says so), any other error raised."""
        while True:
            try:
                result = await self.ctx.gate(fn, *args, **kwargs)
            except Exception as exc:
                fault = write_fault(exc)
                if fault is None:
                    raise
                self._ws_fault.failed(fault)
                await asyncio.sleep(self.ctx.settings.retry_s)
                continue
            self._ws_fault.ok()
            return result

    async def _drive(self) -> None:
        await self.box.ensure()
        if self.job.state == JobState.STAGING and not await self._stage():
            return
        await self._follow()

    # Stage and launch ---------------------------------------------------------------------
    async def _workdir(self) -> str:
        """The host's work folder, resolved and created once per connection."""
        cached = self.ctx.workdirs.get(self.host.name)
        if cached is not None and cached[0] == self.box.connects_marker():
            return cached[1]
        workdir = await self.box.realpath(self.host.workdir)
        await self.box.makedirs(f"{workdir}/{JOBS_DIR}")
        self.ctx.workdirs[self.host.name] = (self.box.connects_marker(), workdir)
        return workdir

    async def _stage(self) -> bool:
        """Upload and launch; a box that refuses a file says why (full or read-only disk)."""
        try:
            return await self._launch()
        except BoxError:
            raise
        except Exception as exc:
            problem = await disk_problem(
                self.box, self.remote_dir or self.host.workdir, host=self.host.name
            )
            if problem is None:
                raise
            raise LaunchError(problem) from exc

    async def _launch(self) -> bool:
        job = self.job
        if self.remote_dir is None:
            # Deterministic (workdir, id, try): a restaged job finds its own pid file, so the
            # folder is only written to the store once the job runs.
            self.remote_dir = remote_job_dir(await self._workdir(), self.id, job.attempts)
        rdir = self.remote_dir
        workdir = rdir.rsplit(f"/{JOBS_DIR}/", 1)[0]
        pid = _pid(await self.box.read_text(f"{rdir}/{PID_FILE}"))
        if pid is None:
            if self.ctx.is_cancelled(self.id):
                await self._end(JobState.CANCELLED, None, "cancelled before it started", None)
                return False
            await self.box.put_tree(Path(job.code_dir), rdir)
            files = launch_files(
                self._environment(workdir),
                launch_argv(python_for(self.host), self.host.launcher, job.gpus, job.entry),
                done_log=done_log(workdir),
            )
            for name, (data, mode) in files.items():  # the env file (0600), then the wrapper
                await self.box.write_bytes(f"{rdir}/{name}", data, mode=mode)
            res = await self.box.run(launch_command(rdir), timeout=60)
            pid = _pid(res.stdout)
            if not res.ok or pid is None:
                raise LaunchError((res.stderr or res.stdout).strip()[-300:] or "no pid")
        started = await self._record(
            job_life.mark_running, self.ctx.store, self.id, pid, job.host, rdir
        )
        if started is not None:
            self.job = started
        self.log.info("job %s running on %s as pid %s", self.id, self.host.name, pid)
        return True

    def _environment(self, workdir: str, *, gpus_from_host: bool = False) -> dict[str, str]:
        """The try's variables; ``gpus_from_host``: the host's scheduler picks the GPUs."""
        job = self.job
        stored = json.loads(job.env_json or "{}")
        env = resolve_env(stored, SecretStore(self.ctx.ws.root).get(f"job:{self.id}"))
        return job_environment(
            env,
            host_env(self.ctx.ws, self.host),
            job_id=self.id,
            seed=job.seed,
            data_dir=self.host.data_dir,
            gpu_ids=None if gpus_from_host else json.loads(job.gpu_ids_json or "[]"),
            workdir=workdir,
        )

    # Follow ---------------------------------------------------------------------------------
    async def _follow(self) -> None:
        assert self.remote_dir is not None and self.job.pid is not None
        rdir, pid = self.remote_dir, self.job.pid
        stream = LogStream(self.ctx.ws.job_dir(self.id) / LOG_FILE, self.job.log_offset)
        s = self.ctx.settings
        next_alive = 0.0  # look for the process at once after a (re)attach
        while True:
            await self._maybe_kill(pid)
            await self._pull(stream, rdir)
            self._trouble_since = None
            self.last_seen = time.time()
            exit_text: str | None = None
            now = time.monotonic()
            if self.done.is_set() or now >= next_alive or self._kill is not None:
                self.done.clear()
                exit_text = await self.box.read_text(f"{rdir}/{EXIT_FILE}")
                if exit_text is None and now >= next_alive:
                    next_alive = now + s.alive_every_s
                    if not await self._alive(pid, rdir):
                        exit_text = await self.box.read_text(f"{rdir}/{EXIT_FILE}")
                        if exit_text is None:
                            await self._pull(stream, rdir)
                            await self._vanished(stream)
                            return
            if exit_text is not None:
                await self._pull(stream, rdir)
                await self._finish(stream, rdir, _int(exit_text))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), s.log_poll_s)

    async def _alive(self, pid: int, rdir: str) -> bool:
        """The wrapper is alive iff /proc/<pid>/cwd is our job folder (zombies have none)."""
        cwd = await self.box.readlink(f"/proc/{pid}/cwd")
        name = rdir.rstrip("/").rsplit("/", 1)[-1]
        return cwd is not None and cwd.rstrip("/").endswith(f"/{JOBS_DIR}/{name}")

    async def _pull(self, stream: LogStream, rdir: str) -> None:
        got = False
        while True:
            data = await self.box.read_from(
                f"{rdir}/{LOG_FILE}", stream.offset, CHUNK, keep_open=True
            )
            if not data:
                break
            stream.append(data)
            got = True
            if len(data) < CHUNK:
                break
        if got:
            await self._record(
                job_life.save_progress, self.ctx.store, self.id, stream.offset, stream.summary
            )
            self.job.log_offset = stream.offset  # a re-drive (after a failed write) starts here

    def _kill_reason(self) -> str | None:
        """Why the try must stop now: an operator's cancel, or its time limit (from its start
        on a node), else None. Boxes and Slurm hosts stop it differently, for these reasons."""
        if self.ctx.is_cancelled(self.id):
            return "cancelled"
        if self.job.started_at and time.time() - self.job.started_at > self.job.time_limit_s:
            return "time limit"
        return None

    async def _maybe_kill(self, pid: int) -> None:
        s = self.ctx.settings
        if self._kill is None:
            reason = self._kill_reason()
            if reason is not None:
                self.log.info("job %s: %s, sending TERM to group %s", self.id, reason, pid)
                await self.box.run(kill_command(pid, "TERM"), timeout=30)
                self._kill = (reason, time.monotonic(), False)
        elif not self._kill[2] and time.monotonic() - self._kill[1] > s.cancel_grace_s:
            self.log.info("job %s: still alive after grace, sending KILL", self.id)
            await self.box.run(kill_command(pid, "KILL"), timeout=30)
            self._kill = (self._kill[0], self._kill[1], True)

    # Endings ----------------------------------------------------------------------------------
    async def _vanished(self, stream: LogStream) -> None:
        if self._kill is not None:
            await self._finish(stream, self.remote_dir or "", None)
            return
        reason = "the job's process is gone and left no exit code"
        problem = await disk_problem(self.box, self.remote_dir or "", host=self.host.name)
        await self._give_up(f"{problem}: {reason}" if problem else reason)

    async def _finish(self, stream: LogStream, rdir: str, exit_code: int | None) -> None:
        summary = stream.finish()
        if rdir:
            await self._fetch_artifacts(rdir, exit_code)
        if self._kill is not None and self._kill[0] == "cancelled":
            state, error = JobState.CANCELLED, "cancelled by request"
        elif self._kill is not None:
            state, error = JobState.FAILED, f"time limit of {self.job.time_limit_s:g}s exceeded"
        elif exit_code == 0:
            state, error = JobState.SUCCEEDED, None
        else:
            last = stream.tail(1).strip()
            error = f"exit code {exit_code}" + (f": {last[-200:]}" if last else "")
            state = JobState.FAILED
            problem = await disk_problem(self.box, rdir, host=self.host.name) if rdir else None
            sign = corrupt_cache_sign(stream.tail(), exit_code)
            if problem is not None:
                error = f"exit code {exit_code}: {problem}"
            elif sign is not None and rdir:
                note = await self._cache_retry(rdir, sign)
                if note is None:  # requeued on a fresh cache
                    self.box.forget(f"{rdir}/{LOG_FILE}")
                    return
                error = f"exit code {exit_code}: {note}"
        await self._end(state, exit_code, error, stream, summary=summary)
        if rdir:
            self.box.forget(f"{rdir}/{LOG_FILE}")

    async def _fetch_artifacts(self, rdir: str, exit_code: int | None) -> None:
        dest = self.ctx.ws.job_dir(self.id) / "artifacts"
        dest.mkdir(parents=True, exist_ok=True)
        for name in await self.box.listdir(f"{rdir}/logs"):
            if name.endswith(ARTIFACT_SUFFIXES):
                await self.box.get(f"{rdir}/logs/{name}", dest / name)
        if exit_code is not None:
            (dest / EXIT_FILE).write_text(f"{exit_code}\n")

    async def _end(
        self,
        state: str,
        exit_code: int | None,
        error: str | None,
        stream: LogStream | None,
        *,
        summary: LogSummary | None = None,
    ) -> None:
        offset = stream.offset if stream is not None else self.job.log_offset
        tail = stream.tail() if stream is not None else None
        job = await self._record(
            job_life.finish,
            self.ctx.store,
            self.id,
            state,
            exit_code=exit_code,
            error=error,
            summary=summary,
            offset=offset,
            tail=tail,
        )
        self.log.info("job %s %s%s", self.id, state, f" ({error})" if error else "")
        await self.ctx.ended(self.id, job)

    # A corrupt compile cache ----------------------------------------------------------------
    async def _cache_retry(self, rdir: str, sign: str) -> str | None:
        """Quarantine helm's compile caches on the box and requeue the job once.

        Returns None when the job was requeued, else the note for its failure (no cache of
        helm's to set aside, or the job had its one cache retry already).
        """
        workdir = rdir.rsplit(f"/{JOBS_DIR}/", 1)[0]
        env = self._environment(workdir)
        # only helm's own folders: a cache the user pointed a job at is theirs to judge
        ours = [v for k, v in compile_cache_env(workdir).items() if env.get(k) == v]
        res = await self.box.run(quarantine_script(ours, f"job{self.id}"), timeout=60)
        moved = [line.split(" -> ", 1) for line in res.stdout.splitlines() if " -> " in line]
        if not moved:
            return f"corrupt compile cache? ({sign}); no cache of helm's to set aside"
        aside = ", ".join(f"{old} as {new}" for old, new in moved)
        note = f"{job_queue.CACHE_RETRY} ({sign}): quarantined {aside}"
        ctx = self.ctx
        job = await self._record(
            job_queue.retry_for_cache, ctx.store, ctx.ws.jobs_dir, self.id, f"{note}; retrying"
        )
        self.log.warning("job %s: %s%s", self.id, note, "; retrying" if job else "")
        if job is None:
            return f"{note} (again: it had its one retry on a fresh cache)"
        await ctx.ended(self.id, job)
        return None


# What a try that died on a corrupt compile cache leaves at the end of its log: the loader's
# words for a truncated or half-written .so (a linker killed mid-write writes no ELF header),
# or the caches' own complaint. Only in a log that shows a compile (inductor or triton).
_CACHE_SIGNS = (
    ("invalid ELF header", re.compile(r"invalid ELF header")),
    ("file too short", re.compile(r"file too short")),
    ("corrupted cache entry", re.compile(r"(?i)corrupt\w*\b.{0,80}cache|cache.{0,80}corrupt")),
    ("killed by SIGBUS", re.compile(r"Signal 7 \(SIGBUS\)|exitcode\s*:\s*-7\b")),
)
_COMPILING = re.compile(r"(?i)inductor|triton")
SIGBUS_EXIT = 128 + 7  # sh's status for a child killed by SIGBUS (a mapped .so cut short)


def corrupt_cache_sign(tail: str, exit_code: int | None) -> str | None:
    """Why a failed try looks like a corrupt compile cache entry, or None.

    A truncated kernel can also kill the process outright with SIGBUS (its pages are mapped
    before they are read), which leaves nothing in the log but the exit status.
    """
    if exit_code == 0 or exit_code is None:
        return None
    if exit_code == SIGBUS_EXIT:
        return "killed by SIGBUS"
    for sign, pattern in _CACHE_SIGNS:
        if pattern.search(tail) and (sign == "killed by SIGBUS" or _COMPILING.search(tail)):
            return sign
    return None


def quarantine_script(folders: list[str], tag: str) -> str:
    """Rename each existing folder to ``<folder>.corrupt-<time>-<tag>`` (kept for inspection;
    the next job starts a fresh one) and print ``<folder> -> <new name>`` for each."""
    lines = ["stamp=$(date +%Y%m%d-%H%M%S)"]
    for folder in folders:
        q = shlex.quote(folder)
        new = f'{q}.corrupt-"$stamp"-{shlex.quote(tag)}'
        lines.append(f'if [ -d {q} ] && mv {q} {new}; then echo {q} "->" {new}; fi')
    return "\n".join(lines + ["exit 0", ""])


def _pid(text: str | None) -> int | None:
    text = (text or "").strip().splitlines()[-1:] or [""]
    return int(text[0]) if text[0].isdigit() else None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
