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
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import asyncssh

from helm.remote import hostkeys
from helm.remote.backend import BoxError, CommandResult, HostKeyError

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
SHELLS_PER_HOST = 4  # concurrent commands per host (a slow host check must not block launches)


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
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._down_since: float | None = None
        self._backoff = 0.0
        self._next_try = 0.0
        self._last_error = ""
        self.connects = 0  # how many times a connection was opened (tests, stats)
        self._idle_shells: list[asyncssh.SSHClientProcess] = []
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
            "known_hosts": hostkeys.known_hosts_blob(self.known_hosts_file),
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
        try:
            key = await hostkeys.fetch_key(target)
        except Exception as exc:
            return f"host {self.name}: host key not trusted and could not be read: {exc}"
        known = hostkeys.known_keys(hostkeys.known_hosts_blob(self.known_hosts_file), target)
        return hostkeys.untrusted_message(self.name, target, key, known)

    async def close(self) -> None:
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
        stdout; the exit status follows a random end marker.
        """
        conn, _ = await self._session()
        async with self._shell_slots:
            proc = self._idle_shells.pop() if self._idle_shells else None
            try:
                if proc is None:
                    proc = await conn.create_process("exec sh", encoding=None)
                marker = f"__helm_end_{uuid.uuid4().hex}__".encode()
                line = (
                    f"sh -c {shlex.quote(script)} < /dev/null 2>&1; "
                    f"printf '\\n%s %d\\n' {marker.decode()} $?\n"
                )
                proc.stdin.write(line.encode())
                out = await asyncio.wait_for(proc.stdout.readuntil(marker + b" "), timeout)
                status = await asyncio.wait_for(proc.stdout.readline(), 10)
            except TimeoutError as exc:
                if proc is not None:
                    proc.close()  # its state is unknown: never reuse it
                raise BoxError(f"{self.name}: command timed out after {timeout}s") from exc
            except (OSError, asyncssh.Error, asyncio.IncompleteReadError) as exc:
                if proc is not None:
                    proc.close()
                raise self._wrap(exc) from exc
            if self._conn is conn:
                self._idle_shells.append(proc)
            else:
                proc.close()
        body = out[: -len(marker) - 1]
        body = body[:-1] if body.endswith(b"\n") else body  # the newline printf put first
        code = int(status.strip() or b"255")
        return CommandResult(code, body.decode(errors="replace"), "")

    async def _sftp_call(self, fn: str, *args: Any, missing_ok: bool = False, **kw: Any) -> Any:
        _, sftp = await self._session()
        try:
            return await getattr(sftp, fn)(*args, **kw)
        except asyncssh.SFTPNoSuchFile:
            if missing_ok:
                return None
            raise
        except (OSError, asyncssh.Error) as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: BaseException) -> BaseException:
        """Connection trouble becomes BoxError (retry); a file-level SFTP error stays itself."""
        if isinstance(exc, asyncssh.SFTPError) and not isinstance(
            exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection
        ):
            return exc
        return self._wrap(exc)

    async def realpath(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            home = await self._sftp_call("realpath", ".")
            path = home.rstrip("/") + path[1:]
        return path

    async def makedirs(self, path: str) -> None:
        await self._sftp_call("makedirs", path, exist_ok=True)

    async def put_tree(self, local_dir: Path, remote_dir: str) -> None:
        await self.makedirs(remote_dir)
        entries = sorted(str(p) for p in Path(local_dir).iterdir())
        if entries:
            await self._sftp_call("put", entries, remote_dir, recurse=True, preserve=True)

    async def write_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        _, sftp = await self._session()
        try:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            async with sftp.open(path, "wb", attrs) as fh:
                await fh.write(data)
            await sftp.chmod(path, mode)
        except (OSError, asyncssh.Error) as exc:
            raise self._classify(exc) from exc

    async def read_text(self, path: str) -> str | None:
        data = await self.read_from(path, 0, 1 << 20)
        return None if data is None else data.decode(errors="replace")

    async def read_from(
        self, path: str, offset: int, limit: int, *, keep_open: bool = False
    ) -> bytes | None:
        _, sftp = await self._session()
        fh = self._handles.get(path) if keep_open else None
        try:
            if fh is None:
                fh = await sftp.open(path, "rb")
                if keep_open:
                    self._handles[path] = fh
            try:
                return await fh.read(limit, offset)
            finally:
                if not keep_open:
                    await fh.close()
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            self._handles.pop(path, None)
            raise self._classify(exc) from exc

    def forget(self, path: str) -> None:
        fh = self._handles.pop(path, None)
        if fh is not None:
            task = asyncio.ensure_future(fh.close())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def size(self, path: str) -> int | None:
        attrs = await self._sftp_call("stat", path, missing_ok=True)
        return None if attrs is None else attrs.size

    async def listdir(self, path: str) -> list[str]:
        names = await self._sftp_call("listdir", path, missing_ok=True)
        return [n for n in (names or []) if n not in (".", "..")]

    async def get(self, path: str, local: Path) -> None:
        await self._sftp_call("get", path, str(local))

    async def readlink(self, path: str) -> str | None:
        _, sftp = await self._session()
        try:
            return await sftp.readlink(path)
        except (OSError, asyncssh.Error) as exc:
            err = self._classify(exc)
            if isinstance(err, BoxError):
                raise err from exc
            return None
