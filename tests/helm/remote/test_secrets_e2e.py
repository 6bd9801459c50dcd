"""No secret written anywhere, end to end (issue 13's "what must show").

``helm swarm up --env`` and ``helm exp run --env`` / ``--secret`` / config-declared names
with unique random values; two real tiny jobs run by a real daemon on a real loopback SSH box
(the task is a fake ``train_gpt.py`` that prints the SHA-256 of each secret it received, never
the value, then a score). Afterwards, zero occurrences of any value in: every file of the
workspace (the SQLite file and its WAL, the daemon log, job folders, worktrees, the raw
``.git``), every git object of the task repo (``cat-file --batch-all-objects``, so compressed
loose objects too) and ``git log -p --all``, every file of the box's job folders, and what
``helm runs`` / ``context`` / ``job show`` / ``swarm ls`` print. The one place a value may be
is the workspace's secret store (``secrets.json``, 0600), under the agent that owns it: the
agent's later jobs need it, also after a daemon restart (the first job here is queued while no
daemon runs and launched by one started afterwards).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dispatch_helpers import trust

from helm import daemon
from helm.models.jobs import get_job
from helm.remote.launch import ENV_FILE
from helm.remote.loopback import LoopbackSshd
from helm.remote.secrets import SecretStore
from helm.workspace import Workspace

TASK = """
import hashlib, os
for k in ("HF_TOKEN", "OPENAI_APIKEY", "CORP_THING", "LOGIN"):
    print(k, "sha256", hashlib.sha256(os.environ.get(k, "").encode()).hexdigest(), flush=True)
print("step:10/10 val_loss:1.4000 val_bpb:1.9500 train_time:100ms step_avg:10.00ms")
print("Total submission size int8+zlib: 1000000 bytes")
print("final_int8_zlib_roundtrip_exact val_loss:1.40000000 val_bpb:1.95000000")
"""
CONFIG = """
[remote]
tick_s = 0.05
log_poll_s = 0.1
done_poll_s = 0.05
alive_every_s = 0.3
retry_s = 0.2
check_every_s = 0
heartbeat_s = 1
[agents]
time_limit_s = 120
[secrets]
names = ["CORP_THING"]
"""


def _task_source(tmp_path: Path) -> Path:
    src = tmp_path / "task-src"
    src.mkdir()
    (src / "train_gpt.py").write_text(TASK)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "fake task"], check=True)
    return src


def _git_everything(repo: Path) -> bytes:
    """Every object (loose or packed, reachable or not, decompressed) and the whole history."""
    run = [["cat-file", "--batch-all-objects", "--batch"], ["log", "-p", "--all", "--format=%B"]]
    return b"".join(
        subprocess.run(["git", "-C", str(repo), *a], capture_output=True, check=True).stdout
        for a in run
    )


def _files_holding(root: Path, values: list[str]) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and any(v.encode() in p.read_bytes() for v in values)
    )


def _ok(res) -> dict:  # noqa: ANN001
    assert res.code == 0, res.err
    return res.json()


@pytest.mark.slow
def test_exp_and_swarm_secrets_reach_the_job_and_nothing_else(
    helm, ws: Workspace, sshd: LoopbackSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {k: f"{k.lower()}-{secrets.token_hex(12)}" for k in
              ("HF_TOKEN", "OPENAI_APIKEY", "CORP_THING", "LOGIN")}  # fmt: skip
    every = list(values.values())
    box = tmp_path / "box"
    ws.config_path.write_text(CONFIG)
    trust(ws, sshd)
    assert helm("host", "add", "box", "--ssh", f"{sshd.user}@127.0.0.1:{sshd.port}",
                "--identity", str(sshd.user_key), "--gpus", "1", "--workdir", str(box),
                "--python", sys.executable).code == 0  # fmt: skip
    # the swarm's fixed env; the test then plays the agent itself (its process stays down)
    _ok(helm("swarm", "up", "-n", "1", "--no-daemon", "--json", "--task-repo",
             str(_task_source(tmp_path)), "--env", f"HF_TOKEN={values['HF_TOKEN']}",
             "--env", "MODEL_DIM=64"))  # fmt: skip
    assert helm("swarm", "down").code == 0
    monkeypatch.setenv("HELM_POLL_S", "0.2")
    monkeypatch.setenv("LOGIN", values["LOGIN"])  # --secret LOGIN reads it from the shell
    first = _ok(helm(
        "exp", "run", "--agent", "sweep-1", "--no-wait", "--json", "--secret", "LOGIN",
        "--env", f"OPENAI_APIKEY={values['OPENAI_APIKEY']}",
        "--env", f"CORP_THING={values['CORP_THING']}",
        "-m", f"first try, key {values['OPENAI_APIKEY']}",
    ))  # fmt: skip
    monkeypatch.delenv("LOGIN")
    assert first["verdict"] == "queued"  # no daemon yet: the secrets wait on disk

    daemon.start_detached(ws)
    try:
        _ok(helm("exp", "wait", str(first["run_id"]), "--poll", "0.2", "--json"))
        wt = ws.worktrees_dir / "sweep-1"
        (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "# edit\n")
        second = _ok(helm("exp", "run", "--agent", "sweep-1", "-m", "an edit", "--json"))
        with ws.db(write=False) as db:
            jobs = [get_job(db, r["job_id"]) for r in (first, second)]
        deadline = time.monotonic() + 10  # each job's scope is dropped once the job is final
        while any(k.startswith("job:") for k in json.loads((ws.root / "secrets.json").read_text())):
            assert time.monotonic() < deadline, "job secrets not forgotten"
            time.sleep(0.1)
        shown = "".join(
            helm(*cmd).out
            for cmd in (
                ("runs", "--json"),
                ("runs",),
                ("context", "--agent", "sweep-1", "--json"),
                ("context", "--agent", "sweep-1"),
                ("swarm", "ls", "--json"),
                *(("job", "show", str(j["id"]), "--json") for j in jobs),
            )
        )
        while_up = _files_holding(ws.root, every)  # the daemon holds the store: WAL included
    finally:
        daemon.stop(ws)

    # each job got every secret (the agent's, this run's, and the later run's inherited ones)
    for job in jobs:
        assert job["state"] == "succeeded", job["error"]
        log = (ws.job_dir(job["id"]) / "train.log").read_text()
        for name, value in values.items():
            assert f"{name} sha256 {hashlib.sha256(value.encode()).hexdigest()}" in log
    # ... and nothing else holds one
    assert while_up == _files_holding(ws.root, every) == ["secrets.json"]
    assert SecretStore(ws.root).get("agent:sweep-1") == values
    assert json.loads((ws.root / "secrets.json").read_text()).keys() == {"agent:sweep-1"}
    assert os.stat(ws.root / "secrets.json").st_mode & 0o777 == 0o600
    git = _git_everything(ws.task_dir)
    assert b"OPENAI_APIKEY=***" in git and b"first try, key ***" in git
    assert [v for v in every if v.encode() in git] == []
    assert [v for v in every if v in shown] == []
    assert (ws.logs_dir / "daemon.log").stat().st_size > 0
    remote = sorted(p.name for p in (box / "jobs").iterdir())
    assert remote == [str(j["id"]) for j in jobs]
    assert _files_holding(box, every) == []
    assert not list(box.rglob(ENV_FILE))
