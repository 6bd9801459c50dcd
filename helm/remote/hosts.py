"""Hosts: how a ``Host`` row becomes a connected box, and how hosts are added and removed.

Shared by the CLI (``helm host ...``), the daemon and the benches, so that the defaults
(which interpreter, which work folder) and the checks of what an operator typed are decided in
one place; the rows themselves are read and written by ``helm.models.hosts``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from sqlmodel import Session

from helm.models import hosts
from helm.models.db import Db, db_of
from helm.models.job_life import load_host
from helm.models.jobs import active_job_on
from helm.models.tables import Host
from helm.remote.backend import Box
from helm.remote.launch import check_env_keys
from helm.remote.secrets import SecretStore, classify, resolve_env
from helm.remote.slurm_conf import SlurmSettings
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
    """The host's environment for every job on it, secrets filled back in."""
    stored = json.loads(host.env_json or "{}")
    return resolve_env(stored, SecretStore(ws.root).get(f"host:{host.name}"))


def make_box(
    ws: Workspace, host: Host, *, keepalive_s: float = 5.0, sftp_timeout_s: float = 30.0
) -> Box:
    """The host's box, not connected yet (asyncssh is imported only for an SSH host)."""
    if host.kind == "local" or (host.kind == "slurm" and not host.ssh_host):
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
        sftp_timeout_s=sftp_timeout_s,
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
    slurm: SlurmSettings | None = None,
    identity: str | None = None,
    gpus: int | None = None,
    workdir: str | None = None,
    data: str | None = None,
    python: str | None = None,
    launcher: str | None = None,
    env: Mapping[str, str] | None = None,
    price: float | None = None,
) -> Host:
    """Register a box from what the operator typed, in the caller's transaction.

    Secret-looking environment values go to ``secrets.json``; the row keeps them masked.
    A Slurm host (``slurm``) reaches its login node over ``ssh``, or runs Slurm's commands
    on this machine without it. Raises ValueError for anything the operator must fix.
    """
    if not _NAME.match(name):
        raise ValueError(f"bad host name {name!r}: letters, digits, '.', '_', '-'")
    if slurm is not None and local:
        raise ValueError(
            "--slurm and --local do not go together (without --ssh, the Slurm"
            " commands run on this machine)"
        )
    if slurm is None and local == bool(ssh):
        raise ValueError("give exactly one of --ssh USER@HOST[:PORT], --local or --slurm")
    db = db_of(session)
    if hosts.find_host(db, name) is not None:
        raise ValueError(f"host {name!r} exists; remove it first (helm host rm {name})")
    if gpus is not None and gpus < 1:
        raise ValueError("--gpus must be at least 1")
    check_price(price)
    env = dict(env or {})
    check_env_keys(env)
    public, secrets = classify(ws.root, env)  # the one rule, config.toml's names included
    user = hostname = None
    port = 22
    if local:
        workdir = workdir or str(ws.root / "boxes" / name)
    else:
        if ssh is not None:
            user, hostname, given = parse_target(ssh)
            port = given or 22
        workdir = workdir or f"~/helm-jobs/{ws.campaign_id}"
    if slurm is not None:
        if gpus is not None:
            raise ValueError("a Slurm host takes --gpus-per-node and --max-nodes, not --gpus")
        gpus = max(1, slurm.max_gpus)
    here = local or (slurm is not None and ssh is None)
    hosts.insert_host(
        db,
        name=name,
        kind="slurm" if slurm is not None else "local" if local else "ssh",
        ssh_user=user,
        ssh_host=hostname,
        ssh_port=port,
        gpus=gpus if gpus is not None else (1 if local else 8),
        workdir=workdir,
        data_dir=str(Path(data).expanduser()) if (data and here) else data,
        python=python,
        launcher=launcher,
        env_json=json.dumps(public),
        identity=str(Path(identity).expanduser()) if identity else None,
        slurm_json=slurm.to_json() if slurm is not None else "{}",
        price_per_gpu_hour=price,
    )
    SecretStore(ws.root).put(f"host:{name}", secrets)
    return load_host(session, name)


def check_price(price: float | None) -> None:
    """A price per GPU-hour is a finite amount of at least zero (None: unknown)."""
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise ValueError(f"--price must be a number of USD per GPU-hour, at least 0: {price}")


def set_price(db: Db, name: str, price: float | None) -> None:
    """Change a host's price per GPU-hour (NotFound if there is no such host)."""
    check_price(price)
    hosts.set_host_price(db, name, price)


def remove_host(ws: Workspace, db: Db, name: str) -> None:
    """Forget a host and its secrets; refused (ValueError) while a job holds GPUs there."""
    hosts.get_host(db, name)
    busy = active_job_on(db, name)
    if busy is not None:
        raise ValueError(f"host {name!r} runs job {busy}; cancel it or wait first")
    hosts.delete_host(db, name)
    SecretStore(ws.root).drop(f"host:{name}")
