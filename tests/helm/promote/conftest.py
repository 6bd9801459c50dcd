"""Fixtures for the promotion tests: runs committed in a real task repository, and (for the
end-to-end tests) a live campaign whose daemon trains tiny models on the local CPU host.

``commit_run`` makes a run the way ``helm exp run`` does (a commit on an agent branch with
its ``run.env``, the code hash, ``refs/runs/<id>``), so diff and promote see exactly what they
see in a campaign; ``train`` then queues it through ``helm.remote.jobs`` and waits for the
daemon to record its result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from golf_task.presets import TINY_CPU_ENV
from helm.agents import taskrepo as tr
from helm.models.runs import canonical_env, get_run, insert_run
from helm.models.states import ENDED_RUN
from helm.workspace import Workspace

# The tiny preset, shortened: 3 s of training, no extra evaluations (the score is the
# round-trip one). About 10-15 s per run on one free core.
FAST_ENV: dict[str, str] = {
    **TINY_CPU_ENV,
    "MAX_WALLCLOCK_SECONDS": "3",
    "EVAL_STRIDE": "0",
    "PREQUANT_EVAL": "0",
    "TTT": "0",
}
# Over the 16,000,000-byte cap by configuration: a 160,000 x 128 BigramHash table at 8 bits
# (random init barely compresses: ~20 MB) that costs almost no compute to train for a second.
OVER_CAP_ENV: dict[str, str] = {
    **FAST_ENV,
    "MAX_WALLCLOCK_SECONDS": "1",
    "BIGRAM_BUCKETS": "160000",
    "BIGRAM_DIM": "128",
    "QUANT_BIGRAM_BITS": "8",
    "GPTQ_LITE": "0",
    "ZSTD_LEVEL": "3",
    # the script's own guard would prune this to fit or refuse to score it; raised so that a
    # run over the competition's cap reaches promotion, as one from a script without the
    # guard (a PR's) would
    "ARTIFACT_CAP": "100000000",
}


def commit_run(
    ws: Workspace,
    *,
    env: dict[str, str],
    seed: int | None = 42,
    agent: str = "t1",
    edit: Callable[[Path], None] | None = None,
    parent: int | None = None,
    description: str = "",
    **fields: Any,
) -> int:
    """Commit the agent's worktree (after ``edit``) with ``env`` as its run.env; insert a Run."""
    wt = tr.ensure_worktree(ws, agent)
    if edit is not None:
        edit(wt)
    tr.write_env(wt, env)
    tree = tr.stage_tree(wt)
    code_hash = tr.code_hash(wt, tree)
    commit = tr.commit_staged(wt, description or "experiment")
    with ws.db(write=True) as db:
        run_id = insert_run(
            db,
            agent=agent,
            parent_id=parent,
            branch=tr.branch_of(agent),
            commit=commit,
            code_hash=code_hash,
            description=description,
            env_json=canonical_env(env),
            seed=seed,
            gpus=1,
            baseline=False,
            **fields,
        )
    tr.keep_ref(wt, run_id, commit)
    return run_id


def wait_run(ws: Workspace, run_id: int, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with ws.db(write=False) as db:
            run = get_run(db, run_id)
        if run["status"] in ENDED_RUN:
            return run
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} unfinished after {timeout_s}s")


def train(ws: Workspace, run_id: int) -> dict[str, Any]:
    """Queue the committed run on the live campaign and wait for its result."""
    from helm.remote.jobs import submit_job

    with ws.db(write=False) as db:
        run = get_run(db, run_id)
    code = tr.export_commit(ws.task_dir, run["commit"], ws.root / f"export-{run_id}")
    submit_job(
        ws,
        ws.store,
        code,
        env=json.loads(run["env_json"]),
        seed=run["seed"],
        agent=run["agent"],
        run_id=run_id,
        time_limit_s=300,
    )
    return wait_run(ws, run_id)


@pytest.fixture
def task_ws(ws: Workspace) -> Workspace:
    tr.ensure_task_repo(ws)
    return ws


@pytest.fixture
def live(task_ws: Workspace, local_fleet) -> Iterator[Workspace]:  # noqa: ANN001
    """A 2-slot local CPU host on the shared tiny data, and a running daemon; stopped (its
    jobs drained first) after the test."""
    with local_fleet(task_ws):
        yield task_ws


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (the tests folder is not a package)."""
    return SimpleNamespace(
        commit_run=commit_run,
        train=train,
        wait_run=wait_run,
        FAST_ENV=FAST_ENV,
        OVER_CAP_ENV=OVER_CAP_ENV,
    )
