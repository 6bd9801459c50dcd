"""Fixtures for the swarm's tests: a workspace with a task repository, and a fake backend.

The fake backend stands in for helm/remote and the daemon in the unit tests of the loop: it
records a job and writes a result on the run at once, the way the daemon's dispatch service
does when a real job ends (``helm.remote.records.finish``). The end-to-end tests use the real
daemon and real training instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helm.agents import swarm
from helm.agents import taskrepo as tr
from helm.workspace import Workspace

Score = Callable[[dict[str, str], int | None], float | None]


def default_score(env: dict[str, str], seed: int | None) -> float | None:
    """A smooth bowl around MATRIX_LR=0.04 with a little seed noise; CRASH=1 crashes."""
    if env.get("CRASH") == "1":
        return None
    lr = float(env.get("MATRIX_LR", "0.025"))
    noise = ((seed or 1337) % 7) * 1e-5
    return 1.5 + 40 * (lr - 0.04) ** 2 + noise


class FakeBackend:
    """Queues nothing: every submitted job 'finishes' immediately with ``score(env, seed)``."""

    def __init__(self, score: Score = default_score, bytes_total: int = 1_234_567) -> None:
        self.score = score
        self.bytes_total = bytes_total
        self.submitted: list[dict] = []
        self.cancelled: list[int] = []

    def submit(self, ws, code_dir, *, env, gpus, seed, agent, run_id, time_limit_s) -> int:  # noqa: ANN001
        assert (Path(code_dir) / "train_gpt.py").is_file()
        assert not (Path(code_dir) / "DIRECTIVES.md").exists()
        self.submitted.append({"env": dict(env), "seed": seed, "run_id": run_id, "agent": agent})
        bpb = self.score(env, seed)
        now = time.time()
        with ws.db(write=True) as db:
            job_id = db.insert(
                "INSERT INTO job (run_id, agent, state, code_dir, entry, env_json, gpus, seed, "
                "time_limit_s, priority, gpu_ids_json, attempts, max_attempts, "
                "cancel_requested, log_offset, queued_at, finished_at) VALUES (:r, :a, :s, '', "
                "'train_gpt.py', :e, :g, :seed, 60, 0, '[]', 1, 3, 0, 0, :t, :t)",
                {
                    "r": run_id,
                    "a": agent,
                    "s": "succeeded" if bpb is not None else "failed",
                    "e": json.dumps(env),
                    "g": gpus,
                    "seed": seed,
                    "t": now,
                },
            )
            if bpb is None:
                db.execute(
                    "UPDATE run SET status='crash', tail=:tail, finished_at=:t WHERE id=:id",
                    {"tail": "step:1/10\nTraceback\nRuntimeError: boom", "t": now, "id": run_id},
                )
            else:
                db.execute(
                    "UPDATE run SET status='done', val_bpb=:b, val_loss=:l, bytes_total=:n, "
                    "steps=10, finished_at=:t, host='fake' WHERE id=:id",
                    {"b": bpb, "l": bpb * 0.7, "n": self.bytes_total, "t": now, "id": run_id},
                )
        return job_id

    def cancel(self, ws, job_id: int) -> None:  # noqa: ANN001
        self.cancelled.append(job_id)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def fake_backend_class() -> type[FakeBackend]:
    """The class itself, for tests that subclass it or score differently.

    (Test modules cannot ``from conftest import ...``: with several conftest.py files on
    sys.path, the name resolves to whichever was imported first.)
    """
    return FakeBackend


@pytest.fixture
def task_ws(ws: Workspace) -> Workspace:
    """A workspace whose task repository exists (from the bundled golf_task script)."""
    tr.ensure_task_repo(ws)
    return ws


@pytest.fixture
def agent(task_ws: Workspace) -> str:
    swarm.add_agent(task_ws, "a1", driver="sweep")
    return "a1"
