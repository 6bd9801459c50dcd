"""Dispatcher tuning, with defaults for real boxes and a ``[remote]`` table in config.toml.

Tests and the bench shrink the timeouts; an operator may lengthen ``lost_after_s`` for a
flaky network. Every field is a plain number so the TOML stays obvious.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace

from helm.workspace import Workspace


@dataclass(frozen=True)
class RemoteSettings:
    tick_s: float = 0.2  # scheduling pass (queue -> staging latency)
    log_poll_s: float = 0.5  # how often a running job's log is read
    done_poll_s: float = 0.1  # how often each host's done-marker folder is listed
    alive_every_s: float = 2.0  # how often a job's process is looked for
    cancel_grace_s: float = 10.0  # TERM, then KILL after this long
    lost_after_s: float = 300.0  # unreachable this long: the job is lost (and requeued)
    retry_s: float = 1.0  # pause after a failed network operation
    check_every_s: float = 600.0  # host checks (0: only when asked)
    heartbeat_s: float = 5.0  # how often live jobs' heartbeat_at is written
    keepalive_s: float = 5.0  # SSH keep-alive interval; a silent peer is dead after 3 misses
    sftp_timeout_s: float = 30.0  # one SFTP request unanswered this long: the connection is dropped
    reserve_after_s: float = 60.0  # a job that waited this long gets a host drained for it
    agent_gpu_share: float = 0.5  # one agent may hold this share of the fleet while others wait
    reap_every_s: float = 60.0  # look for stray tries of lost jobs on each connected box (0: off)
    reap_min_age_s: float = 120.0  # never touch a job folder whose pid file is younger
    slurm_poll_s: float = 2.0  # how often a Slurm host's squeue is read (one call for its jobs)
    slurm_pause_s: float = 60.0  # a Slurm host that refused a submission for its settings

    @classmethod
    def load(cls, ws: Workspace) -> RemoteSettings:
        try:
            data = tomllib.loads(ws.config_path.read_text()).get("remote", {})
        except (OSError, tomllib.TOMLDecodeError):
            data = {}
        known = {f.name for f in fields(cls)}
        return replace(cls(), **{k: float(v) for k, v in data.items() if k in known})
