"""The Slurm commands helm runs, over the same ``Box`` as every other host.

A Slurm host's box is its login node (``SshBox``) or this machine (``LocalBox``): files go to
the work folder on the cluster's shared filesystem exactly as to a box's disk, and every
command here is a POSIX ``sh`` script run there, each value ``shlex.quote``d. What differs
from a box is who starts the wrapper: ``sbatch`` does, on a compute node, whenever Slurm
decides; helm then learns the job's life from ``squeue`` (``--json`` where the cluster's
squeue has it, its ``-O`` text otherwise) and, for jobs squeue has forgotten, ``sacct``.

Submission is idempotent per try folder, like a box's launch: ``mkdir helm.launched`` is the
once-only guard and ``helm.slurm`` keeps the id sbatch printed. A submission cut off between
the two (the connection dropped) is found again by its job name, which names the campaign
and the try folder, so a retry never submits a try twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from helm.remote.backend import Box, BoxError
from helm.remote.launch import box_word
from helm.remote.slurm_conf import SlurmSettings, format_time
from helm.remote.slurm_state import (
    SlurmJob,
    parse_sacct,
    parse_squeue_json,
    parse_squeue_text,
    sacct_fields,
    squeue_text_format,
)
from helm.remote.slurm_words import SbatchRefusal, classify_sbatch_error

ID_FILE = "helm.slurm"  # the Slurm job id of the try in this folder
SLURM_OUT = "slurm.out"  # the batch script's own output (Slurm's messages land here too)
RESTARTED_EXIT = 95  # the wrapper's status when Slurm restarts it: helm makes a fresh try
TIME_GRACE_S = 300  # Slurm's --time is the job's limit plus this: helm's own kill comes first


class SbatchError(Exception):
    """``sbatch`` refused a submission; ``kind`` says whose fault (see ``SbatchRefusal``)."""

    def __init__(self, kind: SbatchRefusal, line: str) -> None:
        super().__init__(line)
        self.kind = kind
        self.line = line


def job_name(campaign_id: str, folder: str) -> str:
    """The Slurm job name of a try: campaign and try folder (``helm-1a2b3c4d-17.2``)."""
    return f"helm-{campaign_id[:8]}-{folder}"


def sbatch_argv(
    settings: SlurmSettings,
    *,
    name: str,
    rdir: str,
    gpus: int,
    time_limit_s: float,
    script: str,
) -> list[str]:
    """The ``sbatch`` command for one try (``--parsable``: it prints only the id)."""
    nodes, per_node = settings.shape(gpus)
    limit = settings.time_limit_s or time_limit_s + TIME_GRACE_S
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--chdir={rdir}",
        f"--output={rdir}/{SLURM_OUT}",
        f"--partition={settings.partition}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--time={format_time(limit)}",
    ]
    if per_node:
        argv.append(f"--gres=gpu:{per_node}")
    if settings.account:
        argv.append(f"--account={settings.account}")
    if settings.qos:
        argv.append(f"--qos={settings.qos}")
    return [*argv, *settings.sbatch_args, f"{rdir}/{script}"]


def submit_script(rdir: str, argv: Sequence[str], name: str) -> str:
    """Submit at most once per try folder and print ``@@id <slurm id>``.

    Already submitted: the id from ``helm.slurm``; cut off after the guard but before the id
    was kept: the job found by name (``@@id``), else the guard is lifted and sbatch runs
    again. sbatch's own words go to stderr and its status is the script's.
    """
    d = shlex.quote(rdir)
    cmd = " ".join(shlex.quote(w) for w in argv)
    q_name = shlex.quote(name)
    return (
        f"cd {d} || exit 97\n"
        f'if [ -s {ID_FILE} ]; then echo "@@id $(cat {ID_FILE})"; exit 0; fi\n'
        "if ! mkdir helm.launched 2>/dev/null; then\n"
        f"  found=$(squeue -h -t all --name={q_name} -o %i 2>/dev/null | head -n 1)\n"
        f'  if [ -n "$found" ]; then echo "$found" > {ID_FILE}; echo "@@id $found"; exit 0; fi\n'
        "fi\n"
        "command -v sbatch >/dev/null 2>&1 || { echo 'sbatch: command not found' >&2; exit 127; }\n"
        # refused: lift the guard, so that a later try in this folder asks sbatch again (a
        # refused request can leave a FAILED job of this name, which must not be adopted)
        f"out=$({cmd}) || {{ rc=$?; rmdir helm.launched; exit $rc; }}\n"
        "id=${out%%;*}\n"
        f'echo "$id" > {ID_FILE}.tmp && mv -f {ID_FILE}.tmp {ID_FILE}\n'
        'echo "@@id $id"\n'
    )


async def submit(box: Box, rdir: str, argv: Sequence[str], name: str) -> str:
    """The Slurm id of the try in ``rdir``, submitting it if needed; SbatchError if refused."""
    res = await box.run(submit_script(rdir, argv, name), timeout=120)
    for line in res.stdout.splitlines():
        if line.startswith("@@id "):
            sid = line[5:].strip()
            if sid.isdigit():
                return sid
    kind, line = classify_sbatch_error(res.exit_status, res.stderr or res.stdout)
    if kind == SbatchRefusal.TRANSIENT:
        raise BoxError(f"{box.name}: {line}")
    raise SbatchError(kind, line)


async def cancel(box: Box, slurm_id: str, *, signal: str | None = None) -> None:
    """``scancel`` the job (all its steps and the batch script); a job already gone is fine."""
    sig = f" --signal={signal} --full" if signal else ""
    await box.run(f"scancel{sig} {shlex.quote(slurm_id)} 2>&1; exit 0\n", timeout=60)


async def reap(
    box: Box, campaign_id: str, live: Callable[[], Awaitable[Collection[str]]]
) -> list[tuple[str, str]]:
    """scancel this campaign's Slurm jobs that are no try helm still follows; returns
    (slurm id, job name) of each.

    A try given up on while its login node was unreachable (lost, and requeued as a fresh
    try) may still be pending or running in Slurm: found by its job name, which names the
    campaign and the try folder. ``live`` gives the folders of the host's live tries; it is
    asked only after the queue is listed, because a try is recorded live before it is
    submitted: any try in the listing was live by then, so a job placed while the listing
    ran is never taken for a stray.
    """
    prefix = job_name(campaign_id, "")
    res = await box.run(
        'squeue -h -u "$(id -un)" -t PD,R,CG,CF,S -o "%i|%j" 2>/dev/null; exit 0\n', timeout=60
    )
    keep_names = {job_name(campaign_id, folder) for folder in await live()}
    strays = []
    for line in res.stdout.splitlines():
        sid, _, name = line.strip().partition("|")
        if sid.isdigit() and name.startswith(prefix) and name not in keep_names:
            strays.append((sid, name))
    for sid, _ in strays:
        await cancel(box, sid)
    return strays


class SlurmQueue:
    """One host's view of its helm jobs in Slurm, read at most once per ``poll_s``.

    Every watcher of the host asks here; one ``squeue`` answers for all of them (a busy
    cluster's controller is shared with everyone else, so helm asks little and rarely).
    The first squeue without ``--json`` switches this queue to the text form for good, and so
    does a ``--json`` that ignores ``-j`` (Slurm 22.05 sends every job of the cluster: on a
    shared controller, thousands, every poll); a cluster without accounting is asked by
    ``sacct`` only once.
    """

    def __init__(self, box: Box, *, poll_s: float = 1.0, foreign_limit: int = 100) -> None:
        self.box = box
        self.poll_s = poll_s
        self.foreign_limit = foreign_limit
        self.watched: set[str] = set()
        self._jobs: dict[str, SlurmJob] = {}
        self._asked: set[str] = set()  # the ids the last read asked about
        self._read_at = -1e18
        self._lock = asyncio.Lock()
        self._json = True
        self._sacct = True

    def watch(self, slurm_id: str) -> None:
        self.watched.add(slurm_id)

    def forget(self, slurm_id: str) -> None:
        self.watched.discard(slurm_id)
        self._jobs.pop(slurm_id, None)

    async def get(self, slurm_id: str, *, fresh: bool = False) -> SlurmJob | None:
        """The job as Slurm last reported it (None: Slurm does not know it)."""
        self.watch(slurm_id)
        async with self._lock:
            stale = time.monotonic() - self._read_at >= self.poll_s
            if fresh or stale or slurm_id not in self._asked:  # a job new since the last read
                self._asked = set(self.watched)
                self._jobs = await self._read(sorted(self._asked))
                self._read_at = time.monotonic()
            return self._jobs.get(slurm_id)

    async def _read(self, ids: list[str]) -> dict[str, SlurmJob]:
        if not ids:
            return {}
        jobs = await self._squeue(ids)
        missing = [i for i in ids if i not in jobs]
        if missing and self._sacct:
            jobs.update(await self._sacct_read(missing))
        return jobs

    async def _squeue(self, ids: list[str]) -> dict[str, SlurmJob]:
        joined = shlex.quote(",".join(ids))
        if self._json:
            res = await self.box.run(f"squeue --json -t all -j {joined}\n", timeout=60)
            if res.ok:
                with contextlib.suppress(ValueError):
                    jobs = parse_squeue_json(res.stdout)
                    if len(jobs) - len(ids) > self.foreign_limit:
                        # this squeue ignores -j with --json (22.05 does) and sent the whole
                        # cluster's queue: the text form asks only for ours from now on
                        self._json = False
                    return {i: jobs[i] for i in ids if i in jobs}
            elif _unknown_ids(res.stderr):
                return {}
            self._json = False  # no --json here (or unreadable): the text form from now on
        fmt = shlex.quote(squeue_text_format())
        res = await self.box.run(f"squeue -h -t all -j {joined} -O {fmt}\n", timeout=60)
        if not res.ok:
            if _unknown_ids(res.stderr):
                return {}
            raise BoxError(f"{self.box.name}: squeue failed: {_last_line(res.stderr)}")
        return parse_squeue_text(res.stdout)

    async def _sacct_read(self, ids: list[str]) -> dict[str, SlurmJob]:
        joined = shlex.quote(",".join(ids))
        fields = shlex.quote(sacct_fields())
        res = await self.box.run(f"sacct -X -n -P -j {joined} -o {fields}\n", timeout=60)
        if not res.ok or "accounting storage is disabled" in (res.stderr + res.stdout):
            self._sacct = False
            return {}
        return parse_sacct(res.stdout)


def _unknown_ids(stderr: str) -> bool:
    return "Invalid job id specified" in stderr


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def rendezvous_prelude() -> list[str]:
    """Wrapper lines that take torchrun's rendezvous from Slurm's environment: the first
    node of the allocation hosts it, on a port derived from the job id (two jobs sharing a
    node do not collide)."""
    return [
        "HELM_NNODES=${SLURM_JOB_NUM_NODES:-1}",
        'HELM_RDZV_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null | head -n 1)',
        "HELM_RDZV_HOST=${HELM_RDZV_HOST:-$(hostname)}",
        "HELM_RDZV_PORT=$((29500 + ${SLURM_JOB_ID:-0} % 20000))",
        "export HELM_NNODES HELM_RDZV_HOST HELM_RDZV_PORT",
    ]


def slurm_command(
    python: str, launcher: str | None, nodes: int, per_node: int, entry: str
) -> tuple[list[str], str]:
    """(prelude lines, command) the wrapper runs on the first node of the allocation.

    One GPU (or none): the interpreter, as on a box. More: one ``srun`` task per node, each a
    torchrun of ``per_node`` processes meeting at the c10d rendezvous on the first node; a
    host's ``--launcher`` template replaces torchrun (``{nproc}``: processes per node; the
    rendezvous is in ``HELM_NNODES``, ``HELM_RDZV_HOST``, ``HELM_RDZV_PORT``).
    """
    if nodes * max(per_node, 1) <= 1:
        return [], " ".join(box_word(w) for w in (python, entry))
    if launcher:
        words = [w.replace("{nproc}", str(per_node)) for w in shlex.split(launcher)]
        run = " ".join(box_word(w) for w in [*words, entry])
    else:
        run = " ".join(
            [
                box_word(python),
                "-m torch.distributed.run",
                '--nnodes="$HELM_NNODES"',
                f"--nproc_per_node={int(per_node)}",
                "--rdzv_backend=c10d",
                '--rdzv_endpoint="$HELM_RDZV_HOST:$HELM_RDZV_PORT"',
                '--rdzv_id="$SLURM_JOB_ID"',
                box_word(entry),
            ]
        )
    srun = 'srun --nodes="$HELM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1'
    return rendezvous_prelude(), f"{srun} {run}"


def restart_guard() -> str:
    """The wrapper's first check under Slurm: a run Slurm restarted on its own (a requeue,
    a failed node) leaves the try's files alone and exits, since helm makes fresh tries."""
    return f'[ "${{SLURM_RESTART_COUNT:-0}}" = 0 ] || exit {RESTARTED_EXIT}'
