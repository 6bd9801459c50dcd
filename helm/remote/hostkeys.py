"""Host keys: refuse what nobody trusted, and let a person trust a key after seeing it.

Connecting to a box that presents an unknown key (or, worse, a changed one) would hand the
code, the secrets in its environment and the results to whoever answers. helm therefore
checks keys against the workspace's ``known_hosts`` (keys trusted with ``helm host trust``),
the user's ``~/.ssh/known_hosts`` and the system's, and fails with the key's fingerprint in
the message so the user can compare it with the box's before trusting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


def user_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def known_hosts_blob(workspace_file: Path) -> bytes:
    """Every trusted key line, from the workspace, the user and the system, as one blob."""
    parts: list[bytes] = []
    for path in (workspace_file, user_known_hosts(), SYSTEM_KNOWN_HOSTS):
        try:
            parts.append(path.read_bytes())
        except OSError:
            continue
    return b"\n".join(parts) + b"\n"


def host_pattern(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: Any) -> str:
    """``ssh-ed25519 SHA256:...``: what ``ssh-keygen -lf`` prints, for comparing by eye."""
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


@dataclass(frozen=True)
class Target:
    """Where a host name really points once ``~/.ssh/config`` has been applied."""

    host: str
    port: int


def resolve(ssh_host: str, port: int | None) -> Target:
    """Apply the user's ssh config (HostName, Port) the way the connection will."""
    import asyncssh

    kwargs: dict[str, Any] = {"host": ssh_host}
    if port:
        kwargs["port"] = port
    try:
        opts = asyncssh.SSHClientConnectionOptions(**kwargs)
        return Target(str(opts.host), int(opts.port or 22))
    except Exception:  # an unreadable config must not stop a plain host from resolving
        return Target(ssh_host, port or 22)


def known_keys(blob: bytes, target: Target) -> list[Any]:
    """The keys trusted for this host and port (empty: the host is unknown)."""
    import asyncssh

    try:
        known = asyncssh.import_known_hosts(blob.decode(errors="replace"))
        trusted = known.match(target.host, "", target.port)[0]
    except (ValueError, asyncssh.KeyImportError):
        return []
    return list(trusted)


async def fetch_key(target: Target, *, timeout: float = 15.0) -> Any:
    """The key the server presents (no authentication, nothing trusted)."""
    import asyncio

    import asyncssh

    key = await asyncio.wait_for(
        asyncssh.get_server_host_key(target.host, target.port), timeout=timeout
    )
    if key is None:
        raise ValueError(f"{target.host}:{target.port} presented no host key")
    return key


def untrusted_message(name: str, target: Target, key: Any, known: list[Any]) -> str:
    where = f"{target.host}:{target.port}"
    if known:
        was = ", ".join(fingerprint(k) for k in known)
        return (
            f"host {name} ({where}) presented a CHANGED host key {fingerprint(key)} "
            f"(trusted: {was}); refusing to connect. If the box was reinstalled, remove the old "
            f"key from known_hosts and run `helm host trust {name}`."
        )
    return (
        f"host {name} ({where}) presented an unknown host key {fingerprint(key)}; refusing to "
        f"connect. If that is the box's key, run `helm host trust {name}`."
    )


def record_trust(path: Path, target: Target, key: Any) -> str:
    """Append the key to the workspace's known_hosts; returns the line written."""
    line = f"{host_pattern(target.host, target.port)} {key.export_public_key().decode().strip()}"
    existing = path.read_text() if path.exists() else ""
    if line not in existing.splitlines():
        with path.open("a") as fh:
            if existing and not existing.endswith("\n"):
                fh.write("\n")
            fh.write(line + "\n")
    return line
