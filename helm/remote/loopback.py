"""A throwaway OpenSSH server on 127.0.0.1, for tests, benches and trying helm out.

Dispatch is only believable against a real sshd: real key exchange, real SFTP, real
session teardown. This starts Debian's ``/usr/sbin/sshd`` in the foreground on a free
unprivileged port, with a host key and a user key made for it in a private folder, accepting
only that user key for the current user. ``stop()`` ends it by its pid.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def sshd_available() -> bool:
    return Path(SSHD).is_file() and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_key(path: Path) -> Path:
    """A fresh ed25519 key pair without passphrase at ``path`` (and ``path.pub``)."""
    _keygen(path)
    return path


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "helm-loopback", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class LoopbackSshd:
    """A running sshd; ``user_key`` logs in as ``user`` on ``127.0.0.1:port``."""

    root: Path
    port: int
    user: str
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def user_key(self) -> Path:
        return self.root / "user_ed25519"

    @property
    def host_key_pub(self) -> str:
        return (self.root / "host_ed25519.pub").read_text().split()[1]

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} ssh-ed25519 {self.host_key_pub}\n"

    def ssh_target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, root: Path, *, timeout_s: float = 15.0, extra_config: list[str] | None = None
    ) -> LoopbackSshd:
        """Start sshd in ``root``. ``extra_config``: more ``sshd_config`` lines, e.g.
        ``SetEnv SLURM_CONF=...`` so every session on it finds a test cluster, as a login
        node's shell finds ``/etc/slurm/slurm.conf``."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        _keygen(root / "host_ed25519")
        _keygen(root / "user_ed25519")
        (root / "authorized_keys").write_text((root / "user_ed25519.pub").read_text())
        server = cls(root=root, port=free_port(), user=getpass.getuser())
        (root / "sshd_config").write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"HostKey {root / 'host_ed25519'}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "Subsystem sftp internal-sftp",
                    "MaxSessions 200",
                    "MaxStartups 200:30:400",
                    "ClientAliveInterval 0",
                    "LogLevel ERROR",
                    *(extra_config or ()),
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        server._spawn(timeout_s)
        return server

    def _spawn(self, timeout_s: float) -> None:
        """Start sshd on ``self.port`` and wait until it greets."""
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115  (owned by the child)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config"), "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.root / "sshd.log").read_text()[-500:]
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start listening on port {self.port}")

    def use_host_key(self, key: Path, *, timeout_s: float = 15.0) -> None:
        """Restart on the same port presenting ``key`` (a box reinstalled, or an impostor).

        ``key`` is a private key file made by ``ssh-keygen``; its ``.pub`` must sit beside it.
        """
        self.stop()
        for suffix in ("", ".pub"):
            dest = self.root / f"host_ed25519{suffix}"
            shutil.copyfile(f"{key}{suffix}", dest)
            os.chmod(dest, 0o600)
        self._spawn(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
