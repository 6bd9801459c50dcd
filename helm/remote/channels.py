"""What runs over one SSH connection besides the connection itself: the persistent shells
that answer ``Box.run`` and the SFTP reads and writes, each written so that no task is ever
left behind.

asyncssh's own parallel SFTP I/O (``SFTPClientFile.read``/``write`` with a block size,
``SFTPClient.get``/``put``) runs every block in a task of its own; when the connection dies
(a keep-alive timeout) or the caller is cancelled (a timeout, a daemon stopping), those
tasks are abandoned with their exceptions and asyncio logs "Task exception was never
retrieved" into the daemon log. Here every read and write is a single SFTP request awaited
by its caller, several at once only through ``gather_all``, which waits for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncssh

from helm.remote.backend import BoxError

SAFE_BLOCK = 16 * 1024  # SFTP read/write size when the server states no limit
WINDOW = 16  # SFTP requests in flight for one large read or write
_PID_MARK = b"__helm_shell_pid__ "

T = TypeVar("T")
Request = Callable[[Awaitable[Any]], Awaitable[Any]]  # one SFTP request under its timeout


@dataclass
class Shell:
    """A long-lived ``sh`` on the box. sshd starts each session with ``setsid``, so ``pid``
    is also the process group of every command the shell runs (but not of jobs, which the
    launch starts under a ``setsid`` of their own)."""

    proc: asyncssh.SSHClientProcess
    pid: int


async def open_shell(conn: asyncssh.SSHClientConnection, timeout: float) -> Shell:
    """A new shell; if the caller is cancelled while it opens, it is closed once open (never
    left behind as an open channel nobody owns)."""
    task = asyncio.ensure_future(_start_shell(conn, timeout))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_opened)
        raise


async def _start_shell(conn: asyncssh.SSHClientConnection, timeout: float) -> Shell:
    proc = await conn.create_process("exec sh", encoding=None)
    try:
        # a marker, since the user's shell startup files may print before sh takes over
        proc.stdin.write(b"printf '\\n%s %d\\n' " + _PID_MARK.strip() + b" $$\n")
        await asyncio.wait_for(proc.stdout.readuntil(_PID_MARK), timeout)
        pid = int((await asyncio.wait_for(proc.stdout.readline(), timeout)).strip())
    except ValueError as exc:
        proc.close()
        raise BoxError(f"the box's sh did not report its pid: {exc}") from exc
    except BaseException:
        proc.close()
        raise
    return Shell(proc, pid)


def _close_opened(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().proc.close()


def retrieve(task: asyncio.Future) -> None:
    """Mark a fire-and-forget task's outcome as seen (its failure changes nothing)."""
    if not task.cancelled():
        task.exception()


async def close_file(fh: asyncssh.SFTPClientFile, req: Request) -> None:
    """Close a remote handle; on a connection that is already gone there is nothing to close."""
    with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
        await req(fh.close())


async def gather_all(requests: Iterable[Awaitable[T]]) -> list[T]:
    """Run requests together and wait for every one of them (none is left running or
    unretrieved when one fails); the first failure is raised."""
    results = await asyncio.gather(*requests, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


async def read_range(
    fh: asyncssh.SFTPClientFile, offset: int, limit: int, block: int, req: Request
) -> bytes:
    """Up to ``limit`` bytes from ``offset``, in single-request reads of ``block`` bytes.

    The first read goes alone (a growing log usually has less than one block to give);
    only when it came back full are the rest asked for, ``WINDOW`` at a time. A short read is
    the end of the file for now: whatever was asked after it is dropped, so the bytes
    returned are always contiguous.
    """
    first = await req(fh.read(min(block, limit), offset))
    if len(first) < min(block, limit):
        return first
    parts, got = [first], len(first)
    while got < limit:
        starts = list(range(offset + got, offset + limit, block))[:WINDOW]
        sizes = [min(block, offset + limit - o) for o in starts]
        chunks = await gather_all(req(fh.read(n, o)) for o, n in zip(starts, sizes, strict=True))
        for chunk, n in zip(chunks, sizes, strict=True):
            parts.append(chunk)
            got += len(chunk)
            if len(chunk) < n:
                return b"".join(parts)
    return b"".join(parts)


async def write_all(fh: asyncssh.SFTPClientFile, data: bytes, block: int, req: Request) -> None:
    """Write ``data`` from offset 0 in single requests of ``block`` bytes, ``WINDOW`` at once."""
    starts = list(range(0, len(data), block))
    for i in range(0, len(starts), WINDOW):
        await gather_all(req(fh.write(data[o : o + block], o)) for o in starts[i : i + WINDOW])
