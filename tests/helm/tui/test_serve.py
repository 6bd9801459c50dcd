"""``helm serve`` without a browser: who may connect, and no app process left behind.

A real ``helm serve`` process on 127.0.0.1 answers real HTTP and websocket requests (aiohttp's
client); the browser itself is in test_serve_browser.py. Helpers here are shared with it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from helm.models.tables import Run
from helm.workspace import Workspace

pytestmark = pytest.mark.timeout(60)

RUNS = (("browser alpha", 1.2111), ("browser bravo", 1.1822), ("browser charlie", 1.1733))


def fill_runs(ws: Workspace) -> None:
    """Three scored runs with descriptions that appear nowhere else on screen."""
    now = time.time()
    with ws.store.write() as s:
        for i, (desc, bpb) in enumerate(RUNS, start=1):
            s.add(
                Run(
                    id=i,
                    agent="alpha",
                    commit=f"{i:040x}",
                    code_hash=f"h{i}",
                    description=desc,
                    status="keep",
                    val_bpb=bpb,
                    bytes_total=15_000_000,
                    created_at=now - 600 + i,
                    finished_at=now - 300 + i,
                )
            )


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT/
    out: list[str]  # stdout lines read so far


@contextmanager
def helm_serve(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """A real ``helm serve --port 0`` on ``home``; stopped (SIGTERM, then SIGKILL) at the end."""
    cmd = [sys.executable, "-m", "helm.cli", "--home", str(home), "serve", "--port", "0", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "open http" in line:
                url = line.split("open ", 1)[1].split()[0].split("?")[0]
        assert url, f"helm serve printed no URL: {out} {proc.stderr.read() if proc.stderr else ''}"
        yield Served(proc, url, out)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else (fields[0], int(fields[1]))


def tab_apps(server_pid: int) -> list[int]:
    """Pids of the app processes ``helm serve`` started (``python -m helm.cli --home ...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is None or st[1] != server_pid:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"helm.cli" in argv and b"serve" not in argv:
            found.append(int(entry.name))
    return found


def wait_for(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def gone(pid: int) -> bool:
    return _stat(pid) is None


def stop_daemon(ws: Workspace) -> None:
    """The tabs' TUI starts the workspace's daemon, as ``helm`` does: stop it after the test."""
    from helm import daemon

    deadline = time.monotonic() + 20
    while True:
        try:
            daemon.stop(ws)
            return
        except daemon.DaemonError:  # still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# Refusals on the command line --------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "gpu-box", "::"])
def test_a_non_loopback_host_needs_public(helm, host: str) -> None:
    r = helm("serve", "--host", host)
    assert r.code == 2
    assert "not a loopback address" in r.err and "--public" in r.err


def test_public_needs_a_token(helm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELM_SERVE_TOKEN", raising=False)
    r = helm("serve", "--host", "0.0.0.0", "--public")
    assert r.code == 2
    assert "needs a token" in r.err


def test_a_short_token_is_refused_without_echoing_it(helm, tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("short-secret\n")
    r = helm("serve", "--host", "0.0.0.0", "--public", "--token-file", str(tmp_path / "tok"))
    assert r.code == 2
    assert "at least 16" in r.err and "short-secret" not in r.err + r.out


def test_a_missing_token_file_is_created_private(tmp_path: Path) -> None:
    """The file is made 0600 with a random token; the token is not printed (nor logged)."""
    from helm.cli.serve_cmd import _read_token

    class Args:
        token_file = str(tmp_path / "new-token")

    token, where = _read_token(Args(), 16, "HELM_SERVE_TOKEN")  # type: ignore[misc]
    path = tmp_path / "new-token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == token and len(token) >= 32
    assert str(path) in where and token not in where


# The guard on a running server -------------------------------------------------------------------
async def _status(session: aiohttp.ClientSession, url: str, **kw: object) -> int:
    async with session.get(url, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
        return r.status


def test_requests_without_the_token_are_refused(ws: Workspace, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token + "\n")
    with helm_serve(ws.root, "--token-file", str(tmp_path / "token")) as served:
        url = served.url

        async def probe() -> None:
            jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for an IP address host
            async with aiohttp.ClientSession(cookie_jar=jar) as s:
                for path in ("", "ws", "static/js/textual.js", "download/x"):
                    assert await _status(s, url + path) == 403, path
                assert await _status(s, url + "?token=" + token[:-1] + "x") == 403
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await s.ws_connect(url + "ws")
                assert refused.value.status == 403
                # the right token: a cookie (HttpOnly, SameSite), and the token leaves the URL
                async with s.get(url + "?token=" + token + "&fontsize=14",
                                 allow_redirects=False) as r:  # fmt: skip
                    assert r.status == 303
                    assert r.headers["Location"] == "/?fontsize=14"
                    cookie = r.headers["Set-Cookie"]
                    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
                async with s.get(url) as r:  # with the cookie
                    page = await r.text()
                    assert r.status == 200 and "/ws" in page and token not in page
                assert await _status(s, url + "static/js/textual.js") == 200
                # DNS rebinding: a loopback server answers only to loopback names
                assert await _status(s, url, headers={"Host": "evil.example:80"}) == 403
                # another site's page opening our websocket, even with the cookie
                with pytest.raises(aiohttp.WSServerHandshakeError) as cross:
                    await s.ws_connect(url + "ws", origin="http://evil.example")
                assert cross.value.status == 403

        asyncio.run(probe())
        served.proc.send_signal(signal.SIGTERM)
        out, err = served.proc.communicate(timeout=15)
    assert served.proc.returncode == 0
    assert token not in "".join(served.out) + out + err  # never printed, never logged


def test_a_killed_server_takes_its_tabs_with_it(ws: Workspace) -> None:
    """SIGKILL leaves no time to clean up: the tab's app still ends (parent-death signal),
    and it never saw the token in its environment."""
    fill_runs(ws)
    token = secrets.token_urlsafe(24)
    try:
        with helm_serve(ws.root, env={"HELM_SERVE_TOKEN": token}) as served:
            port = served.url.rsplit(":", 1)[1].rstrip("/")

            async def open_tab() -> None:
                async with (
                    aiohttp.ClientSession(cookies={f"helm_serve_{port}": token}) as s,
                    s.ws_connect(served.url + "ws?width=160&height=40") as tab,
                ):
                    await tab.send_json(["resize", {"width": 160, "height": 40}])  # as xterm.js
                    drawn, deadline = b"", time.monotonic() + 30
                    while b"browser bravo" not in re.sub(rb"\x1b\[[0-9;:?]*[a-zA-Z]", b"", drawn):
                        left = deadline - time.monotonic()
                        msg = await asyncio.wait_for(tab.receive(), max(left, 0.01))
                        assert msg.type == aiohttp.WSMsgType.BINARY, msg
                        drawn += msg.data
                    apps = tab_apps(served.proc.pid)
                    assert len(apps) == 1
                    environ = Path(f"/proc/{apps[0]}/environ").read_bytes()
                    assert token.encode() not in environ
                    served.proc.kill()
                    wait_for(lambda: gone(apps[0]), 10, f"app {apps[0]} to end")

            asyncio.run(open_tab())
    finally:
        stop_daemon(ws)


def test_an_app_that_ignores_quit_is_killed_with_its_children(tmp_path: Path) -> None:
    """A tab's app that neither quits nor dies on SIGTERM is killed, and so is what it
    started: its process group (a TUI's ``helm`` subprocess, say)."""
    from textual_serve.download_manager import DownloadManager

    from helm.tui.serve import TabApp

    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(tmp_path / 'child')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )

    async def nothing(*_: object) -> None:
        return None

    async def run() -> tuple[int, int]:
        tab = TabApp([sys.executable, "-c", script], (), write_bytes=nothing, write_str=nothing,
                     close=nothing, download_manager=DownloadManager())  # fmt: skip
        await tab.start(80, 24)
        child = tmp_path / "child"
        for _ in range(100):
            if child.exists() and child.read_text():
                break
            await asyncio.sleep(0.05)
        assert tab.pid is not None
        pids = (tab.pid, int(child.read_text()))
        await tab.close(grace_s=0.3)
        return pids

    app, child = asyncio.run(run())
    assert gone(app)
    wait_for(lambda: gone(child), 5, "the app's child")
