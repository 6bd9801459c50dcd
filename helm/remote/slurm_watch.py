"""One job's life on a Slurm host: submit, wait in Slurm's queue, stream, record.

The same watcher as a box's (``watcher.JobWatcher``): staging files, streaming the log by
byte offset, fetching artifacts and recording the end are inherited unchanged. Three things
differ, and only they are here:

- Launch: ``sbatch`` instead of ``setsid`` (``slurm.submit``, once per try folder). The try
  stays ``staging`` while Slurm keeps it pending, with Slurm's reason on the job
  (``queue_reason``), and becomes ``running`` when Slurm starts it; so a job's GPU-time is
  counted from its start on a node, not from its submission.
- Liveness: Slurm's state (``slurm.SlurmQueue``, one squeue per poll for the host) instead of
  ``/proc/<pid>``; the compute node is not ours to look into. A try ends when Slurm says so;
  ``helm.exit`` then gives the code (a wrapper killed by a requeue writes one too, so the exit
  file alone never decides).
- Kill: ``scancel``. What Slurm did on its own is mapped by ``slurm_state.judge``: a node
  that failed, a preemption or a requeue is a fresh try (``job_queue.lost``: the try's log set
  aside, a new folder, a new submission), TIMEOUT and OUT_OF_MEMORY fail with that reason, a
  request Slurm will never start fails with Slurm's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from pathlib import Path

from helm.models import job_life, job_queue
from helm.models.states import JobState
from helm.remote.backend import Box, BoxError
from helm.remote.hosts import python_for
from helm.remote.launch import (
    ENV_FILE,
    EXIT_FILE,
    JOBS_DIR,
    LOG_FILE,
    PID_FILE,
    RUN_SCRIPT,
    done_log,
    launch_files,
    remote_job_dir,
)
from helm.remote.logstream import LogStream
from helm.remote.slurm import (
    ID_FILE,
    SLURM_OUT,
    SbatchError,
    SlurmQueue,
    cancel,
    job_name,
    restart_guard,
    sbatch_argv,
    slurm_command,
    submit,
)
from helm.remote.slurm_conf import SlurmSettings
from helm.remote.slurm_state import Outcome, judge
from helm.remote.slurm_words import SbatchRefusal
from helm.remote.watcher import JobWatcher, LaunchError, _int, _pid

GONE_READS = 3  # a try Slurm does not know is lost only after this many reads in a row


def queue_for(ctx_queues: dict, host: str, box: Box, poll_s: float) -> SlurmQueue:
    """The host's shared ``SlurmQueue`` (a new one when its box was replaced)."""
    queue = ctx_queues.get(host)
    if queue is None or queue.box is not box:
        queue = ctx_queues[host] = SlurmQueue(box, poll_s=poll_s)
    return queue


class SlurmJobWatcher(JobWatcher):
    """A ``JobWatcher`` whose launch, liveness and kill go through Slurm."""

    _unseen = 0  # reads in a row that did not find the try's Slurm job

    @property
    def settings(self) -> SlurmSettings:
        settings = SlurmSettings.from_json(self.host.slurm_json)
        if settings is None:
            raise LaunchError(f"host {self.host.name} has no Slurm settings")
        return settings

    @property
    def queue(self) -> SlurmQueue:
        return queue_for(self.ctx.queues, self.host.name, self.box, self.ctx.settings.slurm_poll_s)

    # Launch -----------------------------------------------------------------------------------
    async def _launch(self) -> bool:
        job = self.job
        if self.remote_dir is None:
            self.remote_dir = remote_job_dir(await self._workdir(), self.id, job.attempts)
        rdir = self.remote_dir
        sid = job.backend_id or _digits(await self.box.read_text(f"{rdir}/{ID_FILE}"))
        if sid is None:
            if self.ctx.is_cancelled(self.id):
                await self._end(JobState.CANCELLED, None, "cancelled before it started", None)
                return False
            sid = await self._submit(rdir)
            if sid is None:
                return False
        submitted = await self._record(job_life.mark_submitted, self.ctx.store, self.id, sid, rdir)
        if submitted is not None:
            self.job = submitted
        self.job.backend_id = sid
        self.log.info("job %s submitted to %s as Slurm job %s", self.id, self.host.name, sid)
        return True

    async def _submit(self, rdir: str) -> str | None:
        """Stage the files and sbatch them; None when the host refused (job requeued)."""
        job, settings = self.job, self.settings
        try:
            nodes, per_node = settings.shape(job.gpus)
        except ValueError as exc:
            raise LaunchError(str(exc)) from exc
        workdir = rdir.rsplit(f"/{JOBS_DIR}/", 1)[0]
        await self.box.put_tree(Path(job.code_dir), rdir)
        prelude, command = slurm_command(
            python_for(self.host), self.host.launcher, nodes, per_node, job.entry
        )
        files = launch_files(
            self._environment(workdir, gpus_from_host=True),
            [],
            done_log=done_log(workdir),
            command=command,
            guard=restart_guard(),
            prelude=prelude,
        )
        for name, (data, mode) in files.items():
            await self.box.write_bytes(f"{rdir}/{name}", data, mode=mode)
        folder = rdir.rstrip("/").rsplit("/", 1)[-1]
        name = job_name(self.ctx.ws.campaign_id, folder)
        argv = sbatch_argv(
            settings,
            name=name,
            rdir=rdir,
            gpus=job.gpus,
            time_limit_s=job.time_limit_s,
            script=RUN_SCRIPT,
        )
        try:
            return await submit(self.box, rdir, argv, name)
        except SbatchError as exc:
            await self._scrub(rdir)
            if exc.kind == SbatchRefusal.JOB:
                raise LaunchError(f"sbatch refused: {exc.line}") from exc
            reason = f"host {self.host.name}: {exc.line}"
            self.log.warning("job %s not submitted: %s", self.id, reason)
            self.ctx.refused(self.host.name, reason)
            back = await self._record(job_queue.return_to_queue, self.ctx.store, self.id, reason)
            await self.ctx.ended(self.id, back)
            return None

    # Follow -----------------------------------------------------------------------------------
    async def _follow(self) -> None:
        assert self.remote_dir is not None and self.job.backend_id is not None
        rdir, sid = self.remote_dir, self.job.backend_id
        stream = LogStream(self.ctx.ws.job_dir(self.id) / LOG_FILE, self.job.log_offset)
        s = self.ctx.settings
        next_poll = 0.0
        while True:
            await self._maybe_scancel(sid)
            await self._pull(stream, rdir)
            self._trouble_since = None
            self.last_seen = time.time()
            now = time.monotonic()
            woke = self.done.is_set()
            if woke or now >= next_poll:
                self.done.clear()
                next_poll = now + s.slurm_poll_s
                if await self._judge(stream, rdir, sid, fresh=woke):
                    self.queue.forget(sid)
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), s.log_poll_s)

    async def _judge(self, stream: LogStream, rdir: str, sid: str, *, fresh: bool) -> bool:
        """Act on Slurm's word for the try; True once its end is recorded."""
        found = await self.queue.get(sid, fresh=fresh)
        check = json.loads(self.host.check_json or "{}")
        nodes = (check.get("slurm") or {}).get("partition_nodes")
        verdict = judge(found, partition_nodes=nodes if isinstance(nodes, int) else None)
        outcome = verdict.outcome
        if found is not None:
            self._unseen = 0
        if outcome == Outcome.WAITING:
            reason = found.reason if found is not None else None
            if reason != self.job.queue_reason:
                await self._record(job_queue.note_queue_reason, self.ctx.store, self.id, reason)
                self.job.queue_reason = reason
            return False
        # a try that ended between two reads ran too (a pending one cancelled never had nodes)
        started = found.start_time if found is not None and found.nodes else None
        if self.job.state != JobState.RUNNING and (outcome == Outcome.RUNNING or started):
            await self._started(rdir, sid, started)
        if outcome == Outcome.RUNNING:
            return False
        if outcome != Outcome.GONE or self._unseen >= GONE_READS:
            await self._scrub(rdir)  # the try is over: its environment must not stay behind
        await self._pull(stream, rdir)
        code = await self._exit(rdir)
        if outcome == Outcome.ENDED and code is None:
            await self._fail(stream, rdir, f"{verdict.message}; the wrapper left no exit code")
        elif outcome == Outcome.ENDED or (outcome == Outcome.GONE and code is not None):
            await self._finish(stream, rdir, code)
        elif outcome == Outcome.CANCELLED and self._kill is not None:
            await self._finish(stream, rdir, None)
        elif outcome == Outcome.CANCELLED:
            await self._fail(stream, rdir, f"{verdict.message} (not by helm)")
        elif outcome == Outcome.FAILED:
            await self._fail(stream, rdir, verdict.message)
        elif outcome == Outcome.REFUSED:
            await self._scancel(sid)
            await self._fail(stream, rdir, f"{verdict.message}; {self._request()}")
        elif outcome == Outcome.GONE and self._unseen < GONE_READS:
            self._unseen += 1  # a controller that restarted, a read that raced: ask again
            return False
        else:  # RETRY, or GONE with no exit code: a fresh try
            await self._scancel(sid)
            self.box.forget(f"{rdir}/{LOG_FILE}")
            await self._give_up(verdict.message)
        return True

    async def _started(self, rdir: str, sid: str, at: float | None) -> None:
        pid = _pid(await self.box.read_text(f"{rdir}/{PID_FILE}"))
        running = await self._record(
            job_life.mark_running, self.ctx.store, self.id, pid, self.job.host, rdir, started_at=at
        )
        if running is not None:
            self.job = running
        self.log.info("job %s: Slurm job %s started", self.id, sid)

    def _request(self) -> str:
        """What this try asked of Slurm, in words (for a refusal)."""
        settings = self.settings
        nodes, per_node = settings.shape(self.job.gpus)
        node_word = "node" if nodes == 1 else "nodes"
        return f"asked for {nodes} {node_word} x {per_node} GPUs in partition {settings.partition}"

    async def _scrub(self, rdir: str) -> None:
        """Delete the try's ``helm.env``. The wrapper deletes it as it starts; a try Slurm
        never started (cancelled or refused while pending) would leave it on the shared
        filesystem, secrets and all."""
        await self.box.run(f"rm -f {shlex.quote(f'{rdir}/{ENV_FILE}')}\n", timeout=60)

    async def _exit(self, rdir: str) -> int | None:
        text = await self.box.read_text(f"{rdir}/{EXIT_FILE}")
        return _int(text) if text is not None else None

    async def _fail(self, stream: LogStream, rdir: str, message: str) -> None:
        """The try failed for a reason Slurm gave: record it with Slurm's own last words."""
        summary = stream.finish()
        code = await self._exit(rdir)
        await self._fetch_artifacts(rdir, code)
        last = _last_line(await self.box.read_text(f"{rdir}/{SLURM_OUT}"))
        error = f"{message}: {last}" if last and last not in message else message
        await self._end(JobState.FAILED, code, error, stream, summary=summary)
        self.box.forget(f"{rdir}/{LOG_FILE}")

    # Kill -------------------------------------------------------------------------------------
    async def _maybe_scancel(self, sid: str) -> None:
        """Cancel or time limit: scancel (Slurm sends TERM, then KILL after its KillWait);
        asked again after ``cancel_grace_s`` with KILL should the job still be there."""
        if self._kill is None:
            reason = self._kill_reason()
            if reason is not None:
                self.log.info("job %s: %s, scancel %s", self.id, reason, sid)
                await cancel(self.box, sid)
                self._kill = (reason, time.monotonic(), False)
                self.done.set()  # look at Slurm's state now
        elif (
            not self._kill[2]
            and time.monotonic() - self._kill[1] > self.ctx.settings.cancel_grace_s
        ):
            await cancel(self.box, sid, signal="KILL")
            self._kill = (self._kill[0], self._kill[1], True)

    async def _scancel(self, sid: str) -> None:
        with contextlib.suppress(BoxError):
            await cancel(self.box, sid)


def _digits(text: str | None) -> str | None:
    value = (text or "").strip()
    return value if value.isdigit() else None


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][-200:] if lines else ""
