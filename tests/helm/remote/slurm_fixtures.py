"""Session fixtures for a real test Slurm cluster (see ``helm.remote.slurmlab``).

``slurm_lab`` is a one-node cluster (partition ``gpu``, GRES gpu:2) without accounting.
``slurm_sshd`` is a loopback sshd whose sessions get ``SLURM_CONF`` of that cluster through
``SetEnv``, so Slurm commands run over SSH on it reach the cluster as on a login node.
``slurm_acct_lab`` is a separate cluster with slurmdbd over a private MariaDB (~5 s to start,
so only tests that need ``sacct`` or enforced accounts/QOS should ask for it).
Missing packages fail the tests (never skip): CI installs them (``.ci/run``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helm.remote.loopback import LoopbackSshd, sshd_available
from helm.remote.slurmlab import LocalSlurm, accounting_available, slurm_available


def _require_slurm() -> None:
    why = slurm_available()
    if why is not None:
        pytest.fail(f"test Slurm cluster unavailable: {why}")


@pytest.fixture(scope="session")
def slurm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    _require_slurm()
    lab = LocalSlurm.start(tmp_path_factory.mktemp("slurm"))
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def slurm_sshd(
    tmp_path_factory: pytest.TempPathFactory, slurm_lab: LocalSlurm
) -> Iterator[LoopbackSshd]:
    if not sshd_available():
        pytest.fail("OpenSSH server not installed (/usr/sbin/sshd): apt-get install openssh-server")
    server = LoopbackSshd.start(
        tmp_path_factory.mktemp("slurm_sshd"), extra_config=[f"SetEnv SLURM_CONF={slurm_lab.conf}"]
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slurm_acct_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """A second cluster with slurmdbd over a private MariaDB: ``sacct`` answers, and the
    account ``helm`` and QOS ``small`` (at most gres/gpu=1 a job, refused at submit) exist."""
    why = accounting_available()
    if why is not None:
        pytest.fail(f"test Slurm cluster with accounting unavailable: {why}")
    lab = LocalSlurm.start(tmp_path_factory.mktemp("slurm_acct"), accounting=True)
    yield lab
    lab.stop()
