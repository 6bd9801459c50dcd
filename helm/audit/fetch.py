"""Fetching a PR's records folder into the workspace, where the audit and later audits read it.

Every file of the folder the PR's ``train_gpt.py`` sits in, subfolders included (logs often
live in ``logs/``), at the PR's head commit, through the same GitHub client ``helm pin pr``
uses. Model artifacts are skipped: an audit reruns the code, it does not trust the weights.
The folder keeps its own name (``YYYY-MM-DD_Name``, which the validator checks) under
``<home>/audits/<owner>_<repo>_<N>/``, next to ``pr.json`` (title, author, head commit). A
re-audit replaces both: the PR may have changed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from helm.agents.github import DEFAULT_REPO, fetch_pull
from helm.workspace import Workspace


def audits_dir(ws: Workspace) -> Path:
    path = ws.root / "audits"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pr_ref(repo: str, number: int) -> str:
    """The reference pins and audits share: ``owner/name#N``."""
    return f"{repo}#{number}"


def slug(repo: str, number: int) -> str:
    owner, _, name = repo.partition("/")
    return f"{owner}_{name}_{number}"


def fetch_pr(
    ws: Workspace,
    number: int,
    repo: str = DEFAULT_REPO,
    *,
    path: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Download the PR's records folder; returns (the local folder, the PR's metadata)."""
    pr = fetch_pull(number, repo, path=path, transport=transport, recursive=True)
    remote = PurePosixPath(pr.folder)
    name = remote.name if remote.name not in ("", ".") else f"pr-{number}"
    root = audits_dir(ws) / slug(repo, number)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=audits_dir(ws)))
    try:
        dest = staging / name
        dest.mkdir()
        written: list[str] = []
        for p, data in sorted(pr.files.items()):
            rel = PurePosixPath(p).relative_to(remote) if remote.name else PurePosixPath(p)
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                continue  # a path that would escape the folder
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(rel.as_posix())
        meta = {
            "repo": repo,
            "number": number,
            "title": pr.title,
            "author": pr.author,
            "head_sha": pr.head_sha,
            "script_path": pr.script_path,
            "folder": pr.folder,
            "files": written,
        }
        (staging / "pr.json").write_text(json.dumps(meta, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / name, meta
