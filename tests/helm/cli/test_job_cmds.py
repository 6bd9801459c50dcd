"""``helm job``: queueing a folder, listing, showing, following logs, cancelling, and one
end-to-end ``job run --wait`` through a real daemon on a local host; on both store engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm import daemon
from helm.workspace import Workspace

pytestmark = pytest.mark.engines

SCRIPT = """
import os
print("step:1/2 train_loss:3.0000 train_time:5ms step_avg:5.00ms", flush=True)
print("step:2/2 train_loss:2.5000 train_time:10ms step_avg:5.00ms", flush=True)
print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.33000000", flush=True)
print("token", os.environ.get("HF_TOKEN"), "seed", os.environ.get("SEED"))
"""


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    d = tmp_path / "exp"
    d.mkdir()
    (d / "train_gpt.py").write_text(SCRIPT)
    (d / "helper.py").write_text("X = 1\n")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "junk.pyc").write_bytes(b"x")
    return d


def test_run_queues_a_snapshot_and_a_run(helm, ws: Workspace, job_dir: Path) -> None:
    res = helm(
        "job", "run", str(job_dir), "--no-daemon", "--json", "--gpus", "2", "--seed", "5",
        "--env", "HF_TOKEN=hf_x", "--env", "LR=0.1", "--agent", "a1", "-m", "lr sweep",
    )  # fmt: skip
    assert res.code == 0, res.err
    job = res.json()
    assert job["state"] == "queued" and job["gpus"] == 2 and job["seed"] == 5
    assert job["env"] == {"HF_TOKEN": "***", "LR": "0.1"} and job["agent"] == "a1"
    code = ws.job_dir(job["id"]) / "code"
    assert sorted(p.name for p in code.iterdir()) == ["helper.py", "train_gpt.py"]
    runs = helm("runs", "--json").json()
    assert runs[0]["id"] == job["run_id"] and runs[0]["description"] == "lr sweep"
    assert runs[0]["job_id"] == job["id"] and runs[0]["env"] == {"HF_TOKEN": "***", "LR": "0.1"}

    listed = helm("job", "ls", "--json").json()
    assert [j["id"] for j in listed] == [job["id"]]
    shown = helm("job", "show", str(job["id"]), "--json").json()
    assert shown["events"] == []
    assert helm("job", "cancel", str(job["id"])).out.strip() == f"job {job['id']} cancelled"
    assert helm("job", "ls", "--json").json() == []
    assert helm("job", "ls", "--all", "--json").json()[0]["state"] == "cancelled"
    assert helm("runs", "--json").json()[0]["status"] == "cancelled"


def test_run_rejects_bad_input(helm, tmp_path: Path, job_dir: Path) -> None:
    assert helm("job", "run", str(tmp_path / "missing"), "--no-daemon").code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    res = helm("job", "run", str(empty), "--no-daemon")
    assert res.code == 2 and "no train_gpt.py" in res.err
    assert helm("job", "run", str(job_dir), "--gpus", "3", "--no-daemon").code == 2
    res = helm("job", "run", str(job_dir), "--env", "1BAD=x", "--no-daemon")
    assert res.code == 2
    assert helm("job", "show", "99").code == 1
    assert helm("job", "cancel", "99").code == 1


@pytest.mark.slow
def test_run_wait_end_to_end_through_the_daemon(helm, ws: Workspace, job_dir: Path) -> None:
    ws.config_path.write_text("[remote]\ntick_s = 0.05\nlog_poll_s = 0.1\ncheck_every_s = 0\n")
    assert helm("host", "add", "cpu", "--local", "--gpus", "2").code == 0
    try:
        res = helm("job", "run", str(job_dir), "--wait", "--env", "HF_TOKEN=hf_x", "--seed", "9")
        assert res.code == 0, res.err
        assert res.out.splitlines()[-1] == "job 1 succeeded: val_bpb 1.3300"
        assert daemon.is_running(ws) is not None
        log = helm("job", "logs", "1", "-f").out
        assert log.endswith("token hf_x seed 9\n") and log.startswith("step:1/2")
        run = helm("runs", "--json").json()[0]
        assert run["status"] == "done" and run["val_bpb"] == 1.33 and run["host"] == "cpu"
        assert run["gpu_type"] == "cpu" and run["steps"] == 2
        shown = helm("job", "show", "1", "--json").json()
        assert [e["state"] for e in shown["events"]] == ["staging", "running", "succeeded"]
        # a failing script: --wait exits 1 with the reason
        (job_dir / "train_gpt.py").write_text("raise SystemExit('bad config')\n")
        res = helm("job", "run", str(job_dir), "--wait")
        assert res.code == 1 and "job 2 failed: exit code 1: bad config" in res.err
    finally:
        daemon.stop(ws)
