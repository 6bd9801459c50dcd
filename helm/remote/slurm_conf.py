"""A Slurm host's settings (``helm host add NAME --slurm ...``) and the shape of a request.

Kept apart from the commands (``helm.remote.slurm``) so that the scheduler, the CLI and the
host check read the same settings without importing any of the watcher's machinery. The
settings live in the host row's ``slurm_json``; a row without it is not a Slurm host.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<h>\d+):(?P<m>[0-5]?\d):(?P<s>[0-5]?\d)$")
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
DEFAULT_MAX_SUBMITTED = 4


def parse_time(text: str) -> int:
    """``HH:MM:SS`` or ``D-HH:MM:SS`` (Slurm's ``--time``) in seconds; ValueError if not."""
    m = _TIME.match(text.strip())
    if not m:
        raise ValueError(f"bad --time {text!r}: expected HH:MM:SS or D-HH:MM:SS")
    days = int(m.group("d") or 0)
    return ((days * 24 + int(m.group("h"))) * 60 + int(m.group("m"))) * 60 + int(m.group("s"))


def format_time(seconds: float) -> str:
    """Seconds as Slurm's ``--time`` (whole minutes, rounded up; at least one)."""
    minutes = max(1, -(-int(seconds) // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


@dataclass(frozen=True)
class SlurmSettings:
    """Where and how a Slurm host's jobs are submitted."""

    partition: str
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int = 8
    max_nodes: int = 1
    time_limit_s: int | None = None  # --time; None: the job's own limit plus a grace
    sbatch_args: tuple[str, ...] = field(default_factory=tuple)
    max_submitted: int = DEFAULT_MAX_SUBMITTED  # jobs helm keeps submitted to Slurm at once

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not _WORD.match(value):
                raise ValueError(f"bad --{name} {value!r}")
        if self.gpus_per_node < 0:
            raise ValueError("--gpus-per-node must be 0 or more")
        if self.max_nodes < 1:
            raise ValueError("--max-nodes must be at least 1")
        if self.max_submitted < 1:
            raise ValueError("--max-submitted must be at least 1")
        for arg in self.sbatch_args:
            if not arg.startswith("-"):
                raise ValueError(f"bad --sbatch-arg {arg!r}: give options, e.g. --constraint=h100")
            if "\x00" in arg or "\n" in arg:
                raise ValueError(f"bad --sbatch-arg {arg!r}")

    @property
    def max_gpus(self) -> int:
        """The most GPUs one job may ask for here (all nodes it may span)."""
        return self.gpus_per_node * self.max_nodes

    def shape(self, gpus: int) -> tuple[int, int]:
        """(nodes, GPUs per node) for a job of ``gpus`` GPUs; ValueError with the reason.

        Up to one node's GPUs run on one node; more span whole nodes (16 = 2 x 8), since a
        torchrun world split unevenly across nodes is slower than waiting for whole ones.
        """
        per = self.gpus_per_node
        if per == 0:
            return (1, 0)  # a CPU partition: GPUs are not asked for
        if gpus <= per:
            return (1, gpus)
        nodes, rest = divmod(gpus, per)
        if rest:
            raise ValueError(
                f"{gpus} GPUs do not fill whole nodes of {per} GPUs (ask for a multiple of {per})"
            )
        if nodes > self.max_nodes:
            raise ValueError(
                f"needs {nodes} nodes x {per} GPUs; this host allows at most {self.max_nodes}"
                " node(s) per job (--max-nodes)"
            )
        return (nodes, per)

    def to_json(self) -> str:
        data = asdict(self)
        data["sbatch_args"] = list(self.sbatch_args)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> SlurmSettings | None:
        """The settings of a host row, None when the row is not a Slurm host."""
        data = json.loads(text or "{}")
        if not data:
            return None
        data["sbatch_args"] = tuple(data.get("sbatch_args") or ())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
