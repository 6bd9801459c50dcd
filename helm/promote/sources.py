"""What a run ran and what it printed: its code, environment, effective seed and log.

Every later step (diff, reuse, the records folder) must talk about the *same* code and
environment the run had, so they all read it here. The task repository's commit is the
source of truth for the code (the run's ``refs/runs/<id>`` keeps it reachable); a run queued
without a commit (``helm job run DIR``) falls back to the snapshot its job ran from. The log
is the script's own log file fetched as an artifact (it starts with the code, as the
competition's logs do), else the streamed stdout.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helm.models.db import NotFound
from helm.models.jobs import find_job
from helm.workspace import Workspace

ENV_FILE = "run.env"
SCRIPT = "train_gpt.py"
SCRIPT_DEFAULT_SEED = 1337  # train_gpt.py's default when neither SEED nor a job seed is set
# Keys that name or place a run but do not change what it computes.
NON_CONFIG_KEYS = frozenset({"SEED", "RUN_ID", "LOG_DIR", "HELM_JOB_ID"})


class SourceError(NotFound):
    """A run's code or its log cannot be found (a missing run is ``NotFound`` itself)."""


def run_env(run: dict[str, Any]) -> dict[str, str]:
    """The run's full environment as recorded (agent env + ``run.env``)."""
    try:
        env = json.loads(run.get("env_json") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def config_env(run: dict[str, Any]) -> dict[str, str]:
    """The environment minus the keys that only name a run: what makes two runs 'the same'."""
    return {k: v for k, v in run_env(run).items() if k not in NON_CONFIG_KEYS}


def _git(repo: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, check=False, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None


def has_commit(ws: Workspace, commit: str | None) -> bool:
    if not commit or not (ws.task_dir / ".git").exists():
        return False
    return _git(ws.task_dir, "cat-file", "-e", f"{commit}^{{commit}}") is not None


def code_files(ws: Workspace, run: dict[str, Any]) -> dict[str, bytes]:
    """The files the run ran (``run.env`` excluded: the environment is compared apart)."""
    commit = run.get("commit")
    if has_commit(ws, commit):
        listing = _git(ws.task_dir, "ls-tree", "-r", "--name-only", commit) or ""
        files: dict[str, bytes] = {}
        for path in listing.splitlines():
            if path == ENV_FILE:
                continue
            proc = subprocess.run(
                ["git", "-C", str(ws.task_dir), "show", f"{commit}:{path}"],
                capture_output=True,
                check=False,
            )
            if proc.returncode == 0:
                files[path] = proc.stdout
        return files
    with ws.db(write=False) as db:
        job = find_job(db, run.get("job_id"))
    code_dir = Path(job["code_dir"]) if job and job.get("code_dir") else None
    if code_dir is None or not code_dir.is_dir():
        raise SourceError(f"run {run['id']} has neither a commit in the task repo nor a code dir")
    return {
        p.relative_to(code_dir).as_posix(): p.read_bytes()
        for p in sorted(code_dir.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.name != ENV_FILE
    }


def script_bytes(ws: Workspace, run: dict[str, Any]) -> bytes:
    files = code_files(ws, run)
    if SCRIPT not in files:
        raise SourceError(f"run {run['id']} has no {SCRIPT}")
    return files[SCRIPT]


def export_code(ws: Workspace, run: dict[str, Any], dest: Path) -> Path:
    """Write the run's files (``run.env`` included) into ``dest`` for a new job."""
    commit = run.get("commit")
    if has_commit(ws, commit):
        from helm.agents.taskrepo import export_commit

        return export_commit(ws.task_dir, commit, dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in code_files(ws, run).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest


def log_path(ws: Workspace, run: dict[str, Any]) -> Path | None:
    """The script's own log (fetched artifact) if there is one, else the streamed stdout."""
    job_id = run.get("job_id")
    if job_id is None:
        return None
    folder = ws.job_dir(int(job_id))
    artifacts = folder / "artifacts"
    if artifacts.is_dir():
        logs = sorted(p for p in artifacts.rglob("*.txt") if p.is_file())
        if logs:
            return max(logs, key=lambda p: p.stat().st_size)
    stdout = folder / "train.log"
    return stdout if stdout.is_file() else None


@dataclass
class LogFacts:
    """What a run's log says, beyond the Run row: the seed it ran and where it was run."""

    path: Path | None
    seed: int | None
    pytorch: str | None
    eval_time_ms: float | None
    hyperparameters: dict[str, str]


def log_facts(ws: Workspace, run: dict[str, Any]) -> LogFacts:
    from golf_task.logs import parse_file

    path = log_path(ws, run)
    if path is None:
        return LogFacts(None, None, None, None, {})
    summary = parse_file(path)
    return LogFacts(
        path, summary.seed, pytorch_version(path), summary.eval_time_ms, summary.hyperparameters
    )


def pytorch_version(path: Path) -> str | None:
    """``Running PyTorch X`` from the banner the script writes (the baseline's format)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Running PyTorch "):
                    return line.split(" ", 2)[2].strip()
    except OSError:
        return None
    return None


def effective_seed(ws: Workspace, run: dict[str, Any], *, read_log: bool = True) -> int | None:
    """The seed the run really used: the job's seed, else its log's, else env/default."""
    if run.get("seed") is not None:
        return int(run["seed"])
    if read_log:
        seed = log_facts(ws, run).seed
        if seed is not None:
            return seed
    env_seed = run_env(run).get("SEED")
    if env_seed is not None and env_seed.strip().isdigit():
        return int(env_seed)
    return SCRIPT_DEFAULT_SEED
