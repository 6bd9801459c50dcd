"""This machine as a box: the same life cycle as SSH, with no network in between.

Used for ``helm host add NAME --local`` (the demo's CPU host, or a workstation's own GPUs)
and by tests where SSH is not the point. Jobs still run detached under ``setsid`` through
``/bin/sh``, so they survive the daemon exactly as they do on a remote box.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from helm.remote.backend import BoxError, CommandResult


class LocalBox:
    """A ``Box`` whose files and processes are local; it is never unreachable."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def down_since(self) -> float | None:
        return None

    connected = True

    def connects_marker(self) -> int:
        return 0

    async def ensure(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, script: str, *, timeout: float | None = 60.0) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise BoxError(f"{self.name}: command timed out after {timeout}s") from exc
        return CommandResult(proc.returncode or 0, out.decode(errors="replace"), err.decode())

    async def realpath(self, path: str) -> str:
        return os.path.realpath(os.path.expanduser(path))

    async def makedirs(self, path: str) -> None:
        await asyncio.to_thread(os.makedirs, path, exist_ok=True)

    async def put_tree(self, local_dir: Path, remote_dir: str) -> None:
        await asyncio.to_thread(shutil.copytree, local_dir, remote_dir, dirs_exist_ok=True)

    async def write_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        def write() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, mode)

        await asyncio.to_thread(write)

    async def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    async def read_from(
        self, path: str, offset: int, limit: int, *, keep_open: bool = False
    ) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(limit)
        except FileNotFoundError:
            return None

    def forget(self, path: str) -> None:
        return None

    async def size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    async def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    async def get(self, path: str, local: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, path, local)

    async def readlink(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None
