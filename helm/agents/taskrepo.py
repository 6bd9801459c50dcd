"""The task repository, its ``base`` branch, and one git worktree per agent.

Every experiment is a commit, so that any run can be diffed, reproduced, pinned as the base
or promoted: the code *and* its environment, which lives in the tracked file ``run.env``
(``KEY=VALUE`` lines) next to ``train_gpt.py``. Agents work in ``<home>/worktrees/<name>`` on
branch ``agents/<name>``; the files helm writes for them there (``DIRECTIVES.md``,
``program.md``, ``AGENTS.md``, ``CLAUDE.md``) are excluded through the shared
``info/exclude`` so they never enter a commit or a code hash. Every run's commit is also kept
under ``refs/runs/<id>``, so a discarded experiment stays reachable after its branch resets.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from git import Repo
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from helm.models.pins import add_pin, latest_pin
from helm.workspace import Workspace

BASE = "base"
ENV_FILE = "run.env"
HELM_FILES = ("DIRECTIVES.md", "program.md", "AGENTS.md", "CLAUDE.md")
EXCLUDES = (*HELM_FILES, "logs/", "__pycache__/", "*.ptz", "*.pt", "*.pyc")
BUNDLED = ("train_gpt.py",)  # the competition script is standalone: one file
ENV_HEADER = (
    "# The environment of this branch's runs (KEY=VALUE per line), committed with the code.\n"
    "# `helm exp run --env K=V` merges into it; the sweep agent edits it.\n"
)


class TaskRepoError(RuntimeError):
    """The task repository or a worktree cannot be created or changed."""


def branch_of(agent: str) -> str:
    return f"agents/{agent}"


@contextmanager
def repo_lock(ws: Workspace) -> Iterator[None]:
    """Serialise changes to ``base`` and to the worktree list across processes."""
    with open(ws.root / "task.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _configure(repo: Repo) -> None:
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "helm")
        cw.set_value("user", "email", "helm@localhost")
        cw.set_value("gc", "auto", "0")  # never pause an agent's commit for a gc
    exclude = Path(repo.common_dir) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    have = exclude.read_text().splitlines() if exclude.exists() else []
    missing = [p for p in EXCLUDES if p not in have]
    if missing:
        with exclude.open("a") as fh:
            fh.write("\n".join(["# helm", *missing]) + "\n")


def open_task_repo(ws: Workspace) -> Repo:
    try:
        return Repo(ws.task_dir)
    except (InvalidGitRepositoryError, NoSuchPathError) as exc:
        raise TaskRepoError(f"no task repository at {ws.task_dir}; run `helm swarm up`") from exc


def bundled_dir() -> Path:
    """Where the installed ``golf_task`` package (our competition script) lives."""
    import golf_task

    return Path(golf_task.__file__).resolve().parent


def ensure_task_repo(ws: Workspace, source: str | None = None) -> tuple[Repo, bool]:
    """Open the task repository, creating it on first use; returns (repo, created).

    ``source`` (a URL or a path) is cloned; otherwise the repository starts from the bundled
    ``golf_task/train_gpt.py`` plus an empty ``run.env``. Either way ``base`` points at the
    starting commit, the main checkout stays on ``base``, and an ``init`` pin records it.
    """
    ws.ensure()
    with repo_lock(ws):
        if (ws.task_dir / ".git").exists():
            repo = Repo(ws.task_dir)
            created = False
        else:
            repo = _create(ws, source)
            created = True
        _configure(repo)
        if BASE not in repo.heads:
            repo.git.branch(BASE, "HEAD")
        if repo.head.is_detached or repo.active_branch.name != BASE:
            repo.git.checkout(BASE)
    _record_init_pin(ws, repo, source)
    return repo, created


def _create(ws: Workspace, source: str | None) -> Repo:
    if ws.task_dir.exists() and any(ws.task_dir.iterdir()):
        raise TaskRepoError(f"{ws.task_dir} exists and is not a git repository")
    try:
        if source:
            repo = Repo.clone_from(source, ws.task_dir)
            _configure(repo)
            repo.git.checkout("-B", BASE)
            return repo
        ws.task_dir.mkdir(parents=True, exist_ok=True)
        repo = Repo.init(ws.task_dir, initial_branch=BASE)
    except GitCommandError as exc:
        raise TaskRepoError(f"cannot create the task repository: {exc.stderr.strip()}") from exc
    _configure(repo)
    src = bundled_dir()
    for name in BUNDLED:
        shutil.copy2(src / name, ws.task_dir / name)
    (ws.task_dir / ENV_FILE).write_text(ENV_HEADER)
    repo.git.add("-A")
    repo.git.commit("-m", "task: the competition script from golf_task")
    return repo


def _record_init_pin(ws: Workspace, repo: Repo, source: str | None) -> None:
    """The first pin: the starting base (only on a store that has no pin yet)."""
    with ws.db(write=True) as db:
        if latest_pin(db) is not None:
            return
        add_pin(
            db,
            kind="init",
            ref=source or "golf_task",
            commit=repo.commit(BASE).hexsha,
            pinned_by="helm",
            note="the starting base",
        )


# Worktrees ----------------------------------------------------------------------------------------
def ensure_worktree(ws: Workspace, agent: str) -> Path:
    """The agent's worktree on ``agents/<agent>``, created from ``base`` if missing.

    An existing branch is reused (a restarted agent resumes where it stopped); only a missing
    folder is (re)attached.
    """
    repo = open_task_repo(ws)
    path = ws.worktrees_dir / agent
    branch = branch_of(agent)
    with repo_lock(ws):
        if (path / ".git").exists():
            return path
        repo.git.worktree("prune")
        try:
            if branch in repo.heads:
                repo.git.worktree("add", str(path), branch)
            else:
                repo.git.worktree("add", "-b", branch, str(path), BASE)
        except GitCommandError as exc:
            raise TaskRepoError(f"cannot create worktree {path}: {exc.stderr.strip()}") from exc
    return path


def reset_to(wt: Path, commit: str) -> None:
    """Make the worktree exactly ``commit`` (branch included); helm's own files survive."""
    repo = Repo(wt)
    repo.git.reset("--hard", commit)
    repo.git.clean("-fd")


def stage_tree(wt: Path) -> str:
    """Stage every change and return the tree it would commit (no commit made)."""
    repo = Repo(wt)
    repo.git.add("-A")
    return repo.git.write_tree()


def code_hash(wt: Path, tree: str) -> str:
    """A hash of the code in ``tree``: every file but ``run.env`` (the env is hashed apart)."""
    listing = Repo(wt).git.ls_tree("-r", tree)
    h = hashlib.sha256()
    for line in sorted(listing.splitlines()):
        meta, _, path = line.partition("\t")
        if path == ENV_FILE:
            continue
        h.update(f"{path}\0{meta.split()[2]}\n".encode())
    return h.hexdigest()[:20]


def commit_staged(wt: Path, message: str) -> str:
    """Commit what is staged (nothing staged: the current commit)."""
    repo = Repo(wt)
    if repo.is_dirty(index=True, working_tree=False, untracked_files=False):
        repo.git.commit("-m", message or "experiment", "--no-verify")
    return repo.head.commit.hexsha


def keep_ref(wt: Path, run_id: int, commit: str) -> None:
    Repo(wt).git.update_ref(f"refs/runs/{run_id}", commit)


def export_commit(wt: Path, commit: str, dest: Path) -> Path:
    """Write the files of ``commit`` (no .git, no helm files) into ``dest``."""
    data = Repo(wt).git.archive(commit, format="tar", stdout_as_string=False)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def show_file(repo_path: Path, commit: str, path: str) -> str | None:
    try:
        return Repo(repo_path).git.show(f"{commit}:{path}")
    except GitCommandError:
        return None


# run.env ------------------------------------------------------------------------------------------
def parse_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip()
    return env


def read_env(wt: Path) -> dict[str, str]:
    path = wt / ENV_FILE
    return parse_env(path.read_text()) if path.exists() else {}


def render_env(env: dict[str, str]) -> str:
    return ENV_HEADER + "".join(f"{k}={v}\n" for k, v in sorted(env.items()))


def write_env(wt: Path, env: dict[str, str]) -> None:
    path = wt / ENV_FILE
    text = render_env(env)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
