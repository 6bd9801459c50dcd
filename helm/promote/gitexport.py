"""``--git CLONE --branch NAME``: commit the records folder on a new branch, ready to push.

The commit is made with git's plumbing and a private index (``read-tree`` of the clone's
HEAD, ``hash-object`` per file, ``write-tree``, ``commit-tree``, ``update-ref`` that insists
the branch is new), so the operator's checkout, index and current branch are never touched
and a half-made commit can not exist. helm never pushes: the operator reviews and pushes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path


class GitExportError(RuntimeError):
    """The clone or the branch cannot take the folder; the message says why."""


def _git(clone: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(clone), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise GitExportError(f"git {args[0]} failed in {clone}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _ok(clone: Path, *args: str) -> bool:
    proc = subprocess.run(["git", "-C", str(clone), *args], capture_output=True, check=False)
    return proc.returncode == 0


def check_clone(clone: Path, branch: str) -> None:
    """Fail early (before any GPU time) if the commit could not be made later."""
    if not clone.is_dir():
        raise GitExportError(f"{clone} is not a folder")
    if not _ok(clone, "rev-parse", "--is-inside-work-tree"):
        raise GitExportError(f"{clone} is not a git clone")
    if not _ok(clone, "check-ref-format", "--branch", branch):
        raise GitExportError(f"{branch!r} is not a valid branch name")
    if _ok(clone, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"):
        raise GitExportError(f"branch {branch} already exists in {clone}")
    if not _ok(clone, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"):
        raise GitExportError(f"{clone} has no commit to branch from")
    if not _ok(clone, "var", "GIT_COMMITTER_IDENT"):
        raise GitExportError(f"git has no user.name/user.email for {clone}")


def commit_folder(clone: Path, folder: Path, branch: str, *, message: str) -> str:
    """Commit ``folder`` as ``records/<track>/<name>/`` on new ``branch`` from HEAD."""
    check_clone(clone, branch)
    rel = folder.relative_to(folder.parents[2]).as_posix()  # records/<track>/<date>_<name>
    base = _git(clone, "rev-parse", "HEAD^{commit}")
    if _ok(clone, "cat-file", "-e", f"{base}:{rel}"):
        raise GitExportError(f"{rel} already exists on {clone}'s HEAD")
    with tempfile.TemporaryDirectory(prefix="helm-git-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(clone, "read-tree", base, env=env)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            blob = _git(clone, "hash-object", "-w", "--", str(path))
            name = f"{rel}/{path.relative_to(folder).as_posix()}"
            _git(clone, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=env)
        tree = _git(clone, "write-tree", env=env)
    commit = _git(clone, "commit-tree", tree, "-p", base, "-m", message)
    # the empty old value makes update-ref refuse if the branch appeared meanwhile
    _git(clone, "update-ref", f"refs/heads/{branch}", commit, "")
    return commit
