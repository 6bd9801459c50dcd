"""The shell side of a job: its environment, its command line and the scripts that start,
watch and stop it on the box.

A job must outlive the SSH session that started it and the daemon that watches it, and still
tell how it ended. So the launch starts ``helm-run.sh`` under ``setsid`` (a new session and
process group, no controlling terminal, its output in ``train.log``); that wrapper records its
own pid (= the process group id) in ``helm.pid``, runs the training command in the foreground
and, when it ends, writes the exit code to ``helm.exit`` and appends ``<folder> <code>`` to
``<workdir>/done.log`` (one small read per host, from a remembered offset, tells the daemon
which jobs just finished). A job killed
with its wrapper leaves no exit code: that is how a vanished process is told from a finished
one. The wrapper catches TERM (``trap :``), so a cancelled job still records its code.

The job's environment (secrets included) is never written into the wrapper: it travels in
``helm.env`` (mode 0600), which the wrapper sources and deletes before it even records its pid,
so the file is gone before the training process starts, and the launch command deletes it
too once it has waited for the pid (a wrapper that never started, or died at once, leaves
nothing behind). After the job, the box keeps no value of its environment.

Every value that reaches a shell goes through ``shlex.quote``; environment keys must be
shell identifiers. A job's environment therefore can never inject a command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from golf_task.variants import DEFAULT_VARIANT, VARIANTS, dataset_subdir, tokenizer_subpath

RUN_SCRIPT = "helm-run.sh"
ENV_FILE = "helm.env"  # the job's environment, read and removed by the wrapper at its start
PID_FILE = "helm.pid"
EXIT_FILE = "helm.exit"
LOG_FILE = "train.log"
DONE_LOG = "done.log"
JOBS_DIR = "jobs"
CACHE_DIR = "cache"  # compile caches of the campaign's jobs, under the box's work folder
# A host's --data dir holds the data maker's layout; jobs default to the variant that
# train_gpt.py's own defaults read (golf_task.variants.DEFAULT_VARIANT), so both agree.
DATASET_SUBDIR = dataset_subdir(DEFAULT_VARIANT)
TOKENIZER_SUBPATH = tokenizer_subpath(DEFAULT_VARIANT)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_keys(env: Mapping[str, str]) -> None:
    """Refuse keys that are not shell identifiers (they would be parsed as code), and values
    no process environment can hold (NUL bytes, text that is not UTF-8)."""
    for key, value in env.items():
        if not _IDENT.match(key):
            raise ValueError(f"environment key {key!r} is not a valid variable name")
        if "\x00" in value:
            raise ValueError(f"environment value of {key} contains a NUL byte")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"environment value of {key} is not valid UTF-8") from exc


def job_environment(
    job_env: Mapping[str, str],
    host_env: Mapping[str, str],
    *,
    job_id: int,
    seed: int | None,
    data_dir: str | None,
    gpu_ids: Sequence[int] | None,
    workdir: str | None = None,
) -> dict[str, str]:
    """The variables a job sees: host env, then job env, then helm's own defaults (with the
    host's ``workdir``, the campaign's compile caches: ``compile_cache_env``).

    ``gpu_ids`` None: the host's scheduler assigns the GPUs (Slurm sets CUDA_VISIBLE_DEVICES
    itself), so helm sets no CUDA_VISIBLE_DEVICES.
    """
    env = {**host_env, **job_env}
    if workdir:
        for key, value in compile_cache_env(workdir).items():
            env.setdefault(key, value)
    env.setdefault("RUN_ID", str(job_id))
    if seed is not None:
        env["SEED"] = str(seed)
    if data_dir:
        variant = data_variant(env)
        if variant not in VARIANTS:
            raise ValueError(f"DATA_VARIANT={variant!r} is not one of {', '.join(VARIANTS)}")
        base = data_dir.rstrip("/")
        env.setdefault("DATA_PATH", f"{base}/{dataset_subdir(variant)}")
        env.setdefault("TOKENIZER_PATH", f"{base}/{tokenizer_subpath(variant)}")
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
    env["HELM_JOB_ID"] = str(job_id)
    check_env_keys(env)
    return env


def data_variant(env: Mapping[str, str]) -> str:
    """Which layout under a host's --data a job reads: DATA_VARIANT (helm's key; the script
    ignores it) when set, else the one whose tokenizer has the job's VOCAB_SIZE (a 1,024-piece
    configuration reads sp1024), else the default the script itself reads."""
    if "DATA_VARIANT" in env:
        return env["DATA_VARIANT"]
    by_vocab = f"sp{env.get('VOCAB_SIZE', '').strip()}"
    return by_vocab if by_vocab in VARIANTS else DEFAULT_VARIANT


def compile_cache_env(workdir: str) -> dict[str, str]:
    """helm's own compile caches for a box's jobs: ``<workdir>/cache/inductor`` and ``triton``.

    Not the box's shared ``/tmp/torchinductor_<user>``: a compile killed mid-write (helm
    cancels and reaps jobs) can leave a corrupt entry that every later job would load; in a
    folder of helm's, the watcher can quarantine it and retry the job (helm.remote.watcher).
    """
    base = f"{workdir.rstrip('/')}/{CACHE_DIR}"
    return {"TORCHINDUCTOR_CACHE_DIR": f"{base}/inductor", "TRITON_CACHE_DIR": f"{base}/triton"}


def launch_argv(python: str, launcher: str | None, nproc: int, entry: str) -> list[str]:
    """``python entry`` for one process, else the host's launcher or ``torch.distributed.run``.

    A configured launcher is a command template whose ``{nproc}`` is the process count,
    e.g. ``torchrun --standalone --nproc_per_node={nproc}``.
    """
    if nproc <= 1:
        return [python, entry]
    if launcher:
        return [w.replace("{nproc}", str(nproc)) for w in shlex.split(launcher)] + [entry]
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        entry,
    ]


def box_word(value: str) -> str:
    """One quoted shell word for a path on the box, where a leading ``~`` (alone or as
    ``~/...``) is the box user's home, as at a shell there: ``"$HOME"'/rest'``. A host's
    ``--python ~/venv/bin/python`` or ``--data ~/data`` must not reach the box as a folder
    literally named ``~``."""
    if value == "~":
        return '"$HOME"'
    if value.startswith("~/"):
        return '"$HOME"' + shlex.quote(value[1:])
    return shlex.quote(value)


# Variables that hold a path on the box (from the host's --data): ``~`` there is its home.
BOX_PATH_VARS = frozenset({"DATA_PATH", "TOKENIZER_PATH"})


def env_file(env: Mapping[str, str]) -> bytes:
    """``helm.env``: one ``export KEY='value'`` line per variable, for the wrapper to source."""
    check_env_keys(env)
    return "".join(
        f"export {k}={box_word(v) if k in BOX_PATH_VARS else shlex.quote(v)}\n"
        for k, v in env.items()
    ).encode()


def run_script(
    argv: Sequence[str],
    *,
    done_log: str,
    command: str | None = None,
    guard: str | None = None,
    prelude: Sequence[str] = (),
) -> str:
    """The wrapper that runs detached on the box (see the module docstring).

    A Slurm host's wrapper is the batch script (``helm.remote.slurm``): ``command`` is its
    ready-quoted command line (``srun ... torchrun``), ``guard`` its first line (a run Slurm
    restarted on its own leaves the try alone) and ``prelude`` the lines before the command.
    """
    run = command if command is not None else " ".join(box_word(w) for w in argv)
    return "\n".join(
        [
            "#!/bin/sh",
            "# Written by helm. Runs detached (setsid or sbatch); records pid, exit code and a"
            " done marker.",
            *([guard] if guard else []),
            "trap : TERM INT HUP",
            # the environment: read, then deleted before anything else (no value stays here)
            f"[ -f {ENV_FILE} ] || exit 96",
            f". ./{ENV_FILE}",
            f"rm -f {ENV_FILE}",
            f"echo $$ > {PID_FILE}.tmp && mv -f {PID_FILE}.tmp {PID_FILE}",
            # room for the exit code, taken before the job can fill the disk; it is written
            # over in place (1<>: no new block needed), so a full disk cannot lose it
            f"printf '%-16s\\n' '' > {EXIT_FILE}.tmp",
            *prelude,
            f"{run} > {LOG_FILE} 2>&1 < /dev/null",
            "rc=$?",
            f'printf "%-16s" "$rc" 1<> {EXIT_FILE}.tmp && mv -f {EXIT_FILE}.tmp {EXIT_FILE}',
            # one short append (atomic under O_APPEND): "<job folder> <exit code>"
            f'echo "${{PWD##*/}} $rc" >> {shlex.quote(done_log)}',
            "",
        ]
    )


def launch_files(
    env: Mapping[str, str], argv: Sequence[str], *, done_log: str, **wrapper: Any
) -> dict[str, tuple[bytes, int]]:
    """What the launch writes into the job's folder, in order: name -> (bytes, file mode).

    ``wrapper``: ``run_script``'s keywords for a Slurm batch script (command, guard, prelude).
    """
    return {
        ENV_FILE: (env_file(env), 0o600),
        RUN_SCRIPT: (run_script(argv, done_log=done_log, **wrapper).encode(), 0o700),
    }


def launch_command(remote_dir: str, *, wait_s: float = 10.0) -> str:
    """Start the wrapper detached (at most once per folder) and print its pid.

    ``mkdir`` is atomic: if a launch was cut off after starting the job but before the daemon
    heard the pid, the retry finds ``helm.launched`` and only reads the pid file.
    """
    d = shlex.quote(remote_dir)
    tries = max(1, int(wait_s / 0.005))
    return (
        f"cd {d} || exit 97\n"
        "if mkdir helm.launched 2>/dev/null; then\n"
        f"  setsid sh {RUN_SCRIPT} < /dev/null > /dev/null 2>&1 &\n"
        "fi\n"
        "i=0\n"
        f'while [ ! -s {PID_FILE} ] && [ "$i" -lt {tries} ]; do sleep 0.005; i=$((i+1)); done\n'
        # the wrapper deleted it before writing its pid; if it never got that far, no one will
        f"rm -f {ENV_FILE}\n"
        f"cat {PID_FILE}\n"
    )


def kill_command(pgid: int, signal: str) -> str:
    """Signal a job's whole process group (and its leader, should the group be gone)."""
    if signal not in ("TERM", "KILL", "INT"):
        raise ValueError(f"unexpected signal {signal}")
    pgid = int(pgid)
    return f"kill -s {signal} -- -{pgid} 2>/dev/null; kill -s {signal} {pgid} 2>/dev/null; exit 0\n"


def reap_script(jobs_dir: str, keep: Sequence[str], *, min_age_s: int) -> str:
    """TERM the process group of every job folder still running that helm no longer expects.

    A try that was declared lost while its box was unreachable may still be running when the
    box comes back, on GPUs the scheduler has since given to someone else. A folder is a
    stray when its wrapper is alive (``/proc/<pid>/cwd`` is that folder), it has no exit
    code yet, it is not in ``keep`` (the folders of this host's staging and running jobs),
    and its pid file is older than ``min_age_s`` (never a job being launched right now).
    Prints ``<folder> <pid>`` for each one signalled.
    """
    keep_words = " ".join(shlex.quote(k) for k in keep)
    return (
        f"cd {shlex.quote(jobs_dir)} 2>/dev/null || exit 0\n"
        "now=$(date +%s)\n"
        "for d in */; do\n"
        "  d=${d%/}\n"
        f'  case " {keep_words} " in *" $d "*) continue;; esac\n'
        f'  [ -f "$d/{PID_FILE}" ] && [ ! -f "$d/{EXIT_FILE}" ] || continue\n'
        f'  pid=$(cat "$d/{PID_FILE}")\n'
        '  case "$pid" in ""|*[!0-9]*) continue;; esac\n'
        '  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue\n'
        '  [ "${cwd##*/}" = "$d" ] || continue\n'
        f'  [ $((now - $(stat -c %Y "$d/{PID_FILE}"))) -ge {int(min_age_s)} ] || continue\n'
        # -s form: dash's kill takes "--" only after -s SIGNAL
        '  kill -s TERM -- "-$pid" 2>/dev/null && echo "$d $pid"\n'
        "done\n"
        "exit 0\n"
    )


def remote_job_dir(workdir: str, job_id: int, attempt: int) -> str:
    """``<workdir>/jobs/<id>``; a retry gets its own folder so a stray first try can't clash."""
    name = str(job_id) if attempt <= 1 else f"{job_id}.{attempt}"
    return f"{workdir.rstrip('/')}/{JOBS_DIR}/{name}"


def done_log(workdir: str) -> str:
    return f"{workdir.rstrip('/')}/{DONE_LOG}"
