"""The operator's writes: intents into the store, or a ``helm`` command in a subprocess.

Every function here blocks (database lock, subprocess, git) and is only ever called from a
worker thread. Pin and swarm growth go through the ``helm`` command line, the same contract
the agents and scripts use, so the TUI never depends on another package's Python internals;
cancel and stop are plain intents in the store that the daemon acts on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from helm.models.agents import find_agent, update_agent
from helm.models.db import NotFound
from helm.models.directives import send_directive
from helm.models.jobs import find_job
from helm.models.states import TERMINAL_JOB
from helm.workspace import Workspace

CLI_TIMEOUT_S = 120.0


class OpError(Exception):
    """An operation failed; the message is the one line to show the operator."""


def helm_argv(ws: Workspace, *args: str) -> list[str]:
    """``helm ARGS --home ROOT`` with this interpreter (no dependence on PATH)."""
    boot = "import sys; from helm.cli import main; sys.exit(main())"
    return [sys.executable, "-c", boot, *args, "--home", str(ws.root)]


def run_helm(ws: Workspace, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> str:
    """Run a ``helm`` command; its stdout on success, else ``OpError`` with its error line."""
    try:
        proc = subprocess.run(
            helm_argv(ws, *args),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise OpError(f"helm {' '.join(args)}: no answer after {timeout_s:.0f}s") from exc
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise OpError(reason.removeprefix("helm: "))
    return proc.stdout.strip()


# Directives ----------------------------------------------------------------------------------
def broadcast(ws: Workspace, text: str, targets: Sequence[str] | None) -> dict[str, Any]:
    try:
        with ws.db(write=True) as db:
            return send_directive(db, text, targets=list(targets) if targets else None)
    except (ValueError, NotFound) as exc:
        raise OpError(str(exc)) from exc


# Pin ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PinRequest:
    """What ``p`` will pin, parsed from the one input line (see ``parse_pin``)."""

    kind: str  # pr | run | file
    ref: str
    repo: str | None = None
    force: bool = False  # the operator confirmed pinning a PR without a passing audit

    def argv(self) -> list[str]:
        args = ["pin", self.kind, self.ref]
        if self.repo:
            args += ["--repo", self.repo]
        if self.force:
            args.append("--force")
        return args

    def describe(self) -> str:
        if self.kind == "pr":
            return f"PR #{self.ref}" + (f" of {self.repo}" if self.repo else "")
        if self.kind == "run":
            return f"run #{self.ref}"
        return f"file {self.ref}"


_PR = re.compile(r"^(?:pr\s*)?(?:(?P<repo>[\w.-]+/[\w.-]+))?#?(?P<n>\d+)$", re.IGNORECASE)
_RUN = re.compile(r"^(?:run\s*|r)#?(?P<n>\d+)$", re.IGNORECASE)


def parse_pin(text: str, selected_run: int | None) -> PinRequest | None:
    """``374``/``#374``/``owner/repo#374`` → PR; ``run 12``/``r12`` → run; empty → the
    selected run; anything else → a file path. None when there is nothing to pin."""
    text = text.strip()
    if not text:
        return PinRequest("run", str(selected_run)) if selected_run is not None else None
    if m := _RUN.match(text):
        return PinRequest("run", m.group("n"))
    if m := _PR.match(text):
        return PinRequest("pr", m.group("n"), m.group("repo"))
    return PinRequest("file", text)


def pin_warning(ws: Workspace, request: PinRequest) -> str | None:
    """Why pinning this PR is a risk (no audit, or one that did not pass), from the store."""
    if request.kind != "pr":
        return None
    from helm.agents.github import DEFAULT_REPO
    from helm.audit.fetch import pr_ref
    from helm.audit.store import pin_warning as audit_warning

    return audit_warning(ws, pr_ref(request.repo or DEFAULT_REPO, int(request.ref)))


def pin(ws: Workspace, request: PinRequest) -> str:
    return run_helm(ws, *request.argv()) or f"pinned {request.describe()}"


# Jobs and agents --------------------------------------------------------------------------------
def cancel_job(ws: Workspace, job_id: int) -> None:
    """Ask the daemon to cancel a job (a queued one is cancelled at once); ``OpError`` when
    there is no such job or it has already ended."""
    from helm.remote.jobs import request_cancel

    with ws.db(write=False) as db:
        job = find_job(db, job_id)
    if job is None:
        raise OpError(f"no job {job_id}")
    if job["state"] in TERMINAL_JOB:
        raise OpError(f"job {job_id} already {job['state']}")
    request_cancel(ws, job_id)


def stop_agents(ws: Workspace, names: Sequence[str]) -> int:
    """Ask the supervisor to stop agents (``desired = down``); returns how many changed."""
    n = 0
    with ws.db(write=True) as db:
        for name in names:
            agent = find_agent(db, name)
            if agent is not None and agent["desired"] != "down":
                update_agent(db, name, desired="down")
                n += 1
    return n


def add_agents(ws: Workspace, count: int, driver: str) -> str:
    if count < 1:
        raise OpError("add at least one agent")
    # --add, not -n: -n is a target total per driver, so repeating it would add nothing
    return run_helm(ws, "swarm", "up", "--add", str(count), "--driver", driver) or "swarm up"


# Hosts ------------------------------------------------------------------------------------------
def setup_argv(ws: Workspace, host: str, variant: str) -> list[str]:
    """``helm host setup HOST --data VARIANT``: what the fleet pane's setup key runs (the
    TUI streams its output; the command itself is ``helm.cli.host_setup_cmd``)."""
    return helm_argv(ws, "host", "setup", host, "--data", variant)


# Diff -------------------------------------------------------------------------------------------
def diff_text(ws: Workspace, a: int, b: int | None) -> tuple[str, str]:
    """``helm diff`` of run ``a`` against ``b`` (or its parent): a title and the full text.

    The same report as the command line (code with line counts, environment, hyperparameters
    and results side by side), so the operator sees one diff wherever they ask for it.
    """
    from helm.models.db import NotFound
    from helm.promote.diff import DiffError, diff_runs
    from helm.promote.render import render_diff

    try:
        diff = diff_runs(ws, a, b)
    except (DiffError, NotFound) as exc:
        title = f"diff #{b} → #{a}" if b is not None else f"diff of run #{a}"
        return title, f"no diff available: {exc}"
    return f"diff #{diff.b.run_id} → #{diff.a.run_id}", render_diff(diff, patch=True)
