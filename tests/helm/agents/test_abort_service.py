"""The early-abort service: real tiny CPU jobs through the in-process dispatcher, judged by
the service as the daemon runs it; and the experiment loop's handling of an aborted run.

The jobs: two reference runs on a pin (their streamed logs are the base's curves), then at
once a candidate whose matrix learning rate is 100x the default (aborted before its end,
with its evidence in the store and the feed) and a re-run of the reference with another
seed (judged all along, never aborted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from git import Repo

from golf_task.presets import tiny_env
from helm.agents.abort_service import NO_ABORT_ENV, AbortService, load_rule
from helm.agents.config import ConfigError
from helm.agents.early_abort import ABORT, AbortRule, Verdict, judge, read_curve
from helm.agents.experiment import ExpRequest, run_experiment
from helm.models.feed import list_feed
from helm.models.jobs import get_job
from helm.models.pins import add_pin
from helm.models.runs import get_run
from helm.models.states import ENDED_RUN, FINISHED_RUN, JobState, RunStatus
from helm.remote.jobs import submit_job
from helm.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))
from dispatch_helpers import Dispatcher, add_local_host, read_log, wait_state  # noqa: E402

LOG = logging.getLogger("test.abort")
TINY = {"TRAIN_LOG_EVERY": "2", "VAL_LOSS_EVERY": "25", "GPTQ": "0", "TTT": "0"}
TINY |= {"EVAL_STRIDE": "0", "PREQUANT_EVAL": "0", "FINAL_VAL": "0"}  # scored on the export alone
SCRIPT = Path(__file__).resolve().parents[3] / "golf_task" / "train_gpt.py"


def _run(ws: Workspace, run_id: int) -> dict:
    with ws.db(write=False) as db:
        return get_run(db, run_id)


def _job_for(ws: Workspace, data: Path, run_id: int, seed: int, **extra: str) -> int:
    env = tiny_env(data, SEED=seed, **TINY, **extra)
    job = submit_job(ws, ws.store, [SCRIPT], env=env, seed=seed, agent="a1", run_id=run_id,
                     time_limit_s=600)  # fmt: skip
    return int(job.id or 0)


def test_status_aborted_is_ended_not_finished() -> None:
    assert RunStatus.ABORTED in ENDED_RUN and RunStatus.ABORTED not in FINISHED_RUN


def test_the_daemon_hosts_the_service(ws: Workspace) -> None:
    from helm.daemon import load_services

    assert "early-abort" in [s.name for s in load_services(ws, LOG)]


def test_settings_from_config_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert load_rule(path) == AbortRule()
    path.write_text("[agents.abort]\nenabled = false\nk = 3\npatience = 4\n")
    rule = load_rule(path)
    assert not rule.enabled and rule.k == 3.0 and rule.patience == 4
    assert isinstance(rule.patience, int)
    path.write_text("[agents.abort]\nk = true\n")
    with pytest.raises(ConfigError, match="k must be a number"):
        load_rule(path)
    path.write_text("[agents.abort]\nkk = 1\n")
    with pytest.raises(ConfigError, match="unknown keys: kk"):
        load_rule(path)


@pytest.mark.slow
async def test_broken_candidate_aborted_and_seed_rerun_never(
    ws: Workspace, tiny_data_dir: Path
) -> None:
    add_local_host(ws, "cpu", gpus=2, data=str(tiny_data_dir))
    with ws.db(write=True) as db:
        pin = add_pin(db, kind="file", ref="base", commit="c0", pinned_by="test", note=None)
        from helm.models.runs import insert_run

        def run(seed: int, *, baseline: bool, commit: str = "c0") -> int:
            return insert_run(db, agent="a1", commit=commit, base_pin_id=pin["id"],
                              baseline=baseline, seed=seed, description=f"seed {seed}")  # fmt: skip

        refs = [run(1, baseline=True), run(2, baseline=True)]
        broken, rerun = run(3, baseline=False, commit="c1"), run(4, baseline=False)
    svc = AbortService(ws, LOG)
    acted: list[tuple[int, Verdict]] = []
    async with Dispatcher(ws):
        ref_jobs = [_job_for(ws, tiny_data_dir, r, s) for r, s in zip(refs, (1, 2), strict=True)]
        for j in ref_jobs:
            done = await wait_state(ws, j, "succeeded", "failed", "lost", timeout=300)
            assert done.state == "succeeded", read_log(ws, j)[-2000:]
        assert all(_run(ws, r)["status"] == RunStatus.DONE for r in refs)
        b_job = _job_for(ws, tiny_data_dir, broken, 3, MATRIX_LR=str(0.025 * 100))
        r_job = _job_for(ws, tiny_data_dir, rerun, 4)
        while True:
            acted += await asyncio.to_thread(svc.sync)
            with ws.db(write=False) as db:
                states = [get_job(db, j)["state"] for j in (b_job, r_job)]
            if all(s in ("succeeded", "failed", "cancelled", "lost") for s in states):
                break
            await asyncio.sleep(0.3)
    # the broken candidate: aborted mid-run, the job stopped, the evidence kept
    b = _run(ws, broken)
    assert b["status"] == RunStatus.ABORTED, (b, acted)
    with ws.db(write=False) as db:
        assert get_job(db, b_job)["state"] == JobState.CANCELLED
    ev = json.loads(b["verdict_note"])["early_abort"]
    assert ev["state"] == ABORT and ev["value"] > ev["band_high"] + ev["margin"]
    assert 0 < ev["frac_left"] < 1 and ev["gpu_seconds_saved"] > 0
    assert ev["step"] < 50 and b["val_bpb"] is None  # stopped before its end: no score
    with ws.db(write=False) as db:
        posts = [p for p in list_feed(db) if p["run_id"] == broken]
    aborts = [p for p in posts if "aborted" in p["tags"]]
    assert len(aborts) == 1 and f"step {ev['step']}" in aborts[0]["text"]
    assert "base band" in aborts[0]["text"] and "GPU-s saved" in aborts[0]["text"]
    # the seed re-run of the reference: judged to its end, never aborted nor at risk
    r = _run(ws, rerun)
    assert r["status"] == RunStatus.DONE and r["val_bpb"] is not None
    assert all(rid != rerun for rid, _ in acted)
    assert [rid for rid, v in acted if v.state == ABORT] == [broken]
    final = judge(read_curve(read_log(ws, r_job)), list(svc.refs.values()), time_cap_s=120)
    assert final.step is not None and final.state != ABORT  # compared, not skipped
    # references are never judged (they are the base), and the service forgets ended jobs
    assert svc.follows == {} and set(svc.refs) == set(refs)


def test_loop_counts_an_aborted_run_like_a_discard(
    task_ws: Workspace, agent: str, fake_backend_class
) -> None:  # noqa: ANN001
    """The service aborts the job mid-run; the dispatcher then records the cancelled job;
    the run stays ``aborted``, the loop reports it and resets the worktree to the best."""

    class Aborting(fake_backend_class):  # type: ignore[misc, valid-type]
        abort = False

        def submit(self, ws, code_dir, *, env, gpus, seed, agent, run_id, time_limit_s):  # noqa: ANN001
            if not self.abort:
                return super().submit(ws, code_dir, env=env, gpus=gpus, seed=seed, agent=agent,
                                      run_id=run_id, time_limit_s=time_limit_s)  # fmt: skip
            from helm.agents.experiment import RemoteBackend
            from helm.models import job_life

            self.submitted.append({"env": dict(env), "run_id": run_id})
            job_id = RemoteBackend().submit(ws, code_dir, env=env, gpus=gpus, seed=seed,
                                            agent=agent, run_id=run_id, time_limit_s=60)  # fmt: skip
            self.start(ws, job_id)
            with ws.db(write=False) as db:
                job, run = get_job(db, job_id), get_run(db, run_id)
            verdict = Verdict(ABORT, "worse", step=20, value=9.0, band_low=6.0, band_high=6.2,
                              margin=0.4, bad_checks=3, frac_left=0.6, gpu_seconds_saved=12.0)  # fmt: skip
            assert AbortService(ws, LOG)._abort(job, run, verdict)
            with ws.db(write=False) as db:
                assert get_job(db, job_id)["cancel_requested"]
            job_life.finish(ws.store, job_id, JobState.CANCELLED, exit_code=None,
                            error="cancelled", summary=None, offset=0, tail="killed")  # fmt: skip
            return job_id

    backend = Aborting()
    wt = task_ws.worktrees_dir / agent
    ref = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    assert ref.verdict == "keep"
    backend.abort = True
    (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "\n# hopeless\n")
    res = run_experiment(task_ws, ExpRequest(agent, "lr x100", env={"MATRIX_LR": "2.5"},
                                             no_abort=False), backend=backend)  # fmt: skip
    assert res.verdict == "aborted" and "step 20" in res.note and "12 GPU-s saved" in res.note
    run = _run(task_ws, res.run_id)
    assert run["status"] == RunStatus.ABORTED  # the cancelled job did not overwrite it
    note = json.loads(run["verdict_note"])
    assert note["early_abort"]["step"] == 20 and note["note"] == res.note
    assert Repo(wt).head.commit.hexsha == ref.commit  # back on the branch's best
    assert "# hopeless" not in (wt / "train_gpt.py").read_text()
    assert NO_ABORT_ENV not in backend.submitted[-1]["env"]
    with task_ws.db(write=False) as db:
        results = [p for p in list_feed(db, kind="result") if p["run_id"] == res.run_id]
    assert len(results) == 1 and results[0]["text"].startswith(f"run {res.run_id} ABORTED")
    # finalize again (exp wait): reported once
    from helm.agents.experiment import finalize

    assert finalize(task_ws, res.run_id).verdict == "aborted"
    with task_ws.db(write=False) as db:
        assert len([p for p in list_feed(db, kind="result") if p["run_id"] == res.run_id]) == 1
    # --no-abort reaches the job's env (the service skips it), not the run's
    backend.abort = False
    kept = run_experiment(task_ws, ExpRequest(agent, "safe", env={"MATRIX_LR": "0.03"},
                                              no_abort=True), backend=backend)  # fmt: skip
    assert backend.submitted[-1]["env"][NO_ABORT_ENV] == "1"
    assert NO_ABORT_ENV not in json.loads(_run(task_ws, kept.run_id)["env_json"])
