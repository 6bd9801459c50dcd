"""``helm host add --slurm``: a cluster's settings, the login node, and the input it refuses;
the real cluster's side is tests/helm/remote/test_slurm_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm.models.hosts import get_host
from helm.remote.slurm_conf import SlurmSettings
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def test_add_a_slurm_host_with_and_without_a_login_node(helm, home: Path) -> None:
    res = helm(
        "host", "add", "lab", "--slurm", "--ssh", "me@login.example.edu:2222",
        "--partition", "gpu", "--account", "nlp", "--qos", "high", "--gpus-per-node", "8",
        "--max-nodes", "2", "--time", "01:30:00", "--sbatch-arg=--constraint=h100",
        "--max-submitted", "6", "--workdir", "/scratch/me/helm", "--data", "/scratch/data",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert "added Slurm host lab (login node me@login.example.edu:2222" in res.out
    assert "helm host check lab" in res.out and "helm host trust lab" in res.out
    res = helm("host", "add", "here", "--slurm", "--partition", "debug", "--json")
    assert res.code == 0, res.err
    out = res.json()
    assert out["kind"] == "slurm" and out["target"] is None and out["gpus"] == 8
    assert out["slurm"]["partition"] == "debug" and out["slurm"]["max_submitted"] == 4
    with Workspace(home).db(write=False) as db:
        row = get_host(db, "lab")
    assert (row["kind"], row["ssh_user"], row["ssh_host"], row["ssh_port"]) == (
        "slurm", "me", "login.example.edu", 2222,
    )  # fmt: skip
    assert row["gpus"] == 16  # the most one job may ask for: 2 nodes x 8
    assert SlurmSettings.from_json(row["slurm_json"]) == SlurmSettings(
        "gpu", account="nlp", qos="high", gpus_per_node=8, max_nodes=2, time_limit_s=5400,
        sbatch_args=("--constraint=h100",), max_submitted=6,
    )  # fmt: skip
    table = helm("host", "ls").out
    assert "slurm" in table and "me@login.example.edu:2222" in table


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--slurm"], "needs --partition"),
        (["--slurm", "--local", "--partition", "gpu"], "not allowed with argument"),
        (["--local", "--partition", "gpu"], "--partition is for Slurm hosts"),
        (["--slurm", "--partition", "gpu; reboot"], "bad --partition"),
        (["--slurm", "--partition", "gpu", "--time", "90"], "bad --time"),
        (["--slurm", "--partition", "gpu", "--gpus", "8"], "--gpus-per-node"),
        (["--slurm", "--partition", "gpu", "--max-nodes", "0"], "must be 1..64"),
        (["--slurm", "--partition", "gpu", "--sbatch-arg", "rm"], "bad --sbatch-arg"),
    ],
)
def test_bad_slurm_input_is_one_usage_line(helm, args: list[str], words: str) -> None:
    res = helm("host", "add", "x", *args)
    assert res.code == 2, res.out
    assert words in res.err, res.err
    assert "Traceback" not in res.err
