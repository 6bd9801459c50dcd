"""``helm host setup`` on the loopback OpenSSH box, for real.

The "box" is this machine reached over a real sshd: setup makes a real venv in the host's
work folder and pip installs real packages into it, offline, from a wheel folder this suite
prepares (the installed numpy, sentencepiece, zstandard and torch's own requirements
repacked as wheels, plus the real torch CPU wheel from /opt/wheels). The tiny dataset
(``--tiny``) stands in for the FineWeb download, which test_data_fetch_resume.py covers
against a local HTTP server. There is no nvidia-smi here: the box is CPU-only, and setup
must say so with its consequence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dispatch_helpers import add_ssh_host, trust
from wheel_kit import wheel_dir

from helm.models.hosts import get_host
from helm.remote.loopback import LoopbackSshd
from helm.remote.setup import STEPS
from helm.workspace import Workspace


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheel_dir(tmp_path_factory.mktemp("wheels"), torch=True)


def _setup_args(wheels: Path) -> list[str]:
    return ["host", "setup", "box", "--wheels", str(wheels), "--tiny", "--data", "sp8192",
            "--base-python", sys.executable]  # fmt: skip


def _collect(pipe, into: list[str]) -> None:  # noqa: ANN001
    for line in iter(pipe.readline, ""):
        into.append(line)


def _wait(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_setup_makes_the_box_ready_resumes_after_ctrl_c_and_redoes_nothing(
    ws: Workspace, sshd: LoopbackSshd, wheels: Path, tmp_path: Path, helm
) -> None:
    workdir = tmp_path / "boxwork"
    trust(ws, sshd)
    add_ssh_host(ws, sshd, "box", gpus=2, workdir=str(workdir))
    state = workdir / "setup" / "state.json"

    # 1. A first run, interrupted (SIGINT = Ctrl-C) once the packages are in.
    proc = subprocess.Popen(
        [sys.executable, "-m", "helm.cli", "--home", str(ws.root), *_setup_args(wheels)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HELM_HOME": str(ws.root)},
    )
    # Both streams read as they come: setup records a step before it prints "done", so
    # waiting on the record alone could interrupt it between the two.
    streams: dict[str, list[str]] = {"out": [], "err": []}
    readers = [
        threading.Thread(target=_collect, args=(pipe, streams[name]), daemon=True)
        for name, pipe in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    try:

        def packages_in() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"setup ended early: {streams}")
            recorded = state.is_file() and "packages" in state.read_text()
            return recorded and any("step 3/6 packages: done" in x for x in streams["out"])

        _wait(packages_in, 120, "the packages step")
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for reader in readers:
        reader.join(10)
    out, err = "".join(streams["out"]), "".join(streams["err"])
    assert proc.returncode != 0, out
    assert "interrupted: run `helm host setup box` again to continue" in err
    assert "step 1/6 driver: done" in out
    assert "CPU-only box; torch will be the CPU build; training runs on CPU, only for tiny" in out
    assert "step 3/6 packages: done" in out and "2.13.0+cpu" in out
    venv_python = workdir / "venv" / "bin" / "python"
    imports = "import torch, numpy, sentencepiece, zstandard; print(torch.__version__)"
    probe = subprocess.run([venv_python, "-c", imports], capture_output=True, text=True)
    assert probe.stdout.strip() == "2.13.0+cpu", probe.stderr
    with ws.db(write=False) as db:
        assert get_host(db, "box")["python"] == str(venv_python), "the host uses the venv"

    # 2. Run again: what was finished is skipped, the rest is done, the box is ready.
    res = helm(*_setup_args(wheels), "--json")
    assert res.code == 0, res.err
    report = res.json()
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert [status[n] for n in ("driver", "venv", "packages")] == ["skipped"] * 3
    assert status["data"] == "done"
    assert report["check"]["problems"] == []
    warning = [v for v in report["check"]["verdicts"] if v["level"] == "warning"]
    assert warning and warning[0]["problem"].startswith("no nvidia-smi: CPU-only box")
    assert "only for tiny smoke runs" in warning[0]["fix"]
    data_dir = workdir / "data"
    assert (data_dir / "datasets" / "fineweb10B_sp8192").is_dir()
    assert (workdir / "task" / "golf_task" / "train_gpt.py").is_file()
    with ws.db(write=False) as db:
        assert get_host(db, "box")["data_dir"] == str(data_dir)

    # 3. A third run redoes nothing: every step skipped, near-zero timings, pip not invoked.
    pip_log = workdir / "setup" / "pip.log"
    before = pip_log.stat()
    res = helm(*_setup_args(wheels))
    assert res.code == 0, res.err
    for i, name in enumerate(STEPS[:-1], 1):
        assert f"step {i}/6 {name}: skipped" in res.out
    assert "pip install" not in res.out
    after = pip_log.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = helm(*_setup_args(wheels), "--json").json()
    assert all(s["seconds"] < 5 for s in again["steps"][:-1]), again["steps"]
    assert "verdict: ready" in res.out

    # 4. host check agrees: green.
    check = helm("host", "check", "box")
    assert check.code == 0, check.out
    assert "verdict: ready" in check.out and "warning: no nvidia-smi" in check.out


def test_setup_refuses_an_untrusted_host_key_and_local_hosts(
    ws: Workspace, sshd: LoopbackSshd, tmp_path: Path, helm
) -> None:
    add_ssh_host(ws, sshd, "box", workdir=str(tmp_path / "w"))  # its key never trusted
    res = helm("host", "setup", "box", "--tiny")
    assert res.code != 0
    assert "host key" in res.err.lower() and "helm host trust" in res.err
    assert not (tmp_path / "w").exists(), "nothing done on a box whose key is not trusted"
    helm("host", "add", "here", "--local")
    res = helm("host", "setup", "here")
    assert res.code != 0 and "setup prepares SSH boxes" in res.err
    res = helm("host", "setup", "box", "--torch", "latest")
    assert res.code != 0 and "--torch must be auto or a version" in res.err


def test_step_state_is_verified_not_trusted(
    ws: Workspace, sshd: LoopbackSshd, tmp_path: Path, helm
) -> None:
    """A state file that claims a venv which is not there: the venv step runs anyway (and the
    packages step then fails here, offline, from an empty wheel folder, with pip's reason)."""
    workdir = tmp_path / "w"
    (workdir / "setup").mkdir(parents=True)
    (workdir / "setup" / "state.json").write_text(json.dumps({"venv": str(workdir / "venv")}))
    trust(ws, sshd)
    add_ssh_host(ws, sshd, "box", workdir=str(workdir))
    empty = tmp_path / "nowheels"
    empty.mkdir()
    res = helm("host", "setup", "box", "--wheels", str(empty), "--base-python", sys.executable)
    assert res.code != 0
    assert "step 2/6 venv: done" in res.out
    assert f"--no-index --find-links={empty} torch" in res.out
    assert "pip install torch failed" in res.err and "No matching distribution" in res.err
