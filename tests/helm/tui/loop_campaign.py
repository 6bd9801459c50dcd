"""A campaign made by the experiment loop itself: two sweep agents, a run pinned as the base.

Unlike ``tui_campaign`` (rows written by hand), every run here comes from ``run_experiment``:
its commit, code hash, canonical environment, base pin and reference flag, its verdict and
its feed post are the loop's own writes. The job goes through the real queue and the
daemon's record-keeping (``helm.models.job_life``); only the training is replaced: the score
is the run's ``S`` environment value plus ``seed x 1e-4`` (the seed noise), so that the
numbers each test expects are known in advance.

The story is the one issue 16 saw in ``make demo``: the agents sweep ``run.env`` only (one
code hash for every run), a change within the noise is discarded although it scored lowest,
then the operator pins a kept run and both agents re-run it as their reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from golf_task.log_summary import LogSummary
from helm.agents import pins, swarm
from helm.agents import taskrepo as tr
from helm.agents.experiment import ExpRequest, RemoteBackend, run_experiment
from helm.agents.report import ExpResult
from helm.models import job_life
from helm.models.states import JobState
from helm.remote.scheduler import Placement
from helm.workspace import Workspace

DEFAULT_S = 1.30


def fake_score(env: dict[str, str], seed: int | None) -> float:
    """The made-up training: ``S`` (default 1.30) plus ``seed x 1e-4``."""
    return float(env.get("S", DEFAULT_S)) + (seed or 0) * 1e-4


class ScoreBackend:
    """The real job queue and the daemon's result records; the score is ``fake_score``."""

    def submit(self, ws, code_dir, *, env, gpus, seed, agent, run_id, time_limit_s) -> int:  # noqa: ANN001
        job_id = RemoteBackend().submit(
            ws, code_dir, env=env, gpus=gpus, seed=seed, agent=agent, run_id=run_id,
            time_limit_s=time_limit_s,
        )  # fmt: skip
        job_life.claim(ws.store, [Placement(job_id, "fake", (0,))])
        job_life.mark_running(ws.store, job_id, 4242, "fake", f"/fake/{job_id}")
        bpb = fake_score(env, seed)
        summary = LogSummary(
            step=10, total_steps=10, stop_step=10, val_bpb=bpb, val_loss=bpb * 0.7,
            bytes_total=15_000_000, score_line=f"final val_bpb:{bpb:.4f}",
        )  # fmt: skip
        job_life.finish(ws.store, job_id, JobState.SUCCEEDED, exit_code=0, error=None,
                        summary=summary, offset=0, tail=None)  # fmt: skip
        return job_id

    def cancel(self, ws: Workspace, job_id: int) -> None:  # noqa: ARG002
        return None


@dataclass
class Story:
    """The run ids of the story, by what they are."""

    ws: Workspace
    results: dict[str, ExpResult] = field(default_factory=dict)
    pin_id: int | None = None

    def id(self, name: str) -> int:
        run_id = self.results[name].run_id
        assert run_id is not None, name
        return run_id


def exp(ws: Workspace, story: Story, name: str, agent: str, **kw: object) -> ExpResult:
    res = run_experiment(ws, ExpRequest(agent, name, **kw), backend=ScoreBackend())  # type: ignore[arg-type]
    story.results[name] = res
    return res


def build(ws: Workspace, *, pin: bool = True, rerun: bool = True) -> Story:
    """The story; ``pin=False`` stops before the pin, ``rerun=False`` right after it."""
    tr.ensure_task_repo(ws)
    swarm.add_agent(ws, "a1", driver="sweep")
    swarm.add_agent(ws, "a2", driver="sweep")
    story = Story(ws)
    exp(ws, story, "ref a1", "a1")  # 1.3000, reference on the init pin
    exp(ws, story, "ref a2", "a2", seed=2)  # 1.3002, the same config under seed 2
    exp(ws, story, "S 1.28", "a1", env={"S": "1.28"})  # 1.2800 keep
    exp(ws, story, "S 1.2797", "a1", env={"S": "1.2797"})  # 1.2797: within noise, discard
    exp(ws, story, "S 1.29", "a2", env={"S": "1.29"}, seed=2)  # 1.2902 keep
    if not pin:
        return story
    story.pin_id = int(pins.pin_run(ws, story.id("S 1.28"))["id"])
    if not rerun:
        return story
    exp(ws, story, "rerun a1", "a1", seed=5)  # 1.2805, reference on the new base
    exp(ws, story, "rerun a2", "a2", seed=6)  # 1.2806
    exp(ws, story, "S 1.27", "a2", env={"S": "1.27"}, seed=6)  # 1.2706 keep
    return story


def worktree(ws: Workspace, agent: str) -> Path:
    return ws.worktrees_dir / agent
