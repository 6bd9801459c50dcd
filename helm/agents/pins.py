"""Pinning the base every agent builds on: a community PR, one of our runs, or a file.

A pin is a new commit on ``base`` (never a rewrite: the base's history is the history of
pins) and a ``Pin`` row saying who pinned what and when. Agents notice the new pin before
their next experiment and reset their branch onto it (``experiment.move_onto_base``); an
experiment already running finishes on the old base first.

- ``pin_pr``: the PR's ``train_gpt.py`` becomes the script; the other files of its records
  folder (README, submission.json, logs) go to ``upstream/pr-<N>/`` for agents to read.
- ``pin_run``: the run's whole tree (code and ``run.env``) becomes the base; the pin's ref
  is the run's id (``helm.models.base.pinned_run_id`` reads it; the run is one of the
  base's runs).
- ``pin_file``: a local file becomes ``train_gpt.py``.

A PR or file pin starts from the script's own defaults: ``run.env`` is emptied unless
``keep_env`` is set, since the knobs of one script rarely mean the same in another.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

import httpx
from git import Repo

from helm.agents import taskrepo as tr
from helm.agents.github import DEFAULT_REPO, PullRecord, fetch_pull
from helm.models.base import pin_label
from helm.models.db import Row
from helm.models.feed import post_feed
from helm.models.pins import add_pin, pin_history
from helm.models.runs import find_run
from helm.workspace import Workspace


class PinError(ValueError):
    """The pin cannot be made (unknown run, missing file ...)."""


def _record(ws: Workspace, kind: str, ref: str, commit: str, by: str, note: str | None) -> Row:
    """The pin row and its feed note, in one transaction."""
    with ws.db(write=True) as db:
        pin = add_pin(db, kind=kind, ref=ref, commit=commit, pinned_by=by, note=note)
        text = f"base pinned to {pin_label(pin)} (commit {commit[:10]})" + (
            f": {note}" if note else ""
        )
        post_feed(db, text, agent=None, kind="system")
        return pin


def _commit_on_base(ws: Workspace, message: str, write: dict[str, bytes], keep_env: bool) -> str:
    """Write files into the base checkout and commit them (the caller holds the repo lock)."""
    repo = Repo(ws.task_dir)
    repo.git.checkout(tr.BASE)
    repo.git.reset("--hard", tr.BASE)
    for rel, data in write.items():
        dest = ws.task_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    if not keep_env:
        (ws.task_dir / tr.ENV_FILE).write_text(tr.ENV_HEADER)
    repo.git.add("-A")
    repo.git.commit("--allow-empty", "-m", message, "--no-verify")
    return repo.head.commit.hexsha


def pin_pr(
    ws: Workspace,
    number: int,
    *,
    repo: str = DEFAULT_REPO,
    path: str | None = None,
    by: str = "operator",
    keep_env: bool = False,
    transport: httpx.BaseTransport | None = None,
    confirm: Callable[[PullRecord], None] | None = None,
) -> Row:
    """Fetch PR ``number``'s records folder from GitHub and make its script the base.

    ``confirm`` sees the fetched PR before anything is written and raises to stop the pin
    (the CLI's audit gate: a PR without a passing audit is not pinned unless forced).
    """
    tr.ensure_task_repo(ws)
    pr = fetch_pull(number, repo, path=path, transport=transport)
    if confirm is not None:
        confirm(pr)
    files = {"train_gpt.py": pr.files[pr.script_path]}
    for p, data in pr.files.items():
        if p != pr.script_path:
            files[f"upstream/pr-{number}/{PurePosixPath(p).name}"] = data
    msg = f"pin: PR #{number} ({repo}) {pr.title} by {pr.author} at {pr.head_sha[:10]}"
    with tr.repo_lock(ws):
        commit = _commit_on_base(ws, msg, files, keep_env)
    return _record(ws, "pr", f"{repo}#{number}", commit, by, f"{pr.title} by {pr.author}")


def pin_run(ws: Workspace, run_id: int, *, by: str = "operator") -> Row:
    """Make run ``run_id``'s commit (code and run.env) the new base."""
    tr.ensure_task_repo(ws)
    with ws.db(write=False) as db:
        run = find_run(db, run_id)
    if run is None:
        raise PinError(f"no run {run_id}")
    if not run["commit"]:
        raise PinError(f"run {run_id} has no commit (was it made outside an agent worktree?)")
    repo = Repo(ws.task_dir)
    bpb = f"val_bpb {run['val_bpb']:.4f}" if run["val_bpb"] is not None else "no score"
    msg = f"pin: run {run_id} by {run['agent'] or '?'} ({bpb}): {run['description']}"
    with tr.repo_lock(ws):
        try:
            tree = repo.git.rev_parse(f"{run['commit']}^{{tree}}")
        except Exception as exc:
            raise PinError(
                f"run {run_id}'s commit {run['commit'][:10]} is not in the task repo"
            ) from exc
        commit = repo.git.commit_tree(tree, "-p", tr.BASE, "-m", msg)
        repo.git.checkout(tr.BASE)
        repo.git.reset("--hard", commit)
    note = f"{run['agent'] or '?'}, {bpb}: {run['description']}"
    return _record(ws, "run", str(run_id), commit, by, note)


def pin_file(
    ws: Workspace,
    path: Path | str,
    *,
    by: str = "operator",
    name: str = "train_gpt.py",
    keep_env: bool = False,
) -> Row:
    """Make a local file the base's ``train_gpt.py`` (or ``name``)."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise PinError(f"no such file: {src}")
    tr.ensure_task_repo(ws)
    with tr.repo_lock(ws):
        commit = _commit_on_base(
            ws, f"pin: file {src.name} as {name}", {name: src.read_bytes()}, keep_env
        )
    return _record(ws, "file", str(src.resolve()), commit, by, None)


def history(ws: Workspace, limit: int = 50) -> list[Row]:
    """Pins newest first (``helm pin show``)."""
    with ws.db(write=False) as db:
        return pin_history(db, limit)
