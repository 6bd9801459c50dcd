"""Hosts: how a ``Host`` row becomes a connected box, and how hosts are added and removed.

Shared by the CLI (``helm host ...``), the daemon and the benches, so that the defaults
(which interpreter, which work folder) are decided in one place.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from sqlmodel import Session, select

from helm.models.tables import Host
from helm.remote.backend import Box
from helm.remote.launch import check_env_keys
from helm.remote.secrets import SecretStore, split_env
from helm.workspace import Workspace

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


def parse_target(text: str) -> tuple[str | None, str, int | None]:
    """``[USER@]HOST[:PORT]`` (``[::1]:22`` for IPv6) into its parts."""
    m = _TARGET.match(text.strip())
    if not m:
        raise ValueError(f"bad --ssh target {text!r}: expected USER@HOST[:PORT]")
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    return m.group("user"), m.group("host").strip("[]"), port


def python_for(host: Host) -> str:
    """The interpreter jobs run with: the host's ``--python``, else this helm's own on a local
    host (it has torch), else ``python3`` on the box."""
    if host.python:
        return host.python
    return sys.executable if host.kind == "local" else "python3"


def host_env(ws: Workspace, host: Host) -> dict[str, str]:
    from helm.remote.secrets import resolve_env

    stored = json.loads(host.env_json or "{}")
    return resolve_env(stored, SecretStore(ws.root).get(f"host:{host.name}"))


def make_box(ws: Workspace, host: Host, *, keepalive_s: float = 5.0) -> Box:
    if host.kind == "local":
        from helm.remote.local import LocalBox

        return LocalBox(host.name)
    from helm.remote.ssh import SshBox

    return SshBox(
        host.name,
        host=host.ssh_host or host.name,
        port=host.ssh_port if host.ssh_port and host.ssh_port != 22 else None,
        username=host.ssh_user,
        identity=host.identity,
        known_hosts_file=ws.known_hosts_path,
        keepalive_s=keepalive_s,
    )


def box_key(host: Host) -> tuple:
    """What, if changed, needs a new connection."""
    return (host.kind, host.ssh_host, host.ssh_port, host.ssh_user, host.identity)


def add_host(
    ws: Workspace,
    session: Session,
    name: str,
    *,
    ssh: str | None = None,
    local: bool = False,
    identity: str | None = None,
    gpus: int | None = None,
    workdir: str | None = None,
    data: str | None = None,
    python: str | None = None,
    launcher: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Host:
    if not _NAME.match(name):
        raise ValueError(f"bad host name {name!r}: letters, digits, '.', '_', '-'")
    if local == bool(ssh):
        raise ValueError("give exactly one of --ssh USER@HOST[:PORT] or --local")
    if session.exec(select(Host).where(Host.name == name)).first() is not None:
        raise ValueError(f"host {name!r} exists; remove it first (helm host rm {name})")
    if gpus is not None and gpus < 1:
        raise ValueError("--gpus must be at least 1")
    env = dict(env or {})
    check_env_keys(env)
    public, secrets = split_env(env)
    host = Host(
        name=name,
        kind="local" if local else "ssh",
        gpus=gpus if gpus is not None else (1 if local else 8),
        data_dir=str(Path(data).expanduser()) if (data and local) else data,
        python=python,
        launcher=launcher,
        env_json=json.dumps(public),
        identity=str(Path(identity).expanduser()) if identity else None,
    )
    if local:
        host.workdir = workdir or str(ws.root / "boxes" / name)
    else:
        assert ssh is not None
        user, hostname, port = parse_target(ssh)
        host.ssh_user, host.ssh_host, host.ssh_port = user, hostname, port or 22
        host.workdir = workdir or f"~/helm-jobs/{ws.campaign_id}"
    session.add(host)
    session.flush()
    SecretStore(ws.root).put(f"host:{name}", secrets)
    return host


def get_host(session: Session, name: str) -> Host:
    from helm.models.db import NotFound

    host = session.exec(select(Host).where(Host.name == name)).first()
    if host is None:
        raise NotFound(f"no host {name!r}")
    return host


def set_enabled(session: Session, name: str, enabled: bool) -> Host:
    """Take a box out of placement (jobs running there finish and are watched), or back in."""
    host = get_host(session, name)
    host.enabled = enabled
    session.add(host)
    return host


def remove_host(ws: Workspace, session: Session, name: str) -> Host:
    from sqlmodel import col

    from helm.models.states import ACTIVE_JOB
    from helm.models.tables import Job

    host = get_host(session, name)
    busy = session.exec(select(Job).where(Job.host == name, col(Job.state).in_(ACTIVE_JOB))).first()
    if busy is not None:
        raise ValueError(f"host {name!r} runs job {busy.id}; cancel it or wait first")
    session.delete(host)
    SecretStore(ws.root).drop(f"host:{name}")
    return host
