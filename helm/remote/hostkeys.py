"""Host keys: refuse what nobody trusted, and let a person trust a key after seeing it.

Connecting to a box that presents an unknown key (or, worse, a changed one) would hand the
code, the secrets in its environment and the results to whoever answers. helm therefore
checks keys against the workspace's ``known_hosts`` (keys trusted with ``helm host trust``),
the user's ``~/.ssh/known_hosts`` and the system's, and fails with the key's fingerprint in
the message so the user can compare it with the box's before trusting it.

Trust *replaces*: the workspace file keeps one key per host, port and key type, the one
trusted last, and once it names a host its keys are the only ones accepted for that host (an
old key still listed in ``~/.ssh/known_hosts`` does not come back). A key that was trusted
once and replaced since is therefore a changed key like any other.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


def user_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def _match_file(path: Path, host: str, addr: str, port: int | None) -> tuple[list, list, list]:
    """(trusted keys, CA keys, revoked keys) that one known_hosts file holds for a host."""
    import asyncssh

    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [], [], []
    try:
        found = asyncssh.import_known_hosts(text).match(host, addr, port)
    except (ValueError, asyncssh.KeyImportError):
        return [], [], []
    return list(found[0]), list(found[1]), list(found[2])


def matcher(workspace_file: Path) -> Callable[[str, str, int | None], tuple[list, list, list]]:
    """asyncssh's ``known_hosts`` for a connection: the workspace's keys for a host, if it
    has any, else the user's and the system's; CA and revoked entries from all three."""

    def match(host: str, addr: str, port: int | None) -> tuple[list, list, list]:
        own = _match_file(workspace_file, host, addr, port)
        rest = [_match_file(p, host, addr, port) for p in (user_known_hosts(), SYSTEM_KNOWN_HOSTS)]
        keys = own[0] or [k for r in rest for k in r[0]]
        cas = own[1] + [k for r in rest for k in r[1]]
        revoked = own[2] + [k for r in rest for k in r[2]]
        return keys, cas, revoked

    return match


def trusted_keys(workspace_file: Path, target: Target) -> list[Any]:
    """The keys a connection to this host and port accepts (empty: the host is unknown)."""
    return matcher(workspace_file)(target.host, "", target.port)[0]


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


async def fetch_key(
    target: Target, known: list[Any] | None = None, *, timeout: float = 15.0
) -> Any:
    """The key the server presents (no authentication, nothing trusted).

    With ``known`` keys, the key types the connection itself would ask for come first (a
    connection offers only the types of its trusted keys): a box with an ed25519 and an
    ECDSA key, trusted by its ECDSA key, is not "changed" because a bare look prefers
    ed25519. Only when it has no key of those types any more is its preferred one returned.
    """
    import asyncio

    import asyncssh

    algs = [a.decode() for k in known or [] for a in k.sig_algorithms]
    key = None
    if algs:
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(target.host, target.port, server_host_key_algs=algs),
                timeout=timeout,
            )
    if key is None:
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
            f"(trusted: {was}); refusing to connect. If the box was reinstalled or its key "
            f"rotated, check the new fingerprint on the box itself and run "
            f"`helm host trust {name}`."
        )
    return (
        f"host {name} ({where}) presented an unknown host key {fingerprint(key)}; refusing to "
        f"connect. If that is the box's key, run `helm host trust {name}`."
    )


def changed_banner(name: str, target: Target, key: Any, known: list[Any]) -> str:
    """What a person reads before replacing a trusted key: it may be a man in the middle."""
    rule = "@" * 64
    lines = [
        rule,
        f"@  WARNING: THE HOST KEY OF {name} HAS CHANGED".ljust(63) + "@",
        rule,
        f"{name} ({target.host}:{target.port}) no longer presents the key trusted for it.",
        "Either the box was reinstalled or its key rotated, or someone is intercepting the",
        "connection (a man in the middle) and would receive the code, secrets and results.",
    ]
    lines += [f"  trusted until now: {fingerprint(k)}" for k in known]
    lines += [
        f"  presented now:     {fingerprint(key)}",
        "Compare with the fingerprint the box itself shows (its console, or your provider's",
        f"panel): ssh-keygen -lf /etc/ssh/ssh_host_{_short_type(key)}_key.pub",
    ]
    return "\n".join(lines)


def _short_type(key: Any) -> str:
    alg = key.get_algorithm()
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(alg, "ecdsa")


def fingerprint_matches(key: Any, given: str) -> bool:
    """Whether ``given`` (``SHA256:...``, as ssh-keygen -l prints it, with or without the
    key type in front) is this key's fingerprint."""
    words = given.split()
    return bool(words) and words[-1] == key.get_fingerprint("sha256")


def record_trust(path: Path, target: Target, key: Any) -> str:
    """Trust ``key`` for the target, *replacing* any key of the same type the workspace
    trusted for it before (plain and hashed entries); returns the line written.

    The file is rewritten whole (to a temporary name, then renamed) so a crash leaves the
    old trust or the new one, never a mix.
    """
    pattern = host_pattern(target.host, target.port)
    algorithm = key.get_algorithm()
    line = f"{pattern} {key.export_public_key().decode().strip()}"
    try:
        existing = path.read_text().splitlines()
    except FileNotFoundError:
        existing = []
    kept = [k for old in existing if (k := _without(old, pattern, algorithm)) is not None]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join([*kept, line]) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return line


def _without(line: str, pattern: str, algorithm: str) -> str | None:
    """``line`` with ``pattern`` taken out of its hosts if it holds a key of ``algorithm``
    (None: nothing of the line is left). Comments, markers and other hosts stay as they are."""
    fields = line.split()
    if len(fields) < 3 or fields[0].startswith(("#", "@")) or fields[1] != algorithm:
        return line
    hosts = fields[0].split(",")
    left = [h for h in hosts if h != pattern and not _hashed_match(h, pattern)]
    if len(left) == len(hosts):
        return line
    if not left:
        return None
    return " ".join([",".join(left), *fields[1:]])


def _hashed_match(entry: str, pattern: str) -> bool:
    """OpenSSH's ``HashKnownHosts`` form: ``|1|base64(salt)|base64(HMAC-SHA1(salt, host))``."""
    parts = entry.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except ValueError:
        return False
    return hmac.compare_digest(hmac.new(salt, pattern.encode(), hashlib.sha1).digest(), digest)
