"""Pins: a PR through GitHub's REST API, one of our runs, a local file.

GitHub cannot be reached from here, so the PR tests serve responses shaped exactly like
GitHub's REST API (``fixtures/github/``: trimmed copies of the documented pull, files,
404 and rate-limit bodies and headers) through ``httpx.MockTransport``; the code under test
makes the same requests it makes against api.github.com.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from helm.agents import pins
from helm.agents import taskrepo as tr
from helm.agents.experiment import ExpRequest, run_experiment
from helm.agents.github import GitHubError
from helm.models.agents import get_agent
from helm.models.runs import get_run
from helm.workspace import Workspace

FIX = Path(__file__).parent / "fixtures" / "github"
FOLDER = "records/track_10min_16mb/2026-03-20_11L_UNet"
SCRIPT = b"# the PR's script\nprint('hello from PR 374')\n"


def github(requests: list[httpx.Request], *, limited: bool = False) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path = request.url.path
        if limited:
            return httpx.Response(
                403,
                json=json.loads((FIX / "rate_limited.json").read_text()),
                headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1900000000"},
            )
        if path == "/repos/openai/parameter-golf/pulls/374":
            return httpx.Response(200, json=json.loads((FIX / "pull_374.json").read_text()))
        if path == "/repos/openai/parameter-golf/pulls/374/files":
            return httpx.Response(200, json=json.loads((FIX / "pull_374_files.json").read_text()))
        if path.startswith(f"/repos/openai/parameter-golf/contents/{FOLDER}/"):
            assert request.url.params["ref"] == "3f1c2b9a7e5d4c3b2a1908f7e6d5c4b3a2918070"
            name = path.rsplit("/", 1)[1]
            body = {"train_gpt.py": SCRIPT, "README.md": b"# 11L U-Net\n"}.get(name, b"{}\n")
            return httpx.Response(200, content=body)
        return httpx.Response(404, json=json.loads((FIX / "not_found.json").read_text()))

    return httpx.MockTransport(handler)


def test_pin_pr_commits_script_and_folder_onto_base(task_ws: Workspace, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "t0k")
    reqs: list[httpx.Request] = []
    pin = pins.pin_pr(task_ws, 374, transport=github(reqs))
    assert pin["kind"] == "pr" and pin["ref"] == "openai/parameter-golf#374"
    assert "golfer" in pin["note"]
    assert reqs[0].headers["authorization"] == "Bearer t0k"
    assert not any(r.url.path.endswith(".ptz") for r in reqs)  # artifacts are not fetched
    base = tr.open_task_repo(task_ws).commit(tr.BASE)
    assert base.hexsha == pin["commit"]
    assert base.message.startswith("pin: PR #374")
    assert (task_ws.task_dir / "train_gpt.py").read_bytes() == SCRIPT
    assert (task_ws.task_dir / "upstream/pr-374/README.md").exists()
    assert (task_ws.task_dir / "upstream/pr-374/submission.json").exists()
    assert tr.read_env(task_ws.task_dir) == {}


def test_pin_pr_errors_are_clear(task_ws: Workspace) -> None:
    with pytest.raises(GitHubError, match="not found on GitHub: pull request #9"):
        pins.pin_pr(task_ws, 9, transport=github([]))
    with pytest.raises(GitHubError, match="rate limit exceeded.*resets at"):
        pins.pin_pr(task_ws, 374, transport=github([], limited=True))
    with pytest.raises(GitHubError, match="does not change nope.py"):
        pins.pin_pr(task_ws, 374, path="nope.py", transport=github([]))


def test_pin_pr_cli_reports_errors(helm, task_ws: Workspace, monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise httpx.ConnectError("no network here")

    monkeypatch.setattr(httpx.Client, "get", refuse)
    res = helm("pin", "pr", "374")
    assert res.code == 1 and "cannot reach GitHub" in res.err


@pytest.mark.engines
def test_pin_file_and_show(helm, task_ws: Workspace, tmp_path: Path) -> None:
    script = tmp_path / "mine.py"
    script.write_text("print('mine')\n")
    res = helm("pin", "file", str(script), "--json")
    assert res.code == 0, res.err
    pin = res.json()
    assert pin["kind"] == "file"
    assert (task_ws.task_dir / "train_gpt.py").read_text() == "print('mine')\n"
    shown = helm("pin", "show", "--json").json()
    assert [p["kind"] for p in shown] == ["file", "init"]
    ctx = helm("context", "--json").json()
    assert ctx["base"]["id"] == pin["id"]
    assert helm("pin", "file", str(tmp_path / "missing.py")).code == 1


@pytest.mark.engines
def test_pin_run_moves_agents_before_their_next_experiment(task_ws, agent, backend) -> None:
    run_experiment(task_ws, ExpRequest(agent), backend=backend)
    kept = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.04"}), backend=backend)
    assert kept.verdict == "keep"
    swarm_b = "b2"
    from helm.agents import swarm

    swarm.add_agent(task_ws, swarm_b)
    pin = pins.pin_run(task_ws, kept.run_id)
    assert tr.read_env(task_ws.task_dir)["MATRIX_LR"] == "0.04"
    # the next experiment of each agent starts on the new base: a new reference run
    for name, lr in ((agent, "0.02"), (swarm_b, "0.03")):
        res = run_experiment(task_ws, ExpRequest(name, env={"SCALAR_LR": lr}), backend=backend)
        with task_ws.db(write=False) as db:
            run = get_run(db, res.run_id)
            me = get_agent(db, name)
        assert run["base_pin_id"] == pin["id"] == me["base_pin_id"]
        assert run["baseline"] and res.verdict == "keep" and "reference" in res.note
        assert json.loads(run["env_json"])["MATRIX_LR"] == "0.04"
    with pytest.raises(pins.PinError):
        pins.pin_run(task_ws, 999)
