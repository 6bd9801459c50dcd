"""Helpers for the Slurm backend's tests: a Slurm host on the real test cluster, reached from
this machine or through a login node over the loopback sshd, and what Slurm says of a job."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

from dispatch_helpers import FAST, trust

from helm.models.jobs import job_events
from helm.remote.hosts import add_host
from helm.remote.loopback import LoopbackSshd
from helm.remote.settings import RemoteSettings
from helm.remote.slurm_conf import SlurmSettings
from helm.remote.slurmlab import PARTITION, LocalSlurm
from helm.workspace import Workspace

# Multi-GPU synthetic jobs: one process per node under srun that says how many it was asked
# for (the real torchrun path is the tiny training test's).
LAUNCHER = f"env HELM_NPROC={{nproc}} {sys.executable}"
SLURM_FAST = RemoteSettings(**{**FAST.__dict__, "slurm_poll_s": 0.3, "slurm_pause_s": 30.0})

# Numbered lines at a steady pace: any lost or repeated line shows in the comparison.
LINES = """
import os, time
n = {n}
for i in range(n):
    print(f"line {{i:05d}} " + "x" * 40, flush=True)
    time.sleep({pause})
print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.40000000", flush=True)
"""


def expected(n: int) -> str:
    lines = "".join(f"line {i:05d} " + "x" * 40 + "\n" for i in range(n))
    return lines + "final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.40000000\n"


def add_slurm_host(
    ws: Workspace,
    lab: LocalSlurm,
    name: str = "cluster",
    *,
    sshd: LoopbackSshd | None = None,
    partition: str = PARTITION,
    gpus_per_node: int | None = None,
    max_nodes: int = 1,
    max_submitted: int = 4,
    qos: str | None = None,
    **kw,
) -> None:
    """A Slurm host on the test cluster; over ``sshd`` (a login node whose sessions know the
    cluster's SLURM_CONF) or, without it, with Slurm's commands run here."""
    kw.setdefault("workdir", str(ws.root / "shared" / name))
    kw.setdefault("python", sys.executable)
    kw.setdefault("launcher", LAUNCHER)
    settings = SlurmSettings(
        partition=partition,
        gpus_per_node=lab.gpus if gpus_per_node is None else gpus_per_node,
        max_nodes=max_nodes,
        max_submitted=max_submitted,
        qos=qos,
    )
    if sshd is not None:
        trust(ws, sshd)
        kw.update(ssh=sshd.ssh_target(), identity=str(sshd.user_key))
    with ws.store.write() as s:
        add_host(ws, s, name, slurm=settings, **kw)


def slurm_state(lab: LocalSlurm, slurm_id: str) -> str:
    out = lab.command("squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%T", check=False)
    return out.stdout.strip()


async def wait_slurm(lab: LocalSlurm, slurm_id: str, *states: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = slurm_state(lab, slurm_id)
        if state in states:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm job {slurm_id} stayed {state!r}, wanted {states}")
        await asyncio.sleep(0.1)


def events(ws: Workspace, job_id: int) -> list[str]:
    with ws.db(write=False) as db:
        return [f"{e['state']}: {e['message']}" for e in job_events(db, job_id)]


def wait_idle(lab: LocalSlurm, timeout: float = 30) -> None:
    """No job of the cluster runs or waits (tests share one cluster per worker)."""
    deadline = time.monotonic() + timeout
    while lab.command("squeue", "-h", "-t", "PD,R,CG", "-o", "%i").stdout.strip():
        if time.monotonic() > deadline:
            lab.command("scancel", "--state=PENDING", check=False)
            lab.command("scancel", "--state=RUNNING", check=False)
            raise AssertionError("the cluster still has jobs of an earlier test")
        time.sleep(0.1)


def path_without_sbatch(tmp: Path) -> str:
    """A PATH with the shell tools a login node has, but no Slurm commands at all."""
    bin_dir = tmp / "bin-no-slurm"
    bin_dir.mkdir(exist_ok=True)
    for tool in (
        "sh", "cat", "mkdir", "mv", "rm", "head", "tail", "grep", "ls", "df", "dd", "stat",
        "date", "dirname", "readlink", "sleep", "printf", "echo", "test", "hostname", "env",
    ):  # fmt: skip
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            os.symlink(found, bin_dir / tool)
    return str(bin_dir)
