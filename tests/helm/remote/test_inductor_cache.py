"""A compile cache left corrupt by an interrupted write, for real: a tiny CPU job that
``torch.compile``s one function (inductor, gcc), one cached kernel's ELF header zeroed (what a
linker killed mid-write leaves: it writes the header last), then helm's own recovery.

The job is the smallest honest compiled job (one fused kernel, about 10 s to compile on one
core), not train_gpt.py (whose CPU compile takes minutes): the failure lives in the shared
cache, not in the model. The first compile fills a pristine cache once per torch version,
kept beside the other session caches (``HELM_TEST_CACHE``); the test copies it into the box's
cache folder, so a run of the test costs the one compile of the retry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from dispatch_helpers import add_local_host, wait_state

from helm.models import job_life, job_queue
from helm.models.jobs import job_events
from helm.models.tables import Job
from helm.remote.jobs import submit_job
from helm.remote.launch import compile_cache_env
from helm.remote.scheduler import Placement
from helm.remote.watcher import corrupt_cache_sign
from helm.workspace import Workspace

COMPILED_JOB = """\
import torch

kernel = torch.compile(lambda x: (x * 2.0).sin().sum(), dynamic=False)
print("compiled:", float(kernel(torch.arange(64, dtype=torch.float32))))
"""
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def pristine_cache(cross_process_lock) -> Path:  # noqa: ANN001
    """``cache/inductor`` and ``cache/triton`` of one compiled tiny job (built once, shared)."""
    # inductor's cache keys include the interpreter's location: a cache filled by another
    # venv would never be hit, and the corrupt entry never met
    key = f"{sys.version} {sys.executable} {sys.prefix} torch {version('torch')} {COMPILED_JOB}"
    h = hashlib.sha256(key.encode())
    base = Path(os.environ.get("HELM_TEST_CACHE") or Path("/tmp") / "helm-test-cache")
    root = base / f"inductor-{h.hexdigest()[:16]}"
    with cross_process_lock(Path(str(root) + ".lock")):
        if (root / "done").is_file():
            return root / "cache"
        shutil.rmtree(root, ignore_errors=True)
        (root / "run").mkdir(parents=True)
        (root / "run" / "train_gpt.py").write_text(COMPILED_JOB)
        env = {**ENV, **compile_cache_env(str(root))}
        proc = subprocess.run(
            [sys.executable, "train_gpt.py"],
            cwd=root / "run",
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        (root / "done").write_text("ok\n")
        return root / "cache"


def test_corrupt_cache_signs_in_a_log_tail() -> None:
    """What counts as a corrupt cache entry (the slow test below meets the first for real)."""
    elf = "ImportError: /w/cache/inductor/2i/c2ib.main.so: invalid ELF header"
    assert corrupt_cache_sign(elf, 1) == "invalid ELF header"
    assert corrupt_cache_sign("OSError: /w/cache/inductor/x.so: file too short", 1)
    assert corrupt_cache_sign("torch._inductor.exc: ... cache entry is corrupted", 1)
    assert corrupt_cache_sign("step:3/50 train_loss:7.1", 135) == "killed by SIGBUS"
    assert corrupt_cache_sign("ValueError: bad learning rate", 1) is None
    assert corrupt_cache_sign("invalid ELF header", 0) is None  # a job that succeeded


@pytest.mark.engines
def test_the_cache_retry_is_once_per_job_and_not_one_of_its_attempts(ws: Workspace) -> None:
    job = submit_job(ws, ws.store, {"train_gpt.py": "print(1)\n"}, max_attempts=1)
    assert job.id is not None
    note = f"{job_queue.CACHE_RETRY} (invalid ELF header): quarantined /w/cache/inductor as X"

    def try_and_fail() -> Job | None:
        (placed,) = job_life.claim(ws.store, [Placement(job.id or 0, "box", (0,))])
        job_life.mark_running(ws.store, job.id or 0, 4242, "box", f"/w/jobs/{job.id}")
        return job_queue.retry_for_cache(ws.store, ws.jobs_dir, job.id or 0, note)

    again = try_and_fail()
    assert again is not None and again.state == "queued" and again.attempts == 1
    assert again.error == f"requeued after: {note}"
    assert try_and_fail() is None  # its second corrupt cache: the watcher fails it
    with ws.db(write=False) as db:
        messages = [e["message"] for e in job_events(db, job.id)]
    assert messages.count(note) == 1 and "retry 2: once, on a fresh cache" in messages


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_corrupt_inductor_cache_is_quarantined_and_the_job_retried(
    ws: Workspace, pristine_cache: Path, tmp_path: Path
) -> None:
    from dispatch_helpers import Dispatcher

    work = tmp_path / "box"
    add_local_host(ws, gpus=1, workdir=str(work))
    caches = compile_cache_env(str(work))
    inductor = Path(caches["TORCHINDUCTOR_CACHE_DIR"])
    assert inductor.is_relative_to(work)  # helm's own folder, under the campaign's work folder
    shutil.copytree(pristine_cache, inductor.parent)
    victim = sorted(inductor.rglob("*.main.so"))[0]
    with open(victim, "r+b") as fh:
        fh.write(b"\0" * 64)  # the ELF header a killed linker never wrote
    job = submit_job(
        ws, ws.store, {"train_gpt.py": COMPILED_JOB}, env=ENV, time_limit_s=500, max_attempts=1
    )
    assert job.id is not None
    async with Dispatcher(ws):
        done = await wait_state(ws, job.id, "succeeded", "failed", "lost", timeout=550)
    first = (ws.job_dir(job.id) / "train.try1.log").read_text()
    assert "invalid ELF header" in first  # the first try met the corrupt entry for real
    assert done.state == "succeeded", f"{done.error}\n{first[-2000:]}"
    assert done.attempts == 2  # one retry, though max_attempts is 1: it is the cache's
    with ws.db(write=False) as db:
        events = "\n".join(e["message"] for e in job_events(db, job.id))
    assert "corrupt compile cache (invalid ELF header)" in events and "quarantined" in events
    aside = [p for p in inductor.parent.iterdir() if p.name.startswith("inductor.corrupt-")]
    assert len(aside) == 1 and str(aside[0]) in events  # kept for inspection, and named
    assert (aside[0] / victim.relative_to(inductor)).read_bytes()[:64] == b"\0" * 64
    assert any(inductor.rglob("*.main.so"))  # the retry compiled into a fresh folder of helm's
