"""Full and read-only disks, for real: a small tmpfs mounted as a box's work folder (over a
real sshd and on this machine) or as the whole workspace under a running daemon.

Each test mounts its own tmpfs (the tests run as root; a box without mount rights fails
loudly rather than pretending) and fills it with a ballast file until the kernel answers
ENOSPC, so every "No space left on device" here is the kernel's own.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dispatch_helpers import (
    FAST,
    Dispatcher,
    add_local_host,
    add_ssh_host,
    job_row,
    new_run,
    read_log,
    run_row,
    trust,
    wait_state,
    wait_until,
)

from helm import daemon
from helm.models.jobs import job_events
from helm.remote.check import parse_check, problems
from helm.remote.jobs import submit_job
from helm.remote.launch import EXIT_FILE
from helm.remote.loopback import LoopbackSshd
from helm.workspace import Workspace

Mount = Callable[..., Path]


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """``tmpfs(path, size="1m", ro=False)`` mounts a fresh tmpfs there; all are unmounted
    (lazily, should a process still hold a file on one) when the test ends."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "1m", *, ro: bool = False) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if ro else "")
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "helm-test", str(path)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            pytest.fail(f"these tests need root to mount a tmpfs: {res.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a ballast file in ``folder`` until the kernel refuses one more page."""
    ballast = folder / "ballast.bin"
    with open(ballast, "wb", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return ballast


def _submit(ws: Workspace, body: str, **kw) -> int:
    kw.setdefault("time_limit_s", 60)
    job = submit_job(ws, ws.store, {"train_gpt.py": body}, **kw)
    assert job.id is not None
    return job.id


def _events(ws: Workspace, job_id: int) -> str:
    with ws.db(write=False) as db:
        return "\n".join(f"{e['state']} {e['message']}" for e in job_events(db, job_id))


# A job that fills its own disk (a checkpoint too many), then fails.
FILLS_DISK = """
import sys
print("writing a checkpoint", flush=True)
try:
    with open("ckpt.bin", "wb", buffering=0) as fh:
        while True:
            fh.write(b"\\0" * 4096)
except OSError as exc:
    sys.stderr.write(f"{exc}\\n")
sys.exit(1)
"""


async def test_job_that_fills_the_box_disk_fails_named_not_lost(
    ws: Workspace, sshd: LoopbackSshd, tmpfs: Mount, tmp_path: Path, helm
) -> None:
    work = tmpfs(tmp_path / "box-fs", "1m")
    trust(ws, sshd)
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable, workdir=str(work))
    job_id = _submit(ws, FILLS_DISK)
    async with Dispatcher(ws):
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=60)
    # it said how it ended (its exit code had room), and why: it was not taken for a
    # vanished process and requeued onto the same full disk
    assert job.state == "failed" and job.attempts == 1, (job.state, job.error)
    assert job.exit_code == 1
    assert "No space left on device" in (job.error or ""), job.error
    assert (work / "jobs" / str(job_id) / EXIT_FILE).read_text().strip() == "1"
    assert "No space left on device" in _events(ws, job_id)
    assert "lost" not in _events(ws, job_id)
    listed = helm("job", "ls", "--all")
    assert listed.code == 0 and "No space left on device" in listed.out
    shown = helm("job", "show", str(job_id))
    assert shown.code == 0 and shown.out.count("No space left on device") >= 2  # error, event


@pytest.mark.parametrize("kind", ["ssh", "local"])
async def test_full_box_disk_refuses_the_launch_by_name(
    ws: Workspace, tmpfs: Mount, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    work = tmpfs(tmp_path / "box-fs", "1m")
    fill(work)
    if kind == "ssh":
        sshd = request.getfixturevalue("sshd")
        trust(ws, sshd)
        add_ssh_host(ws, sshd, gpus=1, python=sys.executable, workdir=str(work))
    else:
        add_local_host(ws, gpus=1, workdir=str(work))
    run_id = new_run(ws, description="no room")
    job_id = _submit(ws, "print('never')\n", run_id=run_id)
    async with Dispatcher(ws):
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=30)
    assert job.state == "failed" and job.attempts == 1
    error = job.error or ""
    assert error.startswith("launch failed: No space left on device on box"), error
    assert str(work) in error and "helm error" not in error
    assert run_row(ws, run_id)["status"] == "crash"


async def test_read_only_work_folder_is_named(
    ws: Workspace, sshd: LoopbackSshd, tmpfs: Mount, tmp_path: Path
) -> None:
    work = tmpfs(tmp_path / "box-ro", "1m", ro=True)
    trust(ws, sshd)
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable, workdir=str(work))
    job_id = _submit(ws, "print('never')\n")
    async with Dispatcher(ws):
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=30)
    assert job.state == "failed" and job.attempts == 1
    error = job.error or ""
    assert error.startswith("launch failed: Read-only file system on box"), error
    assert "not a directory" not in error


def test_host_check_flags_full_read_only_and_unknown_disk(
    ws: Workspace, sshd: LoopbackSshd, tmpfs: Mount, tmp_path: Path, helm
) -> None:
    full = tmpfs(tmp_path / "full", "1m")
    fill(full)
    trust(ws, sshd)
    add_ssh_host(ws, sshd, "full", gpus=1, python=sys.executable, workdir=str(full))
    res = helm("host", "check", "full")
    assert res.code == 1
    assert "0.0 GB free" in res.out and "LOW" in res.out
    assert "problem: low disk space: 0.0 GB free" in res.out
    assert "problem: work folder" in res.out and "No space left on device" in res.out

    ro = tmpfs(tmp_path / "ro", "1m", ro=True)
    add_local_host(ws, "ro", gpus=1, workdir=str(ro / "not-made-yet"))
    res = helm("host", "check", "ro", "--json")
    assert res.code == 1
    found = res.json()["problems"]
    assert any("Read-only file system" in p for p in found), found
    assert res.json()["disk_free_gb"] == 0.0  # measured on the folder above it, not None

    # no free-space figure at all (df missing or failing) is a problem, never "None GB free"
    check = parse_check("@@python\n3.11.2\n@@torch\n2.1 False\n@@disk\n@@setsid\n/bin/setsid\n")
    assert check["disk_free_gb"] is None
    assert "free disk space unknown" in "; ".join(problems(check))
    healthy = helm("host", "check", "full")  # still full: the stored check says so too
    assert healthy.code == 1
    listed = helm("host", "ls")
    assert "low disk space" in listed.out


# The daemon ------------------------------------------------------------------------------------
SLOW_LINES = """
import time
for i in range(60):
    print(f"line {i:03d} " + "y" * 1000, flush=True)
    time.sleep(0.05)
print("final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.5", flush=True)
"""


def _expected_log() -> str:
    lines = "".join(f"line {i:03d} " + "y" * 1000 + "\n" for i in range(60))
    return lines + "final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.5\n"


@pytest.mark.slow
async def test_daemon_survives_a_full_workspace_and_records_the_job_once_space_is_back(
    home: Path, tmpfs: Mount, tmp_path: Path
) -> None:
    tmpfs(home, "16m")
    ws = Workspace(home).ensure()
    settings = ("tick_s", "log_poll_s", "done_poll_s", "alive_every_s", "retry_s")
    ws.config_path.write_text(
        "[remote]\n" + "".join(f"{k} = {getattr(FAST, k)}\n" for k in settings)
    )
    box = tmp_path / "box"  # the box is fine: only the workspace is full
    add_local_host(ws, gpus=1, workdir=str(box))
    run_id = new_run(ws, description="finishes while the workspace is full")
    job_id = _submit(ws, SLOW_LINES, run_id=run_id)
    pid, _ = daemon.start_detached(ws)
    try:
        await wait_until(ws, job_id, lambda j: j.state == "running" and j.log_offset > 0)
        ballast = fill(home)
        exit_file = box / "jobs" / str(job_id) / EXIT_FILE
        deadline = time.monotonic() + 30
        while not exit_file.exists():  # the job ends on its box while nothing can be written
            assert time.monotonic() < deadline, "the job did not finish on its box"
            time.sleep(0.1)
        time.sleep(2.5)  # heartbeats, log copies and store writes fail meanwhile
        os.kill(pid, 0)  # still alive ...
        assert daemon.is_running(ws) == pid  # ... and still holding the workspace
        ballast.unlink()
        freed_at = time.time()
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=30)
        assert job.state == "succeeded" and job.attempts == 1, job.error
        assert read_log(ws, job_id) == _expected_log()  # byte-exact despite failed appends
        assert run_row(ws, run_id)["status"] == "done"
        deadline = time.monotonic() + 10
        while daemon.read_state(ws).get("heartbeat_at", 0) <= freed_at:
            assert time.monotonic() < deadline, "daemon.json is not written again"
            time.sleep(0.1)
        log = (ws.logs_dir / "daemon.log").read_text()
        assert "No space left on device" in log  # said once it could write again
        assert json.loads((home / "daemon.json").read_text())["status"] == "running"
    finally:
        daemon.stop(ws)


async def test_full_workspace_over_ssh_is_waited_out_not_taken_for_the_network(
    ws: Workspace, sshd: LoopbackSshd, tmpfs: Mount, tmp_path: Path
) -> None:
    """The in-process watcher on an SSH box while the workspace's jobs folder is full: the
    artifact's download fails, for longer than ``lost_after_s``. Nothing is counted against
    the job (three "helm error"s used to fail it), and a download that cannot be written
    here is not a dropped connection (each one used to be cut and made again)."""
    logs = tmpfs(ws.jobs_dir, "4m")
    box = tmp_path / "box"
    trust(ws, sshd)
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable, workdir=str(box))
    body = SLOW_LINES + (
        "import os\ntime.sleep(1.5)\nos.makedirs('logs', exist_ok=True)\n"
        "open(f\"logs/{os.environ['RUN_ID']}.txt\", 'w').write('z' * 200_000)\n"
    )
    job_id = _submit(ws, body)
    async with Dispatcher(ws) as d:
        size = len(_expected_log())
        await wait_until(ws, job_id, lambda j: j.log_offset == size)  # its log is all here
        ballast = fill(logs)  # ... but not yet its artifact
        exit_file = box / "jobs" / str(job_id) / EXIT_FILE
        await wait_until(ws, job_id, lambda j: exit_file.exists(), timeout=30)
        await asyncio.sleep(FAST.lost_after_s + 1.0)  # longer than a box may be unreachable
        assert job_row(ws, job_id).state == "running"
        ballast.unlink()
        job = await wait_state(ws, job_id, "succeeded", "failed", "lost", timeout=30)
        assert d.svc.boxes["box"][1].connects == 1  # the connection was never dropped
    assert job.state == "succeeded" and job.attempts == 1, job.error
    assert read_log(ws, job_id) == _expected_log()
    assert (ws.job_dir(job_id) / "artifacts" / f"{job_id}.txt").stat().st_size == 200_000
