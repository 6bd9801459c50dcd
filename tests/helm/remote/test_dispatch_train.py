"""The real thing, small: golf_task's train_gpt.py on the tiny CPU preset, dispatched over
SSH to a host whose ``--data`` holds the tiny dataset of the default tokenizer variant
(``golf_task.variants.DEFAULT_VARIANT``); the job finds it through helm's default DATA_PATH and
TOKENIZER_PATH alone, and the score lands on the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dispatch_helpers import Dispatcher, add_ssh_host, new_run, read_log, run_row, trust, wait_state

from golf_task.data import make_tiny
from golf_task.presets import TINY_CPU_ENV
from golf_task.variants import DEFAULT_VARIANT, VARIANTS, pieces
from helm.models.job_life import load_host
from helm.remote.jobs import submit_job
from helm.remote.loopback import LoopbackSshd
from helm.workspace import Workspace

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def default_variant_data(tiny_data_dir: Path, cross_process_lock) -> Path:  # noqa: ANN001
    """The tiny build of the default variant, cached beside tiny_data_dir (as the golf_task
    data tests do, in the same dir)."""
    out = tiny_data_dir.parent / "data_variants"
    with cross_process_lock(Path(str(out) + ".lock")):
        make_tiny(out, variant=DEFAULT_VARIANT)
    return out


@pytest.mark.slow
async def test_tiny_train_gpt_run_over_ssh(
    ws: Workspace, sshd: LoopbackSshd, default_variant_data: Path
) -> None:
    trust(ws, sshd)
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable, data=str(default_variant_data))
    run_id = new_run(ws, agent="a1", description="tiny over ssh", seed=1337)
    # The tiny preset names sp1024's vocabulary; here the data is the default variant's. The
    # score is the export's round trip: the evaluation extras are the script's tests' concern.
    env = dict(TINY_CPU_ENV, MAX_WALLCLOCK_SECONDS="4", VOCAB_SIZE=str(pieces(DEFAULT_VARIANT)))
    env |= {"EVAL_STRIDE": "0", "TTT": "0"}
    job = submit_job(
        ws,
        ws.store,
        [REPO / "golf_task" / "train_gpt.py"],
        env=env,
        gpus=1,
        seed=1337,
        agent="a1",
        run_id=run_id,
        time_limit_s=300,
    )
    async with Dispatcher(ws) as d:
        with ws.store.read() as s:
            host = load_host(s, "box")
        check = await d.svc.check_host(host)  # what the daemon does periodically
        assert check["reachable"] and check["gpus"] == [] and check["data_ok"], check
        done = await wait_state(ws, job.id or 0, "succeeded", "failed", "lost", timeout=240)
    assert done.state == "succeeded", f"{done.error}\n{read_log(ws, done.id or 0)[-2000:]}"
    assert VARIANTS[DEFAULT_VARIANT].dataset in read_log(ws, done.id or 0)  # what it trained on
    art = ws.job_dir(done.id or 0) / "artifacts"
    assert (art / f"{done.id}.txt").stat().st_size > 0  # the script's own log (RUN_ID = job id)
    assert (art / f"{done.id}.ptz").stat().st_size > 1000  # the compressed model
    run = run_row(ws, run_id)
    assert run["status"] == "done"
    assert run["val_bpb"] is not None and 0 < run["val_bpb"] < 10
    assert run["bytes_total"] and run["bytes_code"] and run["bytes_model"]
    assert run["bytes_total"] == run["bytes_code"] + run["bytes_model"]
    assert run["steps"] and run["steps"] > 0 and run["train_time_ms"]
    assert run["gpu_type"] == "cpu" and run["host"] == "box"
    assert done.step == run["steps"]
