"""Screening on real tiny CPU jobs (issue 17): the experiment loop, the real job queue and
the daemon's dispatcher training ``train_gpt.py`` on a local 2-slot CPU host.

The base is the tiny configuration with a matrix learning rate 10x too low; a candidate
with a learning rate 100x too high loses its screen and gets no full run, one with the
script's own rate wins its screen (by far more than any noise: 3.25 against 3.32 bpb in a
20-step screen) and is promoted to the full run, which the keep rule then keeps.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from golf_task.presets import tiny_env
from helm.agents import swarm
from helm.agents import taskrepo as tr
from helm.agents.experiment import ExpRequest, RemoteBackend, run_experiment
from helm.models.runs import get_run
from helm.models.states import RunStatus
from helm.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))
from dispatch_helpers import Dispatcher, add_local_host  # noqa: E402

# a short schedule without the evaluation extras; the screen runs half of it
FAST = {"ITERATIONS": "40", "WARMDOWN_ITERS": "16", "MUON_MOMENTUM_WARMUP_STEPS": "24"}
FAST |= {"TRAIN_LOG_EVERY": "2", "GPTQ": "0", "TTT": "0", "EVAL_STRIDE": "0"}
FAST |= {"PREQUANT_EVAL": "0"}


def _run(ws: Workspace, run_id: int) -> dict:
    with ws.db(write=False) as db:
        return get_run(db, run_id)


@pytest.mark.slow
async def test_a_losing_screen_is_not_promoted_and_a_winning_one_is(
    ws: Workspace, tiny_data_dir: Path
) -> None:
    add_local_host(ws, "cpu", gpus=2, data=str(tiny_data_dir))
    ws.config_path.write_text("[agents.screen]\nenabled = true\nsteps_frac = 0.5\n")
    tr.ensure_task_repo(ws)
    swarm.add_agent(ws, "a1", env=tiny_env(tiny_data_dir, MATRIX_LR="0.0025", **FAST))
    backend = RemoteBackend()

    def exp(desc: str, **env: str):  # noqa: ANN202
        req = ExpRequest("a1", desc, env=env, seed=1)
        return run_experiment(ws, req, backend=backend, poll_s=0.2)

    async with Dispatcher(ws):
        ref = await asyncio.to_thread(exp, "reference")
        assert ref.verdict == "keep", ref
        bad = await asyncio.to_thread(exp, "lr x1000", MATRIX_LR="2.5")
        good = await asyncio.to_thread(exp, "the script's lr", MATRIX_LR="0.025")

    assert bad.verdict == RunStatus.SCREEN_FAIL, bad
    shot = _run(ws, bad.run_id)
    ref_screen = _run(ws, shot["screen_ref_id"])
    assert shot["screen"] and shot["steps"] == 20 and shot["gpus"] == 1
    assert ref_screen["status"] == RunStatus.SCREENED and ref_screen["commit"] == ref.commit
    assert shot["val_bpb"] > ref_screen["val_bpb"]
    with ws.db(write=False) as db:  # no full run of the loser
        fulls = db.rows("SELECT id, screen_run_id FROM run WHERE screen = :f", {"f": False})
    assert [r["id"] for r in fulls] == [ref.run_id, good.run_id]

    assert good.verdict == "keep", good
    full = _run(ws, good.run_id)
    win = _run(ws, full["screen_run_id"])
    assert win["status"] == RunStatus.SCREEN_PASS and win["screen_ref_id"] == ref_screen["id"]
    assert win["val_bpb"] < ref_screen["val_bpb"] and win["steps"] == 20
    assert full["steps"] == 40 and full["val_bpb"] < ref.val_bpb
    # the screen's score is a screen's: the full run's improvement is the keep rule's
    assert good.screen is not None and good.screen["delta"] < 0
