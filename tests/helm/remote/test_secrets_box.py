"""Secrets on the box: passed to the job through a file that is gone once the job has
started, never written into ``helm-run.sh`` (issue 13: every wrapper on a box kept all the
secrets of its job in clear after the job ended, forever).

Each test runs real jobs on this machine and on the loopback sshd (``backend_ws``); the job
proves it got the secret by printing its SHA-256, never the value.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest
from dispatch_helpers import Dispatcher, read_log, wait_state, wait_until

from helm.remote.jobs import request_cancel, submit_job
from helm.remote.launch import ENV_FILE, RUN_SCRIPT
from helm.workspace import Workspace

BODY = """
import hashlib, os, time
for k in ("HF_TOKEN", "MYSECRET", "HOSTPASSWORD"):
    print(k, hashlib.sha256(os.environ.get(k, "").encode()).hexdigest(), flush=True)
print("env file there:", os.path.exists("{env_file}"), flush=True)
time.sleep({sleep})
"""


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _leaks(folder: Path, values: list[str]) -> list[str]:
    """Every file under ``folder`` that holds one of ``values``."""
    return [
        str(p)
        for p in folder.rglob("*")
        if p.is_file() and any(v.encode() in p.read_bytes() for v in values)
    ]


def _host_secret(ws: Workspace) -> str:
    from helm.models.hosts import get_host
    from helm.remote.secrets import SecretStore

    value = "hostpw-" + secrets.token_hex(8)
    with ws.db(write=False) as db:
        get_host(db, "box")
    SecretStore(ws.root).put("host:box", {"HOSTPASSWORD": value})
    return value


async def _job_ends(ws: Workspace, *, sleep: float, cancel: bool) -> tuple[Path, list[str], str]:
    values = ["hf-" + secrets.token_hex(8), "my-" + secrets.token_hex(8), _host_secret(ws)]
    job = submit_job(
        ws,
        ws.store,
        {"train_gpt.py": BODY.format(env_file=ENV_FILE, sleep=sleep)},
        env={"HF_TOKEN": values[0], "MYSECRET": values[1], "PLAIN": "x"},
        time_limit_s=60,
    )
    assert job.id is not None
    async with Dispatcher(ws):
        running = await wait_until(ws, job.id, lambda j: j.state != "queued" and j.log_offset > 0)
        rdir = Path(running.remote_dir or "")
        # the job is running: its environment file is already gone, the wrapper holds no value
        assert not (rdir / ENV_FILE).exists()
        assert not _leaks(rdir, values)
        if cancel:
            request_cancel(ws, job.id)
        done = await wait_state(ws, job.id, "succeeded", "cancelled", "failed", timeout=30)
    assert done.state == ("cancelled" if cancel else "succeeded"), done.error
    return rdir, values, read_log(ws, job.id)


@pytest.mark.parametrize("cancel", [False, True], ids=["ends", "cancelled"])
async def test_wrapper_keeps_no_secret_after_the_job(backend_ws: Workspace, cancel: bool) -> None:
    rdir, values, log = await _job_ends(backend_ws, sleep=30 if cancel else 0, cancel=cancel)
    for name, value in zip(("HF_TOKEN", "MYSECRET", "HOSTPASSWORD"), values, strict=True):
        assert f"{name} {_sha(value)}" in log  # the job got every secret ...
    assert "env file there: False" in log  # ... and the file was gone before it even started
    script = (rdir / RUN_SCRIPT).read_text()
    assert "PLAIN" not in script and ENV_FILE in script  # no value is inlined, secret or not
    assert not (rdir / ENV_FILE).exists()
    assert _leaks(rdir, values) == []
    assert _leaks(backend_ws.root, values) == [str(backend_ws.root / "secrets.json")]
