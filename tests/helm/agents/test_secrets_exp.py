"""Secrets on the agents' own path: ``helm swarm up --env`` and ``helm exp run --env``.

Issue 13: these stored the value in clear in the run description (``helm runs``, every
agent's ``helm context``), the commit message, the committed ``run.env`` on the agent's branch,
``jobs/<id>/code/run.env``, ``run.env_json`` and ``agent.env_json``. Now the value is masked
(``***``) everywhere helm writes, kept in the workspace's secret store under the agent, and
handed to each of the agent's jobs. The job itself is faked here (``FakeBackend``: the real
queue and records, a made-up score); tests/helm/remote/test_secrets_e2e.py runs real jobs on a
real SSH box. On both store engines.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from helm.agents import experiment
from helm.agents import taskrepo as tr
from helm.models.agents import get_agent
from helm.models.jobs import get_job
from helm.models.runs import get_run
from helm.remote.secrets import MASK, SecretStore, resolve_env
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def git_text(repo: Path) -> bytes:
    """Every object of the repository (loose or packed, reachable or not) and its history."""
    objects = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "-p", "--all", "--format=%H %B"],
        capture_output=True,
        check=True,
    ).stdout
    return objects + log


def workspace_leaks(root: Path, values: list[str]) -> list[str]:
    """Files under ``root`` holding one of ``values``, the secret store itself aside."""
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith("secrets.json")
        and any(v.encode() in p.read_bytes() for v in values)
    ]


def _exp(helm, *args: str) -> dict:
    res = helm("exp", "run", "--agent", "sweep-1", *args, "--json")
    assert res.code == 0, res.err
    return res.json()


def test_exp_run_and_swarm_up_mask_secrets(
    helm, task_ws: Workspace, monkeypatch: pytest.MonkeyPatch, fake_backend_class: type
) -> None:
    ws = task_ws
    monkeypatch.setattr(experiment, "RemoteBackend", fake_backend_class)
    s_swarm, s_exp, s_file = (f"{p}-{secrets.token_hex(8)}" for p in ("hf", "sk", "pat"))
    res = helm("swarm", "up", "-n", "1", "--no-daemon", "--json",
               "--env", f"HF_TOKEN={s_swarm}", "--env", "NUM_LAYERS=4")  # fmt: skip
    assert res.code == 0, res.err
    wt = ws.worktrees_dir / "sweep-1"
    # an agent may also write a secret into run.env itself
    (wt / tr.ENV_FILE).write_text((wt / tr.ENV_FILE).read_text() + f"GITHUB_PAT={s_file}\n")
    first = _exp(helm, "--env", f"OPENAI_APIKEY={s_exp}", "--env", "MATRIX_LR=0.04")
    (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "\n# tweak\n")
    second = _exp(helm, "-m", f"again, with key {s_exp}", "--env", "MATRIX_LR=0.05")
    values = [s_swarm, s_exp, s_file]

    with ws.db(write=False) as db:
        runs = [get_run(db, r["run_id"]) for r in (first, second)]
        jobs = [get_job(db, r["job_id"]) for r in runs]
        agent = get_agent(db, "sweep-1")
    assert json.loads(agent["env_json"]) == {"HF_TOKEN": MASK, "NUM_LAYERS": "4"}
    assert "OPENAI_APIKEY=***" in runs[0]["description"]
    assert runs[1]["description"] == f"again, with key {MASK}"
    for run, job in zip(runs, jobs, strict=True):
        env = json.loads(run["env_json"])
        assert env["HF_TOKEN"] == env["OPENAI_APIKEY"] == env["GITHUB_PAT"] == MASK
        stored = json.loads(job["env_json"])
        assert stored["HF_TOKEN"] == MASK and stored["NUM_LAYERS"] == "4"
        # what the daemon will launch: the masked row filled from the job's secrets
        launched = resolve_env(stored, SecretStore(ws.root).get(f"job:{job['id']}"))
        assert (launched["HF_TOKEN"], launched["OPENAI_APIKEY"], launched["GITHUB_PAT"]) == (
            s_swarm,
            s_exp,
            s_file,
        )
        code_env = (ws.job_dir(job["id"]) / "code" / tr.ENV_FILE).read_text()
        assert "OPENAI_APIKEY=***" in code_env and "GITHUB_PAT=***" in code_env
    assert "OPENAI_APIKEY=***" in (wt / tr.ENV_FILE).read_text()

    shown = "".join(
        helm(*cmd).out
        for cmd in (
            ("runs", "--json"),
            ("runs",),
            ("context", "--agent", "sweep-1", "--json"),
            ("context", "--agent", "sweep-1"),
            ("swarm", "ls", "--json"),
            ("job", "show", str(jobs[0]["id"]), "--json"),
        )
    )
    git = git_text(ws.task_dir)
    assert b"OPENAI_APIKEY=***" in git  # the commit and its run.env are there, masked
    for value in values:
        assert value not in shown
        assert value.encode() not in git
    if not os.environ.get("HELM_DB_URL"):
        assert workspace_leaks(ws.root, values) == []
    assert os.stat(ws.root / "secrets.json").st_mode & 0o777 == 0o600


def test_a_declared_secret_stays_secret_for_the_agent(
    helm, task_ws: Workspace, monkeypatch: pytest.MonkeyPatch, fake_backend_class: type
) -> None:
    """``--secret NAME`` once: later runs of the agent mask NAME even without the flag."""
    monkeypatch.setattr(experiment, "RemoteBackend", fake_backend_class)
    assert helm("swarm", "up", "-n", "1", "--no-daemon").code == 0
    v1, v2 = (f"login-{secrets.token_hex(6)}" for _ in range(2))
    monkeypatch.setenv("LOGIN", v1)
    first = _exp(helm, "--secret", "LOGIN")
    wt = task_ws.worktrees_dir / "sweep-1"
    (wt / "train_gpt.py").write_text((wt / "train_gpt.py").read_text() + "\n# tweak\n")
    second = _exp(helm, "--env", f"LOGIN={v2}")
    with task_ws.db(write=False) as db:
        envs = [json.loads(get_run(db, r["run_id"])["env_json"]) for r in (first, second)]
        job = get_job(db, get_run(db, second["run_id"])["job_id"])
    assert envs[0]["LOGIN"] == envs[1]["LOGIN"] == MASK
    assert SecretStore(task_ws.root).get(f"job:{job['id']}")["LOGIN"] == v2
    assert v1.encode() not in git_text(task_ws.task_dir)
    assert v2.encode() not in git_text(task_ws.task_dir)
