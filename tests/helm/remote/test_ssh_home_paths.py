"""``~`` in a host's ``--data``, ``--python`` and ``--workdir`` is the box user's home, on a
real loopback sshd: the folders are made in that user's home, the host is added with the
paths as typed (``~/...``, quoted so the local shell leaves them alone), and both the host
check and a job find them."""

from __future__ import annotations

import asyncio
import pwd
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_helpers import Dispatcher, add_ssh_host, read_log, trust, wait_state

from helm.remote.jobs import submit_job
from helm.remote.launch import DATASET_SUBDIR, TOKENIZER_SUBPATH
from helm.remote.loopback import LoopbackSshd
from helm.workspace import Workspace

JOB = """
import os
print("wrapped", os.environ.get("HELM_TEST_WRAPPED"))
for name in ("DATA_PATH", "TOKENIZER_PATH"):
    print(name, os.environ[name], os.path.exists(os.environ[name]))
print("cwd", os.getcwd())
"""


@pytest.fixture
def box_home(sshd: LoopbackSshd) -> Iterator[tuple[Path, str]]:
    """A folder in the sshd user's home: (its absolute path, the same as ``~/...``)."""
    name = f"helm-test-{uuid.uuid4().hex[:8]}"
    root = Path(pwd.getpwnam(sshd.user).pw_dir) / name
    data = root / "data"
    (data / DATASET_SUBDIR).mkdir(parents=True)
    for shard in ("fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        (data / DATASET_SUBDIR / shard).write_bytes(b"")
    (data / TOKENIZER_SUBPATH).parent.mkdir(parents=True)
    (data / TOKENIZER_SUBPATH).write_bytes(b"")
    python = root / "venv" / "bin" / "python"  # stands for a venv's interpreter
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nHELM_TEST_WRAPPED=yes exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    yield root, f"~/{name}"
    shutil.rmtree(root, ignore_errors=True)


async def test_tilde_paths_are_the_box_users_home(
    ws: Workspace, sshd: LoopbackSshd, box_home: tuple[Path, str], helm
) -> None:
    root, tilde = box_home
    trust(ws, sshd)
    add_ssh_host(
        ws,
        sshd,
        gpus=1,
        data=f"{tilde}/data",
        python=f"{tilde}/venv/bin/python",
        workdir=f"{tilde}/work",
    )
    res = await asyncio.to_thread(helm, "host", "check", "box", "--json")  # it runs its own loop
    check = res.json()
    assert check["python"] == sys.version.split()[0], check
    assert check["data"] == {"train_shards": 1, "val_shards": 1, "tokenizer": True}, check
    assert res.code == 0 or all("torch" in p for p in check["problems"]), check

    job = submit_job(ws, ws.store, {"train_gpt.py": JOB}, time_limit_s=60)
    assert job.id is not None
    async with Dispatcher(ws):
        done = await wait_state(ws, job.id, "succeeded", "failed", "lost", timeout=60)
    log = read_log(ws, job.id)
    assert done.state == "succeeded", (done.error, log)
    assert "wrapped yes\n" in log  # the interpreter under ~ ran the job
    assert f"DATA_PATH {root}/data/{DATASET_SUBDIR} True\n" in log
    assert f"TOKENIZER_PATH {root}/data/{TOKENIZER_SUBPATH} True\n" in log
    assert f"cwd {root}/work/jobs/{job.id}\n" in log
