"""Host rows: the boxes jobs run on, as plain reads and writes over ``Db``.

``helm host``, the TUI's fleet pane and the demo read and change hosts through these; the
validation of what an operator typed (names, ``USER@HOST[:PORT]``, secrets split from the
environment) is ``helm.remote.hosts``. The dispatcher, which hands hosts to its boxes as ORM
objects, reads them in ``dispatch.fleet_state`` / ``dispatch.load_host``. Plain SQL keeps this
module free of SQLModel, so the TUI's worker can import it cheaply.
"""

from __future__ import annotations

import time
from typing import Any

from helm.models.db import Db, NotFound, Row, insert_sql, one, set_clause

HOST_COLUMNS = frozenset(
    {
        "name",
        "kind",
        "ssh_user",
        "ssh_host",
        "ssh_port",
        "identity",
        "gpus",
        "workdir",
        "data_dir",
        "python",
        "launcher",
        "env_json",
        "enabled",
        "created_at",
        "checked_at",
        "reachable",
        "check_json",
        "slurm_json",
        "price_per_gpu_hour",
    }
)
"""The columns of ``host`` a caller may write by name (all but ``id``; see ``tables.Host``)."""


def list_hosts(db: Db) -> list[Row]:
    """Every host, disabled ones too, ordered by name."""
    return db.rows("SELECT * FROM host ORDER BY name")


def find_host(db: Db, name: str) -> Row | None:
    """The host called ``name``, or None."""
    return one(db, "SELECT * FROM host WHERE name = :n", {"n": name})


def get_host(db: Db, name: str) -> Row:
    """The host called ``name``; NotFound if there is none."""
    row = find_host(db, name)
    if row is None:
        raise NotFound(f"no host {name!r}")
    return row


def find_local_host(db: Db) -> Row | None:
    """The first host that is this machine (``kind = 'local'``), or None."""
    return one(db, "SELECT * FROM host WHERE kind = :k ORDER BY id LIMIT 1", {"k": "local"})


def insert_host(
    db: Db,
    *,
    name: str,
    kind: str,
    gpus: int,
    workdir: str,
    ssh_user: str | None = None,
    ssh_host: str | None = None,
    ssh_port: int = 22,
    identity: str | None = None,
    data_dir: str | None = None,
    python: str | None = None,
    launcher: str | None = None,
    env_json: str = "{}",
    slurm_json: str = "{}",
    price_per_gpu_hour: float | None = None,
) -> int:
    """Record a new, enabled, never-checked host; returns its id (names are unique)."""
    values: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "ssh_user": ssh_user,
        "ssh_host": ssh_host,
        "ssh_port": ssh_port,
        "identity": identity,
        "gpus": gpus,
        "workdir": workdir,
        "data_dir": data_dir,
        "python": python,
        "launcher": launcher,
        "env_json": env_json,
        "enabled": True,
        "created_at": time.time(),
        "check_json": "{}",
        "slurm_json": slurm_json,
        "price_per_gpu_hour": price_per_gpu_hour,
    }
    return db.insert(insert_sql("host", values, HOST_COLUMNS), values)


def edit_host(db: Db, name: str, /, **fields: Any) -> None:
    """Set these columns of the host called ``name``; NotFound if there is none."""
    if not fields:
        get_host(db, name)
        return
    sets = set_clause("host", fields, HOST_COLUMNS)
    if db.execute(f"UPDATE host SET {sets} WHERE name = :name_", {**fields, "name_": name}) == 0:
        raise NotFound(f"no host {name!r}")


def set_host_price(db: Db, name: str, price_per_gpu_hour: float | None) -> None:
    """What one GPU-hour on the host costs (USD; None: unknown). Tries that end from now on
    are charged at it; what earlier tries cost stays as it was recorded."""
    edit_host(db, name, price_per_gpu_hour=price_per_gpu_hour)


def set_host_enabled(db: Db, name: str, enabled: bool) -> None:
    """Take a box out of placement (jobs running there finish and are watched), or back in."""
    edit_host(db, name, enabled=bool(enabled))


def delete_host(db: Db, name: str) -> None:
    """Forget the host called ``name``; NotFound if there is none."""
    if db.execute("DELETE FROM host WHERE name = :n", {"n": name}) == 0:
        raise NotFound(f"no host {name!r}")
