"""Queueing, waiting for and cancelling jobs: the whole API the rest of helm needs.

Queueing is just a row: ``submit_job`` snapshots the files into ``jobs/<id>/code/`` and
inserts a ``queued`` Job in the same transaction (the daemon cannot see the row before its
files exist). Everything after that (placement, upload, launch, streaming, results) is the
daemon's; callers only read the store (``wait_for_job``) or write intents
(``request_cancel``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sqlmodel import Session

from helm.models import job_life, job_queue
from helm.models.db import Db, db_of
from helm.models.engine import Store
from helm.models.hosts import find_host
from helm.models.states import JOB_GPU_COUNTS, TERMINAL_JOB
from helm.models.tables import Job
from helm.remote.launch import check_env_keys
from helm.remote.secrets import SecretStore, agent_scope, classify
from helm.workspace import Workspace

VALID_GPUS = JOB_GPU_COUNTS
MAX_SNAPSHOT_BYTES = 200 * 1024 * 1024
_SKIP = {".git", "__pycache__", ".venv", "logs", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

CodeSource = Path | str | Mapping[str, str | bytes] | Iterable[Path | str]


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP or n.endswith(".pyc")}


def snapshot_code(source: CodeSource, dest: Path) -> None:
    """Copy a folder, a {relative path: content} map, or a list of files into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if isinstance(source, str | Path) and Path(source).is_dir():
        shutil.copytree(Path(source), dest, ignore=_ignore, dirs_exist_ok=True)
    elif isinstance(source, Mapping):
        for rel, content in source.items():
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                raise ValueError(f"file {rel!r} would land outside the snapshot")
            target.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            target.write_bytes(data)
    else:
        files = [Path(source)] if isinstance(source, str | Path) else [Path(p) for p in source]
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f} is not a file or folder")
            shutil.copy2(f, dest / f.name)
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if total > MAX_SNAPSHOT_BYTES:
        raise ValueError(
            f"code snapshot is {total / 1e6:.0f} MB (limit {MAX_SNAPSHOT_BYTES / 1e6:.0f} MB): "
            "is a dataset or checkpoint in the folder?"
        )


@contextmanager
def _session(session_or_store: Session | Store) -> Iterator[Session]:
    """The caller's transaction, or a write transaction of its own on a store."""
    if isinstance(session_or_store, Store):
        with session_or_store.write() as s:
            yield s
    else:
        yield session_or_store


def submit_job(
    ws: Workspace,
    session_or_store: Session | Store,
    code: CodeSource,
    *,
    env: Mapping[str, str] | None = None,
    gpus: int = 1,
    seed: int | None = None,
    agent: str | None = None,
    run_id: int | None = None,
    time_limit_s: float = 1800.0,
    priority: int = 0,
    host: str | None = None,
    entry: str = "train_gpt.py",
    max_attempts: int = 3,
    secret_names: Iterable[str] = (),
    secret_scopes: Iterable[str] = (),
) -> Job:
    """Queue the code as a job; returns the inserted (queued) row.

    With a session, the job joins the caller's transaction (a run and its job appear
    together); with a store, it is one transaction of its own. The environment's secrets (the
    one rule, plus ``secret_names``) are stored masked; their values go to the job's secret
    scope, and a value given as ``***`` is the agent's (``agent:NAME``), as its runs carry, or
    that of a ``secret_scopes`` scope (a rerun of another agent's run: ``agent_scope(name)``).
    """
    if gpus not in VALID_GPUS:
        raise ValueError(f"--gpus must be one of {', '.join(map(str, VALID_GPUS))}")
    if time_limit_s <= 0:
        raise ValueError("time limit must be positive")
    env = dict(env or {})
    check_env_keys(env)
    scopes = ([agent_scope(agent)] if agent else []) + list(secret_scopes)
    public, secrets = classify(ws.root, env, names=secret_names, scopes=scopes)
    with _session(session_or_store) as s:
        if host is not None:
            _check_host(db_of(s), host, gpus)
        job = job_queue.insert_job(
            s,
            run_id=run_id,
            agent=agent,
            entry=entry,
            env_json=json.dumps(public),
            gpus=gpus,
            seed=seed,
            time_limit_s=time_limit_s,
            priority=priority,
            host=host,
            max_attempts=max_attempts,
        )
        assert job.id is not None
        code_dir = ws.job_dir(job.id) / "code"
        if code_dir.exists():  # a leftover of a rolled-back submit that got the same id
            shutil.rmtree(code_dir)
        snapshot_code(code, code_dir)
        if not (code_dir / entry).is_file():
            raise ValueError(f"the code has no {entry}")
        job_queue.set_job_code(s, job, str(code_dir))
        SecretStore(ws.root).put(f"job:{job.id}", secrets)
        return job


def _check_host(db: Db, name: str, gpus: int) -> None:
    """A job pinned to a host that does not exist, or has fewer GPUs than it asks for, would
    wait in the queue forever: refuse it when it is queued (ValueError, one line)."""
    host = find_host(db, name)
    if host is None:
        raise ValueError(f"no host {name!r}: `helm host ls` lists them, `helm host add` adds one")
    if host["gpus"] < gpus:
        raise ValueError(f"host {name} has {host['gpus']} GPUs; the job asks for {gpus}")


def request_cancel(ws: Workspace, job_id: int) -> Job:
    """Ask for a job to stop; a queued job is cancelled at once, a running one by the daemon.

    Returns the job as it now is (NotFound if there is none).
    """
    job = job_queue.request_job_cancel(ws.store, job_id)
    if job.state in TERMINAL_JOB:  # cancelled while queued: the daemon never sees it end
        SecretStore(ws.root).drop(f"job:{job_id}")
    return job


def wait_for_job(
    ws: Workspace,
    job_id: int,
    on_progress: Callable[[Job], None] | None = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> Job:
    """Poll the store until the job is over; ``on_progress`` sees every change."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: tuple | None = None
    while True:
        with ws.store.read() as s:
            job = job_life.load_job(s, job_id)
        key = (job.state, job.step, job.log_offset, job.attempts, job.host)
        if key != last:
            last = key
            if on_progress is not None:
                on_progress(job)
        if job.state in TERMINAL_JOB:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.state} after {timeout_s}s")
        time.sleep(poll_s)
