"""Fixtures for dispatch tests.

``sshd`` is a real loopback OpenSSH server, session-scoped (one per xdist worker, on its own
free port); other suites may reuse it: it logs in as the current user with ``sshd.user_key``.
``backend_ws`` is a workspace with one host named ``box`` (4 slots), on this machine or over
SSH, so the same job tests run on both backends. A suite marked ``engines`` runs the local
variant on both store engines and the SSH one on SQLite only: the store writes are the same
on either backend, so PostgreSQL gains nothing from a second, slower pass over SSH. ``proxy`` sits in front of sshd and can cut
every connection (a network drop) or stop listening (a box gone dark).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from dispatch_helpers import CutProxy, add_local_host, add_ssh_host, trust
from slurm_fixtures import slurm_acct_lab, slurm_lab, slurm_sshd  # noqa: F401

from helm.remote.loopback import LoopbackSshd, sshd_available
from helm.remote.slurmlab import LocalSlurm
from helm.workspace import Workspace


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the SSH x PostgreSQL combination of ``backend_ws`` tests (see above)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        both = params.get("backend_ws") == "ssh" and params.get("store_engine") == "postgres"
        (drop if both else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    if not sshd_available():
        pytest.fail("OpenSSH server not installed (/usr/sbin/sshd): apt-get install openssh-server")
    server = LoopbackSshd.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


# Multi-GPU jobs start through the host's launcher template; in tests it runs one process and
# says how many it was asked for, instead of paying for torch.distributed.
LAUNCHER = f"env HELM_NPROC={{nproc}} {sys.executable}"


@pytest.fixture(params=["local", "ssh"])
def backend_ws(request: pytest.FixtureRequest, ws: Workspace) -> Workspace:
    if request.param == "ssh":
        sshd = request.getfixturevalue("sshd")
        trust(ws, sshd)
        add_ssh_host(ws, sshd, gpus=4, python=sys.executable, launcher=LAUNCHER)
    else:
        add_local_host(ws, gpus=4, launcher=LAUNCHER)
    return ws


@pytest.fixture
async def proxy(sshd: LoopbackSshd) -> AsyncIterator[CutProxy]:
    p = await CutProxy(sshd.port).start()
    yield p
    await p.stop()


@pytest.fixture
def slurm_here(slurm_lab: LocalSlurm, monkeypatch: pytest.MonkeyPatch) -> LocalSlurm:  # noqa: F811
    """Slurm's commands run on this machine find the test cluster (as /etc/slurm would)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_lab.conf))
    return slurm_lab
