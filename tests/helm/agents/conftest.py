"""Fixtures for the swarm's tests: a workspace with a task repository, and a fake backend.

The fake backend stands in for the daemon and the GPUs in the unit tests of the loop (see
``FakeBackend``). The end-to-end tests use the real daemon and real training instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from golf_task.log_summary import LogSummary
from helm.agents import swarm
from helm.agents import taskrepo as tr
from helm.agents.experiment import RemoteBackend
from helm.models import job_life
from helm.models.states import JobState
from helm.remote.scheduler import Placement
from helm.workspace import Workspace

Score = Callable[[dict[str, str], int | None], float | None]
CRASH_LOG = "step:1/10\nTraceback\nRuntimeError: boom"


def default_score(env: dict[str, str], seed: int | None) -> float | None:
    """A smooth bowl around MATRIX_LR=0.04 with a little seed noise; CRASH=1 crashes."""
    if env.get("CRASH") == "1":
        return None
    lr = float(env.get("MATRIX_LR", "0.025"))
    noise = ((seed or 1337) % 7) * 1e-5
    return 1.5 + 40 * (lr - 0.04) ** 2 + noise


class FakeBackend:
    """The real job queue and record-keeping, with the training replaced by ``score``.

    What it fakes: no daemon, no host, no GPU and no training run. What it does not fake:
    the job is queued through the real path (``RemoteBackend`` -> ``helm.remote.jobs``: the
    code snapshot and the job row), then placed, started and ended through the functions the
    daemon's dispatcher calls (``helm.models.job_life.claim``, ``mark_running``, ``finish``
    with a ``LogSummary``), which write the result on the run. Only the score is made up,
    so that the loop's tests run in seconds and their verdicts are known in advance, while
    the records they judge are exactly the daemon's (on both store engines).
    """

    host = "fake"

    def __init__(self, score: Score = default_score, bytes_total: int = 1_234_567) -> None:
        self.score = score
        self.bytes_total = bytes_total
        self.submitted: list[dict] = []
        self.cancelled: list[int] = []

    def submit(self, ws, code_dir, *, env, gpus, seed, agent, run_id, time_limit_s) -> int:  # noqa: ANN001
        assert (Path(code_dir) / "train_gpt.py").is_file()
        assert not (Path(code_dir) / "DIRECTIVES.md").exists()
        self.submitted.append({"env": dict(env), "seed": seed, "run_id": run_id, "agent": agent})
        job_id = RemoteBackend().submit(
            ws,
            code_dir,
            env=env,
            gpus=gpus,
            seed=seed,
            agent=agent,
            run_id=run_id,
            time_limit_s=time_limit_s,
        )
        self.start(ws, job_id)
        self.end(ws, job_id, self.score(env, seed))
        return job_id

    def start(self, ws: Workspace, job_id: int) -> None:
        """The daemon places the job and its process starts (job and run are "running")."""
        job_life.claim(ws.store, [Placement(job_id, self.host, (0,))])
        job_life.mark_running(ws.store, job_id, 4242, self.host, f"/fake/{job_id}")

    def end(self, ws: Workspace, job_id: int, bpb: float | None) -> None:
        """The job ends: scored and succeeded, or (``bpb`` None) failed with a traceback."""
        if bpb is None:
            log = ws.job_dir(job_id) / "train.log"
            log.write_text(CRASH_LOG + "\n")
            job_life.finish(ws.store, job_id, JobState.FAILED, exit_code=1,
                            error="exit 1", summary=LogSummary(step=1, total_steps=10),
                            offset=log.stat().st_size, tail=CRASH_LOG)  # fmt: skip
            return
        summary = LogSummary(
            step=10,
            total_steps=10,
            stop_step=10,
            val_bpb=bpb,
            val_loss=bpb * 0.7,
            bytes_total=self.bytes_total,
            score_line=f"final val_loss:{bpb * 0.7:.4f} val_bpb:{bpb:.4f}",
        )
        job_life.finish(ws.store, job_id, JobState.SUCCEEDED, exit_code=0, error=None,
                        summary=summary, offset=0, tail=None)  # fmt: skip

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
