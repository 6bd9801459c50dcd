"""What the job life cycle needs from a box, whether it is this machine or one over SSH.

The life cycle (stage, launch, stream, finish, kill) is written once against this interface;
``LocalBox`` and ``SshBox`` differ only in how a POSIX shell script runs and how bytes move.
Every path here is a path on the box; every script is run by ``/bin/sh`` there (never the
user's login shell directly), so quoting with ``shlex.quote`` is always correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class BoxError(Exception):
    """The box cannot be reached right now (refused, timed out, connection dropped).

    Retryable: the caller waits and tries again, and a job only becomes ``lost`` once its box
    has been unreachable for longer than the configured timeout.
    """


class HostKeyError(BoxError):
    """The box presented a host key nobody trusted (or one that changed): never retried."""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Box(Protocol):
    """One host's connection, shared by every job on it."""

    name: str

    @property
    def down_since(self) -> float | None:
        """When the box became unreachable (wall clock), None while it is reachable."""
        ...

    @property
    def connected(self) -> bool:
        """Whether operations can go through right now without (re)connecting."""
        ...

    def connects_marker(self) -> int:
        """A number that changes whenever the connection was re-established."""
        ...

    async def ensure(self) -> None:
        """Connect if needed; raises BoxError (respecting the reconnect backoff)."""
        ...

    async def close(self) -> None: ...

    async def run(self, script: str, *, timeout: float | None = 60.0) -> CommandResult:
        """Run a POSIX sh script on the box and wait for it."""
        ...

    async def realpath(self, path: str) -> str:
        """An absolute path with ``~`` expanded (creates nothing)."""
        ...

    async def makedirs(self, path: str) -> None: ...

    async def put_tree(self, local_dir: Path, remote_dir: str) -> None:
        """Copy a local folder's contents into ``remote_dir`` (created if missing)."""
        ...

    async def write_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None: ...

    async def read_text(self, path: str) -> str | None:
        """A small file's text, or None when it does not exist."""
        ...

    async def read_from(
        self, path: str, offset: int, limit: int, *, keep_open: bool = False
    ) -> bytes | None:
        """Up to ``limit`` bytes from ``offset``; b'' at end of file, None if it doesn't exist.

        ``keep_open``: the file is read again and again (a growing log): keep its handle, so
        each later read is one request instead of open, read, close.
        """
        ...

    def forget(self, path: str) -> None:
        """Close a handle kept by ``read_from(keep_open=True)``."""
        ...

    async def size(self, path: str) -> int | None:
        """A file's size, or None when it does not exist."""
        ...

    async def listdir(self, path: str) -> list[str]:
        """Names in a folder; [] when it does not exist."""
        ...

    async def get(self, path: str, local: Path) -> None:
        """Download one file."""
        ...

    async def readlink(self, path: str) -> str | None:
        """A symlink's target, or None when it cannot be read (no such process, zombie ...)."""
        ...
