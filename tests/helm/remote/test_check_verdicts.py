"""``host check`` verdicts: each problem with its fix, blockers setting the exit status.

The GPU cases need an nvidia-smi, which cannot exist here: those tests start a second
loopback sshd whose sessions get a PATH with a fake ``nvidia-smi`` script first (it prints
what a 2 x H100 box with driver 550 / CUDA 12.4 prints). Everything else is real: sshd, the
check script, the box's torch (helm's own CPU build), the store.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_helpers import add_ssh_host, trust

from helm.remote.check import BLOCKER, WARNING, parse_check, verdicts
from helm.remote.loopback import LoopbackSshd
from helm.remote.setup import SetupError, SetupPlan, pip_commands, torch_build
from helm.workspace import Workspace

FAKE_SMI = """#!/bin/sh
# stands in for nvidia-smi on a 2 x H100 box (none exists on the test machine)
case "$1" in
  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-a)"; echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-b)";;
  --query-gpu=*) echo "0, NVIDIA H100 80GB HBM3, 81559, 1, 0, 30"; echo "1, NVIDIA H100 80GB HBM3, 81559, 1, 0, 31";;
  *) echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |";;
esac
"""


@pytest.fixture
def gpu_sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    """A loopback sshd whose sessions find the fake nvidia-smi first on their PATH."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(FAKE_SMI)
    (fake / "nvidia-smi").chmod(0o755)
    server = LoopbackSshd.start(
        tmp_path / "sshd", extra_config=[f"SetEnv PATH={fake}:/usr/local/bin:/usr/bin:/bin"]
    )
    yield server
    server.stop()


def test_a_gpu_box_with_cpu_torch_and_fewer_gpus_than_declared_is_blocked(
    ws: Workspace, gpu_sshd: LoopbackSshd, tmp_path: Path, helm
) -> None:
    trust(ws, gpu_sshd)
    add_ssh_host(ws, gpu_sshd, "gpu", gpus=4, python=sys.executable, workdir=str(tmp_path / "w"))
    res = helm("host", "check", "gpu")
    assert res.code == 1, res.out
    assert "2x NVIDIA H100 80GB HBM3" in res.out
    assert "problem: torch 2.13.0+cpu has no CUDA on a box with 2 GPUs" in res.out
    assert "fix: helm host setup gpu --torch auto" in res.out
    assert "problem: 2 GPUs found, the host is declared with 4" in res.out
    assert "verdict: NOT READY (2 to fix)" in res.out
    found = helm("host", "check", "gpu", "--json").json()
    assert {v["level"] for v in found["verdicts"]} == {BLOCKER}
    assert len(found["problems"]) == 2


def test_setup_maps_the_driver_to_its_torch_build(
    ws: Workspace, gpu_sshd: LoopbackSshd, tmp_path: Path, helm
) -> None:
    trust(ws, gpu_sshd)
    add_ssh_host(ws, gpu_sshd, "gpu", gpus=2, workdir=str(tmp_path / "w"))
    empty = tmp_path / "nowheels"  # offline and empty: setup stops at pip, with its reason
    empty.mkdir()
    res = helm("host", "setup", "gpu", "--wheels", str(empty), "--base-python", sys.executable)
    assert res.code != 0
    assert "step 1/6 driver: done" in res.out and "driver 550.54.15, CUDA 12.4, 2 GPUs" in res.out
    assert "torch build cu124 (for the driver's CUDA 12.4)" in res.out
    assert "No matching distribution" in res.err


def test_torch_build_table_and_pip_sources() -> None:
    assert torch_build(None) == "cpu"
    assert [torch_build(c) for c in ((12, 4), (12, 5), (12, 8), (13, 0), (11, 8))] == [
        "cu124", "cu124", "cu128", "cu128", "cu118"
    ]  # fmt: skip
    with pytest.raises(SetupError, match="upgrade the driver"):
        torch_build((11, 4))
    online = pip_commands(SetupPlan(torch="2.6.0", flash_attn=True), "cu126")
    assert online[0] == ["--index-url", "https://download.pytorch.org/whl/cu126", "torch==2.6.0"]
    assert online[1] == ["numpy", "sentencepiece", "zstandard"]
    assert online[2][-1] == "flash-attn"
    offline = pip_commands(SetupPlan(wheels=("/w", "http://m/w")), "cpu")
    assert offline[0] == ["--no-index", "--find-links=/w", "--find-links=http://m/w", "torch"]
    with pytest.raises(ValueError, match="--torch must be auto"):
        SetupPlan(torch="nightly")


def _check(**sections: str) -> dict:
    base = {"python": "3.11.7", "torch": "2.6.0 True", "setsid": "/usr/bin/setsid",
            "disk": "/dev/x 100 0 104857600 0% /", "smi": "/usr/bin/nvidia-smi"}  # fmt: skip
    base.update(sections)
    text = "".join(f"@@{k}\n{v}\n" for k, v in base.items())
    return parse_check(text, has_data="data" in sections)


def test_each_problem_names_its_fix() -> None:
    low = verdicts(_check(disk="/dev/x 100 0 2097152 0% /"), host="b")  # 2 GB free
    assert low[0]["level"] == BLOCKER and low[0]["problem"].startswith("low disk space: 2.0 GB")
    assert "at least 5 GB" in low[0]["problem"] and "bigger disk" in low[0]["fix"]
    missing = verdicts(_check(data="0\n0\nno"), host="b")
    assert missing[0]["fix"] == "helm host setup b --data sp8192"
    no_torch = verdicts(_check(torch="Traceback"), host="b")
    assert no_torch[0]["problem"] == "torch not importable"
    assert no_torch[0]["fix"].startswith("helm host setup b")
    cpu = verdicts(_check(smi="missing", torch="2.6.0 False"), host="b", declared_gpus=8)
    assert [v["level"] for v in cpu] == [WARNING], "CPU-only: said, not blocking"
    assert "training runs on CPU, only for tiny smoke runs" in cpu[0]["fix"]
    assert verdicts(_check(), host="b") == []
