"""``helm host``: adding, listing, checking and removing boxes (SSH ones are exercised
against a real sshd in tests/helm/remote), on both store engines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helm.models.hosts import get_host
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def test_add_ls_rm_local_and_ssh(helm, home: Path) -> None:
    res = helm("host", "add", "cpu", "--local", "--gpus", "3", "--json")
    assert res.code == 0, res.err
    assert res.json()["kind"] == "local" and res.json()["gpus"] == 3
    res = helm(
        "host", "add", "h100", "--ssh", "ubuntu@10.0.0.5:2222", "--identity", "~/.ssh/k",
        "--data", "/data/golf", "--env", "WANDB_API_KEY=abc123", "--env", "NCCL_DEBUG=WARN",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert "helm host check h100" in res.out
    res = helm("host", "ls", "--json")
    hosts = {h["name"]: h for h in res.json()}
    assert hosts["h100"]["target"] == "ubuntu@10.0.0.5:2222"
    assert (
        hosts["h100"]["gpus"] == 8
        and hosts["h100"]["workdir"] == f"~/helm-jobs/{(home / 'campaign.id').read_text().strip()}"
    )
    assert hosts["h100"]["env"] == {"WANDB_API_KEY": "***", "NCCL_DEBUG": "WARN"}
    assert hosts["cpu"]["workdir"] == str(home / "boxes" / "cpu")
    with Workspace(home).db(write=False) as db:
        row = get_host(db, "h100")
    assert (row["ssh_user"], row["ssh_host"], row["ssh_port"]) == ("ubuntu", "10.0.0.5", 2222)
    assert "abc123" not in json.dumps(row)
    if not os.environ.get("HELM_DB_URL"):  # the SQLite file itself
        assert b"abc123" not in (home / "helm.db").read_bytes()
    assert json.loads((home / "secrets.json").read_text()) == {
        "host:h100": {"WANDB_API_KEY": "abc123"}
    }
    table = helm("host", "ls").out
    assert table.splitlines()[0].split()[:3] == ["NAME", "KIND", "TARGET"]
    assert "ubuntu@10.0.0.5:2222" in table

    assert helm("host", "rm", "h100").code == 0
    assert [h["name"] for h in helm("host", "ls", "--json").json()] == ["cpu"]
    assert "host:h100" not in json.loads((home / "secrets.json").read_text())


def test_bad_input_is_a_usage_error(helm) -> None:
    assert helm("host", "add", "x").code == 2  # neither --ssh nor --local
    assert helm("host", "add", "x", "--local", "--ssh", "a@b").code == 2
    res = helm("host", "add", "bad name", "--local")
    assert res.code == 2 and "bad host name" in res.err
    res = helm("host", "add", "x", "--ssh", "u@h:99999")
    assert res.code == 2 and "bad port" in res.err
    assert helm("host", "add", "x", "--local").code == 0
    res = helm("host", "add", "x", "--local")
    assert res.code == 2 and "exists" in res.err
    res = helm("host", "rm", "nope")
    assert res.code == 1 and "no host 'nope'" in res.err


def test_check_local_host(helm, ws: Workspace) -> None:
    assert helm("host", "add", "cpu", "--local").code == 0
    res = helm("host", "check", "cpu", "--json")
    assert res.code == 0, res.err
    check = res.json()
    assert check["reachable"] is True and check["gpus"] == []
    assert check["python"] and check["torch"] and check["disk_free_gb"] > 0
    listed = helm("host", "ls", "--json").json()[0]
    assert listed["reachable"] is True and listed["check"]["torch"] == check["torch"]
    assert "cpu" in helm("host", "ls").out.splitlines()[1]


def test_check_unreachable_ssh_host_fails_with_reason(helm) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert helm("host", "add", "gone", "--ssh", f"root@127.0.0.1:{port}").code == 0
    res = helm("host", "check", "gone")
    assert res.code == 1 and "gone unreachable" in res.err
    assert helm("host", "ls", "--json").json()[0]["reachable"] is False


def test_trust_refuses_local_hosts(helm) -> None:
    assert helm("host", "add", "cpu", "--local").code == 0
    res = helm("host", "trust", "cpu", "--yes")
    assert res.code == 1 and "no host key" in res.err
