"""One job's life on its box: stage, launch, stream, and record how it ended.

A watcher holds no state that matters: everything it needs to resume is in the Job row
(``remote_dir``, ``pid``, ``log_offset``) and on the box (``helm.pid``, ``helm.exit``,
``train.log``). So a daemon restart simply starts a fresh watcher per staging or running job,
and a dropped connection is just an exception after which the watcher tries again. A job is
declared ``lost`` only when its box stays unreachable past ``lost_after_s``, or when its
process is gone and left no exit code.

A watcher knows its dispatcher only through a ``WatchContext`` (settings, the store's gate,
cancel requests, what to do once a try has ended), so this module never imports the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from golf_task.log_summary import LogSummary
from helm.models import dispatch
from helm.models.engine import Store
from helm.models.states import JobState
from helm.models.tables import Host, Job
from helm.remote.backend import Box, BoxError, HostKeyError
from helm.remote.gate import DbGate
from helm.remote.hosts import host_env, python_for
from helm.remote.launch import (
    EXIT_FILE,
    JOBS_DIR,
    LOG_FILE,
    PID_FILE,
    RUN_SCRIPT,
    done_log,
    job_environment,
    kill_command,
    launch_argv,
    launch_command,
    remote_job_dir,
    run_script,
)
from helm.remote.logstream import LogStream
from helm.remote.secrets import SecretStore, resolve_env
from helm.remote.settings import RemoteSettings
from helm.workspace import Workspace

CHUNK = 1 << 20
ARTIFACT_SUFFIXES = (".txt", ".ptz", ".pt", ".json", ".log")
MAX_HELPER_FAILURES = 3


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
        job = await ctx.gate(dispatch.lost, ctx.store, ctx.ws.jobs_dir, self.id, reason)
        await ctx.ended(self.id, job)

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
            script = run_script(
                self._environment(),
                launch_argv(python_for(self.host), self.host.launcher, job.gpus, job.entry),
                done_log=done_log(workdir),
            )
            await self.box.write_bytes(f"{rdir}/{RUN_SCRIPT}", script.encode(), mode=0o700)
            res = await self.box.run(launch_command(rdir), timeout=60)
            pid = _pid(res.stdout)
            if not res.ok or pid is None:
                raise LaunchError((res.stderr or res.stdout).strip()[-300:] or "no pid")
        started = await self.ctx.gate(
            dispatch.mark_running, self.ctx.store, self.id, pid, job.host, rdir
        )
        if started is not None:
            self.job = started
        self.log.info("job %s running on %s as pid %s", self.id, self.host.name, pid)
        return True

    def _environment(self) -> dict[str, str]:
        job = self.job
        stored = json.loads(job.env_json or "{}")
        env = resolve_env(stored, SecretStore(self.ctx.ws.root).get(f"job:{self.id}"))
        return job_environment(
            env,
            host_env(self.ctx.ws, self.host),
            job_id=self.id,
            seed=job.seed,
            data_dir=self.host.data_dir,
            gpu_ids=json.loads(job.gpu_ids_json or "[]"),
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
            await self.ctx.gate(
                dispatch.save_progress, self.ctx.store, self.id, stream.offset, stream.summary
            )

    async def _maybe_kill(self, pid: int) -> None:
        s = self.ctx.settings
        if self._kill is None:
            reason = None
            if self.ctx.is_cancelled(self.id):
                reason = "cancelled"
            elif self.job.started_at and time.time() - self.job.started_at > self.job.time_limit_s:
                reason = "time limit"
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
        await self._give_up("the job's process is gone and left no exit code")

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
        job = await self.ctx.gate(
            dispatch.finish,
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


def _pid(text: str | None) -> int | None:
    text = (text or "").strip().splitlines()[-1:] or [""]
    return int(text[0]) if text[0].isdigit() else None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
