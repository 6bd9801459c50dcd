"""A box over SSH: one asyncssh connection per host, shared by all its jobs, reconnected with
backoff, with keep-alives so a dead peer is noticed even when nothing is being sent.

Why one connection: opening SSH sessions is the slow part (key exchange, authentication),
and sshd limits unauthenticated connections; every job on a host multiplexes its SFTP
reads and its few commands over the same connection. Failures surface as ``BoxError`` (retry
later) or ``HostKeyError`` (a person must look: never retried silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from helm.remote import hostkeys
from helm.remote.backend import BoxError, CommandResult, HostKeyError
from helm.remote.channels import (
    SAFE_BLOCK,
    Shell,
    close_file,
    open_shell,
    read_range,
    retrieve,
    write_all,
)
from helm.remote.launch import kill_command

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
SHELLS_PER_HOST = 4  # concurrent commands per host (a slow host check must not block launches)
SFTP_TIMEOUT_S = 30.0  # one SFTP request (RemoteSettings.sftp_timeout_s in the daemon)
GET_CHUNK = 4 << 20  # a download is read this much at a time
# a download's local file could not be written: our disk, not the connection
LOCAL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

T = TypeVar("T")


class _Client(asyncssh.SSHClient):
    """Tells the box when the transport dies, so the next call reconnects."""

    def __init__(self, box: SshBox) -> None:
        self._box = box

    def connection_lost(self, exc: Exception | None) -> None:
        self._box._on_lost(exc)


class SshBox:
    """A ``Box`` reached over SSH (see ``helm.remote.backend``)."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int | None = None,
        username: str | None = None,
        identity: str | None = None,
        known_hosts_file: Path,
        keepalive_s: float = 5.0,
        keepalive_count: int = 3,
        connect_timeout_s: float = 15.0,
        sftp_timeout_s: float = SFTP_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.username = username
        self.identity = identity
        self.known_hosts_file = known_hosts_file
        self.keepalive_s = keepalive_s
        self.keepalive_count = keepalive_count
        self.connect_timeout_s = connect_timeout_s
        self.sftp_timeout_s = sftp_timeout_s
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._down_since: float | None = None
        self._backoff = 0.0
        self._next_try = 0.0
        self._last_error = ""
        self.connects = 0  # how many times a connection was opened (tests, stats)
        self._idle_shells: list[Shell] = []
        self._cleanups: set[asyncio.Task] = set()  # abandoned commands being killed
        self._handles: dict[str, asyncssh.SFTPClientFile] = {}  # growing files read often
        self._shell_slots = asyncio.Semaphore(SHELLS_PER_HOST)

    # Connection -------------------------------------------------------------------------
    @property
    def down_since(self) -> float | None:
        return self._down_since

    def connects_marker(self) -> int:
        """Changes with every new connection (caches keyed on it are per connection)."""
        return self.connects

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._sftp is not None

    def _on_lost(self, exc: Exception | None) -> None:
        self._idle_shells.clear()  # they belonged to the dead connection
        self._handles.clear()
        if self._conn is not None:
            self._conn = None
            self._sftp = None
            if self._down_since is None:
                self._down_since = time.time()
            self._last_error = f"connection lost: {exc}" if exc else "connection closed"

    def _options(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "known_hosts": hostkeys.matcher(self.known_hosts_file),
            "keepalive_interval": self.keepalive_s,
            "keepalive_count_max": self.keepalive_count,
            "connect_timeout": self.connect_timeout_s,
            "client_factory": lambda: _Client(self),
        }
        if self.port:
            kwargs["port"] = self.port
        if self.username:
            kwargs["username"] = self.username
        if self.identity:
            kwargs["client_keys"] = [str(Path(self.identity).expanduser())]
        return kwargs

    async def ensure(self) -> None:
        if self.connected:
            return
        async with self._lock:
            if self.connected:
                return
            now = time.monotonic()
            if now < self._next_try:
                raise BoxError(
                    f"{self.name} unreachable ({self._last_error}); "
                    f"retrying in {self._next_try - now:.1f}s"
                )
            try:
                conn = await asyncssh.connect(self.host, **self._options())
                try:
                    sftp = await conn.start_sftp_client()
                except BaseException:
                    conn.abort()
                    raise
            except asyncssh.HostKeyNotVerifiable as exc:
                self._failed(str(exc))
                raise HostKeyError(await self._key_message()) from exc
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
                raise BoxError(f"{self.name} unreachable: {self._last_error}") from exc
            self._conn, self._sftp = conn, sftp
            self._down_since = None
            self._backoff = 0.0
            self._next_try = 0.0
            self.connects += 1

    def _failed(self, error: str) -> None:
        self._last_error = error
        if self._down_since is None:
            self._down_since = time.time()
        self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_START_S, self._backoff * 2))
        self._next_try = time.monotonic() + self._backoff

    async def _key_message(self) -> str:
        target = hostkeys.resolve(self.host, self.port)
        known = hostkeys.trusted_keys(self.known_hosts_file, target)
        try:
            key = await hostkeys.fetch_key(target, known)
        except Exception as exc:
            return f"host {self.name}: host key not trusted and could not be read: {exc}"
        return hostkeys.untrusted_message(self.name, target, key, known)

    async def close(self) -> None:
        if self._cleanups:  # abandoned commands still being killed over this connection
            _, late = await asyncio.wait(set(self._cleanups), timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                await asyncio.wait_for(conn.wait_closed(), 5)

    def abort(self) -> None:
        """Drop the connection abruptly (tests use it to simulate a network cut)."""
        if self._conn is not None:
            self._conn.abort()

    async def _session(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        await self.ensure()
        conn, sftp = self._conn, self._sftp
        if conn is None or sftp is None:
            raise BoxError(f"{self.name}: connection lost")
        return conn, sftp

    def _wrap(self, exc: BaseException) -> BoxError:
        conn = self._conn
        self._on_lost(exc if isinstance(exc, Exception) else None)
        if conn is not None:  # a half-dead connection is dropped, the next call reconnects
            conn.abort()
        return BoxError(f"{self.name}: {type(exc).__name__}: {exc}")

    # Operations -------------------------------------------------------------------------
    async def run(self, script: str, *, timeout: float | None = 60.0) -> CommandResult:
        """Run a script through one of the host's persistent ``sh`` sessions.

        A fresh exec channel costs a login shell on the box (``.bashrc`` and all: 0.2 s on a
        box with pyenv), paid on every launch and kill; a few long-lived ``sh`` processes
        read commands from stdin instead and answer in milliseconds. stderr is merged into
        stdout; the exit status follows a random end marker. A shell whose command did not
        answer (timed out, failed, or the caller was cancelled) is closed, never reused: its
        next output would be the old command's.
        """
        conn, _ = await self._session()
        async with self._shell_slots:
            shell = self._idle_shells.pop() if self._idle_shells else None
            try:
                if shell is None:
                    shell = await open_shell(conn, self.connect_timeout_s)
                marker = f"__helm_end_{uuid.uuid4().hex}__".encode()
                line = (
                    f"sh -c {shlex.quote(script)} < /dev/null 2>&1; "
                    f"printf '\\n%s %d\\n' {marker.decode()} $?\n"
                )
                shell.proc.stdin.write(line.encode())
                out = await asyncio.wait_for(shell.proc.stdout.readuntil(marker + b" "), timeout)
                status = await asyncio.wait_for(shell.proc.stdout.readline(), 10)
            except TimeoutError as exc:
                if shell is not None:
                    self._abandon(conn, shell)  # its state is unknown: never reuse it
                raise BoxError(f"{self.name}: command timed out after {timeout}s") from exc
            except (OSError, asyncssh.Error, asyncio.IncompleteReadError) as exc:
                if shell is not None:
                    shell.proc.close()
                raise self._wrap(exc) from exc
            except BaseException:  # cancelled mid-command: the command and its channel go
                if shell is not None:
                    self._abandon(conn, shell)
                raise
            if self._conn is conn:
                self._idle_shells.append(shell)
            else:
                shell.proc.close()
        body = out[: -len(marker) - 1]
        body = body[:-1] if body.endswith(b"\n") else body  # the newline printf put first
        code = int(status.strip() or b"255")
        return CommandResult(code, body.decode(errors="replace"), "")

    def _abandon(self, conn: asyncssh.SSHClientConnection, shell: Shell) -> None:
        """Close a shell whose command nobody waits for any more, and kill that command.

        sshd keeps a session channel open until the session's processes have exited, so
        closing alone would leave the command (and the channel) running until it ends by
        itself; sshd's ``signal`` request is refused for root logins, so the shell's process
        group is killed from a fresh exec channel instead (in a task that ``close`` awaits).
        """
        shell.proc.close()
        task = asyncio.ensure_future(self._kill_group(conn, shell.pid))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        task.add_done_callback(retrieve)

    async def _kill_group(self, conn: asyncssh.SSHClientConnection, pgid: int) -> None:
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            await asyncio.wait_for(conn.run(kill_command(pgid, "KILL"), check=False), 15)

    # SFTP: every request under ``sftp_timeout_s``, no task left behind -----------------------
    async def _req(self, request: Awaitable[T]) -> T:
        """One SFTP request, bounded: a stalled peer must not hold a watcher forever."""
        return await asyncio.wait_for(request, self.sftp_timeout_s)

    async def _sftp_op(
        self, what: str, op: Callable[[asyncssh.SFTPClient], Awaitable[T]], *, missing_ok: bool
    ) -> T | None:
        """Run ``op`` on the connection's SFTP client and turn its failures into box errors.

        A request that timed out leaves the connection in an unknown state (the peer is
        stalled, or the network black-holed): it is dropped, and the next call reconnects.
        """
        _, sftp = await self._session()
        try:
            return await op(sftp)
        except TimeoutError as exc:
            self._wrap(TimeoutError(f"SFTP {what} unanswered for {self.sftp_timeout_s:g}s"))
            raise BoxError(
                f"{self.name}: SFTP {what} timed out after {self.sftp_timeout_s:g}s "
                "(the box stopped answering; reconnecting)"
            ) from exc
        except asyncssh.SFTPNoSuchFile:
            if missing_ok:
                return None
            raise
        except (OSError, asyncssh.Error) as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: BaseException) -> BaseException:
        """Connection trouble becomes BoxError (retry); a file-level SFTP error stays itself,
        and so does a full or read-only disk here (a download's local file): not the network."""
        if isinstance(exc, asyncssh.SFTPError) and not isinstance(
            exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection
        ):
            return exc
        if isinstance(exc, OSError) and exc.errno in LOCAL_DISK_ERRNOS:
            return exc
        return self._wrap(exc)

    async def realpath(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            home = await self._sftp_op(
                "realpath", lambda sftp: self._req(sftp.realpath(".")), missing_ok=False
            )
            path = str(home).rstrip("/") + path[1:]
        return path

    async def makedirs(self, path: str) -> None:
        await self._sftp_op(
            "makedirs", lambda sftp: self._req(sftp.makedirs(path, exist_ok=True)), missing_ok=False
        )

    async def put_tree(self, local_dir: Path, remote_dir: str) -> None:
        """Copy a folder's files (modes and times kept) into ``remote_dir``, file by file."""

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await self._req(sftp.makedirs(remote_dir, exist_ok=True))
            for src in sorted(Path(local_dir).rglob("*")):
                dest = f"{remote_dir.rstrip('/')}/{src.relative_to(local_dir).as_posix()}"
                st = src.stat()
                if src.is_dir():
                    await self._req(sftp.makedirs(dest, exist_ok=True))
                    continue
                mode = st.st_mode & 0o7777
                await self._write_file(sftp, dest, src.read_bytes(), mode)
                await self._req(sftp.utime(dest, (st.st_atime, st.st_mtime)))

        await self._sftp_op("upload", op, missing_ok=False)

    async def write_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        await self._sftp_op(
            "write", lambda sftp: self._write_file(sftp, path, data, mode), missing_ok=False
        )

    async def _write_file(
        self, sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int
    ) -> None:
        attrs = asyncssh.SFTPAttrs(permissions=mode)
        async with self._remote_file(sftp, path, "wb", attrs) as fh:
            await write_all(fh, data, sftp.limits.max_write_len or SAFE_BLOCK, self._req)
        await self._req(sftp.chmod(path, mode))  # the umask may have narrowed the mode

    @contextlib.asynccontextmanager
    async def _remote_file(
        self,
        sftp: asyncssh.SFTPClient,
        path: str,
        mode: str,
        attrs: asyncssh.SFTPAttrs | None = None,
    ) -> AsyncIterator[asyncssh.SFTPClientFile]:
        """An open remote file for single-request I/O (``block_size=0``: asyncssh's parallel
        I/O would run each block in a task of its own and leave them behind when the
        connection dies or the caller is cancelled). Closed after success or a file-level
        error; after a timeout or a lost connection the connection goes, and the handle
        with it."""
        fh = await self._req(sftp.open(path, mode, attrs or asyncssh.SFTPAttrs(), block_size=0))
        try:
            yield fh
        except asyncssh.SFTPError:
            await close_file(fh, self._req)
            raise
        except OSError as exc:
            if exc.errno in LOCAL_DISK_ERRNOS:  # our own disk is full: the handle is fine
                await close_file(fh, self._req)
            raise
        await close_file(fh, self._req)

    async def read_text(self, path: str) -> str | None:
        data = await self.read_from(path, 0, 1 << 20)
        return None if data is None else data.decode(errors="replace")

    async def read_from(
        self, path: str, offset: int, limit: int, *, keep_open: bool = False
    ) -> bytes | None:
        async def op(sftp: asyncssh.SFTPClient) -> bytes:
            if not keep_open:
                async with self._remote_file(sftp, path, "rb") as fh:
                    return await read_range(fh, offset, limit, self._block(sftp), self._req)
            fh = self._handles.get(path)
            if fh is None:
                fh = await self._req(sftp.open(path, "rb", block_size=0))
                self._handles[path] = fh
            return await read_range(fh, offset, limit, self._block(sftp), self._req)

        try:
            return await self._sftp_op("read", op, missing_ok=True)
        except Exception:
            self._handles.pop(path, None)  # a handle that failed once is opened afresh
            raise

    def _block(self, sftp: asyncssh.SFTPClient) -> int:
        return sftp.limits.max_read_len or SAFE_BLOCK

    def forget(self, path: str) -> None:
        fh = self._handles.pop(path, None)
        if fh is not None:
            task = asyncio.ensure_future(close_file(fh, self._req))
            task.add_done_callback(retrieve)

    async def size(self, path: str) -> int | None:
        attrs = await self._sftp_op(
            "stat", lambda sftp: self._req(sftp.stat(path)), missing_ok=True
        )
        return None if attrs is None else attrs.size

    async def listdir(self, path: str) -> list[str]:
        names = await self._sftp_op(
            "listdir", lambda sftp: self._req(sftp.listdir(path)), missing_ok=True
        )
        return [n for n in (names or []) if n not in (".", "..")]

    async def get(self, path: str, local: Path) -> None:
        """Download one file (to a temporary name first: a cut transfer leaves no half file)."""
        part = Path(f"{local}.part")

        async def op(sftp: asyncssh.SFTPClient) -> None:
            async with self._remote_file(sftp, path, "rb") as fh:
                with part.open("wb") as out:
                    offset = 0
                    while data := await read_range(
                        fh, offset, GET_CHUNK, self._block(sftp), self._req
                    ):
                        out.write(data)
                        offset += len(data)
            part.replace(local)

        try:
            await self._sftp_op("download", op, missing_ok=False)
        finally:
            part.unlink(missing_ok=True)

    async def readlink(self, path: str) -> str | None:
        try:
            return await self._sftp_op(
                "readlink", lambda sftp: self._req(sftp.readlink(path)), missing_ok=True
            )
        except (OSError, asyncssh.Error):  # file-level: no such process, a zombie ...
            return None
