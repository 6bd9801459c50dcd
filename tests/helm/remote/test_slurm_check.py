"""``helm host check`` on a Slurm host, against the real test cluster (``helm.remote.slurmlab``).

The check script runs for real through ``LocalBox`` (and once over the loopback login node):
real ``sinfo``/``scontrol``/``sacctmgr`` output, a real ``srun`` onto the compute node that
reports this interpreter and its torch, a real busy partition, a real PATH without sbatch.
What this cluster cannot print (other Slurm versions' GRES and state shapes, a partition
with many nodes, association limits on a real site) is ``test_slurm_check_text.py``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_helpers import add_slurm_host, wait_idle

from helm.models.job_life import load_host
from helm.remote.hosts import make_box
from helm.remote.launch import DATASET_SUBDIR, TOKENIZER_SUBPATH
from helm.remote.local import LocalBox
from helm.remote.loopback import LoopbackSshd
from helm.remote.probe import probe_host
from helm.remote.slurm_check import (
    check_slurm,
    render_lines,
    slurm_check_script,
    slurm_problems,
)
from helm.remote.slurm_check_parse import parse_slurm_check
from helm.remote.slurm_conf import SlurmSettings
from helm.remote.slurmlab import PARTITION, LocalSlurm, _free_ports
from helm.workspace import Workspace

pytestmark = pytest.mark.timeout(120)
TORCH = importlib.metadata.version("torch")
# What Debian's slurm-client puts in /usr/bin.
SLURM_CLIENT = frozenset(
    {
        "sacct", "sacctmgr", "salloc", "sattach", "sbatch", "sbcast", "scancel", "scontrol",
        "sdiag", "sinfo", "sprio", "squeue", "sreport", "srun", "sshare", "sstat", "strigger",
    }
)  # fmt: skip


@pytest.fixture
def lab(slurm_lab: LocalSlurm, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalSlurm]:
    """The session cluster, idle, with its SLURM_CONF in this process's environment (which
    LocalBox's shells inherit, as a login node's shells find /etc/slurm/slurm.conf)."""
    wait_idle(slurm_lab)
    monkeypatch.setenv("SLURM_CONF", str(slurm_lab.conf))
    yield slurm_lab
    slurm_lab.command("scancel", "--state=PENDING", check=False)
    slurm_lab.command("scancel", "--full", "--state=RUNNING", check=False)


async def _check(tmp: Path, settings: SlurmSettings, **kw) -> dict:
    kw.setdefault("python", sys.executable)
    kw.setdefault("workdir", str(tmp / "shared" / "work"))
    kw.setdefault("data_dir", None)
    return await check_slurm(LocalBox("cluster"), settings, **kw)


def _data(root: Path) -> Path:
    ds = root / DATASET_SUBDIR
    ds.mkdir(parents=True)
    (ds / "fineweb_train_000000.bin").write_bytes(b"\0" * 64)
    (ds / "fineweb_val_000000.bin").write_bytes(b"\0" * 64)
    tok = root / TOKENIZER_SUBPATH
    tok.parent.mkdir(parents=True, exist_ok=True)
    tok.write_bytes(b"model")
    return root


async def test_reports_the_real_partition_nodes_and_compute_python(
    lab: LocalSlurm, tmp_path: Path
) -> None:
    settings = SlurmSettings(partition=PARTITION, gpus_per_node=2)
    check = await _check(tmp_path, settings, data_dir=str(_data(tmp_path / "data")))
    s = check["slurm"]
    assert check["reachable"] is True and check["problems"] == []
    assert s["version"] == lab.command("sinfo", "--version").stdout.split()[-1]
    assert s["missing_commands"] == [] and s["partition_exists"] is True
    assert PARTITION in s["partitions"]
    assert s["nodes"] == [
        {
            "name": lab.node,
            "gres": "gpu:2",
            "gpus": 2,
            "gpu_type": None,
            "state": "idle",
            "up": True,
            "cpus": lab.cpus,
            "memory_mb": 4000,
        }
    ]
    assert (s["partition_nodes"], s["max_gpus_per_node"]) == (1, 2)
    assert s["partition_info"]["state"] == "UP" and s["partition_info"]["max_nodes"] is None
    # No slurmdbd on this cluster: limits are unknown, and that is not a problem.
    assert s["limits"] is None and "accounting_storage" in s["accounting"]
    # The interpreter and torch as a compute node ran them, through srun.
    assert s["srun"] == "ok" and s["srun_node"] == lab.node
    assert (check["python"], check["torch"]) == (platform.python_version(), TORCH)
    assert check["data"] == {"train_shards": 1, "val_shards": 1, "tokenizer": True}
    assert check["disk_free_gb"] > 0 and check["write_error"] is None
    lines = render_lines(check)
    assert f"nodes:     1 x gpu:2 (2 GPUs; {lab.cpus} CPUs, 4000 MB) [idle] {lab.node}" in lines
    assert any(
        f"python {platform.python_version()}, torch {TORCH} on {lab.node}" in x for x in lines
    )
    assert any(x.startswith("limits:    accounting not available") for x in lines)


async def test_unknown_partition_is_one_line(lab: LocalSlurm, tmp_path: Path) -> None:
    check = await _check(tmp_path, SlurmSettings(partition="nope", gpus_per_node=2))
    assert check["slurm"]["partition_exists"] is False
    # srun is refused for the same reason; that is not said twice.
    assert check["problems"] == [
        f"partition 'nope' not found (the cluster has: {PARTITION}): fix --partition"
    ]
    assert f"partition: nope NOT FOUND (the cluster has: {PARTITION})" in render_lines(check)


async def test_more_gpus_per_node_than_the_nodes_have(lab: LocalSlurm, tmp_path: Path) -> None:
    check = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=8))
    assert check["problems"] == [
        f"nodes in partition {PARTITION} have 2 GPUs; this host declares --gpus-per-node 8"
        " (use --gpus-per-node 2)"
    ]
    # Two nodes of two GPUs asked of a one-node partition: said with the fix.
    two = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2, max_nodes=2))
    assert two["problems"] == [
        f"partition {PARTITION} has 1 node; this host allows jobs of up to 2 nodes"
        " (lower --max-nodes to 1)"
    ]


async def test_partition_limits_from_scontrol(lab: LocalSlurm, tmp_path: Path) -> None:
    lab.command(
        "scontrol", "create", "PartitionName=short", f"Nodes={lab.node}", "MaxNodes=1",
        "MaxTime=00:10:00", "State=DOWN", "AllowAccounts=physics",
    )  # fmt: skip
    try:
        settings = SlurmSettings(
            partition="short", gpus_per_node=2, time_limit_s=3600, account="helm"
        )
        check = await _check(tmp_path, settings, srun_wait_s=2)
    finally:
        lab.command("scontrol", "delete", "PartitionName=short")
    info = check["slurm"]["partition_info"]
    assert (info["state"], info["max_nodes"], info["max_time_s"]) == ("DOWN", 1, 600)
    assert sorted(check["slurm"]["partitions"]) == sorted([PARTITION, "short"])
    # A DOWN partition makes srun wait: a timeout, not a second problem.
    assert check["slurm"]["srun"] == "timeout"
    assert check["problems"] == [
        "partition short is DOWN: Slurm starts no jobs there until it is UP",
        "partition short allows jobs of at most 00:10:00; this host asks --time 01:00:00",
        "partition short only takes account physics, not 'helm' (fix --account)",
    ]


async def test_sbatch_missing_on_the_login_node(lab: LocalSlurm, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in os.listdir("/usr/bin"):
        if name != "sbatch":
            os.symlink(f"/usr/bin/{name}", bin_dir / name)
    settings = SlurmSettings(partition=PARTITION, gpus_per_node=2)
    script = slurm_check_script(
        settings, python=sys.executable, workdir=str(tmp_path / "work"), data_dir=None
    )
    res = await LocalBox("cluster").run(f"PATH={bin_dir}; export PATH\n{script}", timeout=120)
    check = parse_slurm_check(res.stdout, settings, has_data=False)
    assert check["slurm"]["missing_commands"] == ["sbatch"]
    assert slurm_problems(check, settings) == [
        "sbatch not found on the login node (install Slurm's client commands there, or put"
        " them on the PATH a non-interactive shell gets)"
    ]
    # Everything else was still read.
    assert check["slurm"]["srun"] == "ok" and check["slurm"]["max_gpus_per_node"] == 2


async def test_no_slurm_at_all_is_still_one_line(lab: LocalSlurm, tmp_path: Path) -> None:
    """Parsing never depends on a tool: with no Slurm command, one line and no guesses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in os.listdir("/usr/bin"):
        if name not in SLURM_CLIENT:
            os.symlink(f"/usr/bin/{name}", bin_dir / name)
    settings = SlurmSettings(partition=PARTITION)
    script = slurm_check_script(
        settings, python=sys.executable, workdir=str(tmp_path / "work"), data_dir=None
    )
    res = await LocalBox("cluster").run(f"PATH={bin_dir}; export PATH\n{script}", timeout=60)
    check = parse_slurm_check(res.stdout, settings, has_data=False)
    s = check["slurm"]
    assert s["missing_commands"] == ["sbatch", "squeue", "sinfo", "scancel", "srun"]
    assert (s["partition_exists"], s["limits"], s["nodes"], s["srun"]) == (
        None, None, [], "srun not found",
    )  # fmt: skip
    assert slurm_problems(check, settings) == [
        "sbatch, squeue, sinfo, scancel, srun not found on the login node (install Slurm's"
        " client commands there, or put them on the PATH a non-interactive shell gets)"
    ]
    assert check["disk_free_gb"] > 0  # the login node's own probes still ran


async def test_controller_that_does_not_answer(
    slurm_lab: LocalSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login node whose slurm.conf names a controller port nobody listens on: one line,
    and the other questions to the controller are not asked (each would wait ~20 s)."""
    conf = tmp_path / "etc" / "slurm.conf"
    conf.parent.mkdir()
    port = _free_ports(1)[0]
    conf.write_text(
        re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={port}", slurm_lab.conf.read_text())
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    started = time.monotonic()
    check = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2))
    assert time.monotonic() - started < 45
    s = check["slurm"]
    assert s["controller_error"] == (
        "slurm_load_partitions: Unable to contact slurm controller (connect failure)"
    )
    assert (s["partition_exists"], s["nodes"]) == (None, [])
    assert s["srun"] == "not tried: the controller did not answer"
    assert check["problems"] == [
        "Slurm's controller did not answer the login node (slurm_load_partitions: Unable to"
        " contact slurm controller (connect failure)): is slurmctld up, and does the login"
        " node's slurm.conf (SLURM_CONF) name it?"
    ]
    assert f"partition: {PARTITION} UNKNOWN (the controller did not answer)" in render_lines(check)


async def test_busy_partition_times_out_instead_of_hanging(lab: LocalSlurm, tmp_path: Path) -> None:
    hog = lab.command("sbatch", "--parsable", "--exclusive", "--wrap", "sleep 120").stdout.strip()
    deadline = time.monotonic() + 20
    while lab.command("squeue", "-h", "-j", hog, "-o", "%T").stdout.strip() != "RUNNING":
        assert time.monotonic() < deadline, "the exclusive job did not start"
        time.sleep(0.1)
    started = time.monotonic()
    check = await _check(
        tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2), srun_wait_s=2
    )
    assert time.monotonic() - started < 30
    assert check["slurm"]["srun"] == "timeout" and check["python"] is None
    assert check["slurm"]["nodes"][0]["state"] == "allocated"
    assert check["problems"] == []  # a full partition is not a setting to fix
    assert (
        "compute:   no node free in time for the srun probe: python and torch unchecked"
        in render_lines(check)
    )
    # The probe's own request was withdrawn, not left pending.
    assert lab.command("squeue", "-h", "-n", "helm-check", "-o", "%i").stdout.strip() == ""


async def test_python_or_torch_missing_on_the_compute_node(lab: LocalSlurm, tmp_path: Path) -> None:
    settings = SlurmSettings(partition=PARTITION, gpus_per_node=2)
    gone = await _check(tmp_path, settings, python="/nonexistent/python3")
    assert gone["slurm"]["srun"] == "ok" and gone["python"] is None
    assert len(gone["problems"]) == 1
    assert gone["problems"][0].startswith("/nonexistent/python3 does not run on a compute node (")
    assert gone["problems"][0].endswith("give --python an interpreter the compute nodes have")
    # Debian's own python3 has no torch.
    bare = await _check(tmp_path, settings, python="/usr/bin/python3")
    system = subprocess.run(
        ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert bare["python"] == system
    assert bare["torch"] is None
    assert bare["problems"] == [
        "torch not importable on a compute node with /usr/bin/python3 (ModuleNotFoundError:"
        " No module named 'torch'): install torch there, or point --python at an environment"
        " that has it"
    ]


async def test_through_the_login_node_over_ssh(
    ws: Workspace, slurm_lab: LocalSlurm, slurm_sshd: LoopbackSshd
) -> None:
    """The path ``helm host check`` takes for ``--slurm --ssh``: the same script, run by the
    kept shell on the login node, with ``~`` paths expanded there."""
    wait_idle(slurm_lab)
    add_slurm_host(ws, slurm_lab, sshd=slurm_sshd, gpus_per_node=8)
    with ws.store.read() as s:
        host = load_host(s, "cluster")
    box = make_box(ws, host)
    try:
        check = await probe_host(box, host)
    finally:
        await box.close()
    assert check["reachable"] is True
    assert check["slurm"]["nodes"][0]["name"] == slurm_lab.node
    assert (check["python"], check["torch"]) == (platform.python_version(), TORCH)
    assert check["problems"] == [
        f"nodes in partition {PARTITION} have 2 GPUs; this host declares --gpus-per-node 8"
        " (use --gpus-per-node 2)"
    ]


# -- with accounting (slurmdbd): the real association and QOS limits -----------------------


@pytest.fixture
def acct(slurm_acct_lab: LocalSlurm, monkeypatch: pytest.MonkeyPatch) -> LocalSlurm:
    wait_idle(slurm_acct_lab)
    monkeypatch.setenv("SLURM_CONF", str(slurm_acct_lab.conf))
    return slurm_acct_lab


async def test_qos_limits_from_the_accounting_database(acct: LocalSlurm, tmp_path: Path) -> None:
    plain = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2))
    limits = plain["slurm"]["limits"]
    assert plain["problems"] == []
    assert (limits["account"], limits["qos"], limits["cluster"]) == ("helm", "normal", "helmlab")
    assert limits["qos_allowed"] == ["normal", "small"] and "small" in limits["qos_known"]
    assert limits["enforce"] == "associations,limits,qos" and limits["caps"] == {}
    small = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2, qos="small"))
    assert small["slurm"]["limits"]["caps"] == {
        "gpus_per_job": {"value": 1, "by": "the QOS 'small'"}
    }
    assert small["problems"] == [
        "the QOS 'small' allows 1 GPU per job; jobs here ask up to 2 (--gpus-per-node x"
        " --max-nodes): lower them, or use another --qos"
    ]
    assert "limits:    account helm, QOS small: GPUs/job 1; enforced: associations,limits,qos" in (
        render_lines(small)
    )
    one = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=1, qos="small"))
    assert one["problems"] == []


async def test_unknown_qos_and_account_are_one_line_each(acct: LocalSlurm, tmp_path: Path) -> None:
    qos = await _check(tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2, qos="foo"))
    assert qos["problems"] == [
        "QOS 'foo' does not exist (the cluster has: normal, small): fix --qos"
    ]
    account = await _check(
        tmp_path, SlurmSettings(partition=PARTITION, gpus_per_node=2, account="nobody")
    )
    assert account["slurm"]["srun"].startswith("Unable to allocate resources: Invalid account")
    assert account["problems"] == [
        "account 'nobody' is not one of yours on this cluster (yours: helm, root): fix --account"
    ]


async def test_association_limits_from_the_accounting_database(
    acct: LocalSlurm, tmp_path: Path
) -> None:
    """Limits set on the user's association (not the QOS) are read and named as such."""
    acct.command(
        "sacctmgr", "-i", "modify", "user", "root", "set", "MaxWall=00:30:00", "MaxSubmit=2"
    )
    try:
        settings = SlurmSettings(partition=PARTITION, gpus_per_node=2, time_limit_s=3600)
        check = await _check(tmp_path, settings)
    finally:
        acct.command(
            "sacctmgr", "-i", "modify", "user", "root", "set", "MaxWall=-1", "MaxSubmit=-1"
        )
    by = "the association of account 'helm'"
    assert check["slurm"]["limits"]["caps"] == {
        "wall_s": {"value": 1800, "by": by},
        "submitted_jobs": {"value": 2, "by": by},
    }
    assert check["problems"] == [
        f"{by} allows jobs of at most 00:30:00; this host asks --time 01:00:00",
        f"{by} allows 2 submitted jobs per user; this host keeps up to 4 submitted (lower"
        " --max-submitted)",
    ]
