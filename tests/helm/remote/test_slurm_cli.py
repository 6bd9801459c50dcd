"""``helm host check`` and ``helm job ls`` / ``job show`` on a Slurm host, against the real
test cluster (Slurm's commands run on this machine)."""

from __future__ import annotations

import sys
from pathlib import Path

from helm.remote.slurmlab import LocalSlurm


def test_host_check_reports_the_cluster_and_job_ls_shows_slurms_reason(
    helm,
    home: Path,
    slurm_here: LocalSlurm,  # noqa: ANN001
) -> None:
    res = helm(
        "host", "add", "lab", "--slurm", "--partition", "gpu", "--gpus-per-node", "2",
        "--python", sys.executable, "--workdir", str(home / "shared"),
    )  # fmt: skip
    assert res.code == 0, res.err
    res = helm("host", "check", "lab")
    assert res.code == 0, res.out + res.err
    assert "lab: reachable (Slurm)" in res.out
    assert slurm_here.node in res.out and "gpu:2" in res.out, res.out
    res = helm("host", "add", "wrong", "--slurm", "--partition", "nope", "--workdir", "/tmp")
    res = helm("host", "check", "wrong")
    assert res.code == 1
    assert "problem: partition 'nope' not found" in res.out, res.out
