"""``helm serve`` in a real browser: headless Chromium (Debian's ``chromium``) over DevTools.

The page draws with xterm.js on a WebGL canvas, so there are no DOM rows to read. The test
reads what the page's terminal holds: a script added before the page's own (DevTools'
``Page.addScriptToEvaluateOnNewDocument``) keeps a reference to the xterm ``Terminal`` when
textual-serve's script stores it (``this.terminal = new Terminal(...)``), and the test reads
its buffer, line by line, the characters that are painted on the canvas. The keys are real
key events (``Input.dispatchKeyEvent``) into the page's focused terminal. No selenium or
chromedriver: the DevTools protocol over aiohttp's websocket client is all it needs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_serve import RUNS, fill_runs, gone, helm_serve, stop_daemon, tab_apps, wait_for

from helm.tui import commands as cmds
from helm.workspace import Workspace

pytestmark = pytest.mark.timeout(120)

# Kept when textual-serve's script assigns its xterm Terminal; then the hook removes itself.
HOOK = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal",
      {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && typeof value.onData === "function") {
      window.__helmTerm = value;
      delete Object.prototype.terminal;
    }
  },
});
"""
SCREEN = """(() => {
  const t = window.__helmTerm;
  if (!t) return null;
  const b = t.buffer.active, lines = [];
  for (let y = 0; y < t.rows; y++) {
    const line = b.getLine(b.viewportY + y);
    lines.push(line ? line.translateToString(true) : "");
  }
  return lines.join("\\n");
})()"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Chromium not found: install Debian's chromium (.ci/run does)")
    return found


class DevTools:
    """The few DevTools Protocol calls the test makes, over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is None or future.done():
                continue  # an event
            if "error" in data:
                future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
            else:
                future.set_result(data.get("result", {}))

    async def call(self, method: str, timeout: float = 15, **params: Any) -> dict[str, Any]:
        self._id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._id] = future
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        return await asyncio.wait_for(future, timeout)

    async def evaluate(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def screen(self) -> str:
        return await self.evaluate(SCREEN) or ""

    async def wait_screen(self, check: Any, timeout: float, what: str) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        text = ""
        while asyncio.get_running_loop().time() < deadline:
            text = await self.screen()
            if check(text):
                return text
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what} never showed; the page's terminal holds:\n{text}")

    async def key(self, key: str, code: str, vk: int, text: str = "", shift: bool = False) -> None:
        """A real key press (down, then up) into the focused element."""
        common = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": 8 * shift}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """Headless Chromium with its DevTools on a free loopback port: (session, http base)."""
    log = (profile.parent / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",  # the suite runs as root
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-extensions",
            "--use-angle=swiftshader",  # xterm.js draws with WebGL: a software GPU
            "--enable-unsafe-swiftshader",
            "--window-size=1280,800",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        active = profile / "DevToolsActivePort"
        await asyncio.to_thread(
            wait_for, lambda: active.exists() and active.read_text().strip(), 30, "Chromium"
        )
        base = f"http://127.0.0.1:{active.read_text().split()[0]}"
        async with aiohttp.ClientSession() as session:
            yield session, base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


async def open_page(session: aiohttp.ClientSession, base: str) -> tuple[DevTools, str]:
    """The browser's first tab, with the terminal hook installed: (client, target id)."""
    async with session.get(f"{base}/json/list") as r:
        page = next(t for t in await r.json() if t["type"] == "page")
    ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
    cdp = DevTools(ws)
    await cdp.call("Page.enable")
    await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=HOOK)
    return cdp, page["id"]


def help_rows(text: str) -> int:
    """Rows of the help screen on screen: command ids like ``pane_feed``, which the help
    lists and nothing else shows (the footer and the panes show descriptions)."""
    words = set(text.split())
    return sum(c.id in words for c in cmds.REGISTRY if "_" in c.id)


def check_png(data: bytes, min_w: int, min_h: int) -> None:
    """A real picture: a PNG of at least that size whose pixels are not one flat colour."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_w and height >= min_h, (width, height)
    pos, idat = 8, b""
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + size]
        pos += 12 + size
    pixels = zlib.decompress(idat)
    assert len(set(pixels[: 4 * width * height])) > 32, "the screenshot is (almost) one colour"


async def test_the_cockpit_in_a_browser(ws: Workspace, tmp_path: Path) -> None:
    """Loads the page (token → cookie), sees the leaderboard's rows, screenshots them, opens
    and closes help by key; closing the tab ends its app, stopping the server ends the rest."""
    fill_runs(ws)
    token_file = tmp_path / "token"
    try:
        with helm_serve(ws.root, "--token-file", str(token_file)) as served:
            token = token_file.read_text().strip()
            async with browser(tmp_path / "profile") as (session, base):
                cdp, target = await open_page(session, base)
                await cdp.call("Page.navigate", url=f"{served.url}?token={token}")

                def board(text: str) -> bool:
                    lines = text.splitlines()
                    return all(any(d in ln and f"{b:.4f}" in ln for ln in lines) for d, b in RUNS)

                main = await cdp.wait_screen(board, 45, "the leaderboard's three runs")
                assert await cdp.evaluate("location.search") == ""  # the token left the URL
                shot = await cdp.call("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                (tmp_path / "helm-serve.png").write_bytes(png)
                check_png(png, 800, 500)

                apps = tab_apps(served.proc.pid)
                assert len(apps) == 1, apps
                assert help_rows(main) == 0
                await cdp.evaluate("window.__helmTerm.focus()")
                await cdp.key("?", "Slash", 191, text="?", shift=True)
                await cdp.wait_screen(lambda t: help_rows(t) >= 5, 15, "the help screen")
                await cdp.key("Escape", "Escape", 27, text="\x1b")
                await cdp.wait_screen(lambda t: not help_rows(t) and board(t), 15, "help closing")

                # closing the tab ends its app (a second tab keeps the browser's session, and
                # with it the cookie: headless Chromium ends the session with its last tab)
                async with session.put(f"{base}/json/new?about:blank") as r:
                    other = await r.json()
                await cdp.close()
                async with session.get(f"{base}/json/close/{target}") as r:
                    assert r.status == 200
                await asyncio.to_thread(wait_for, lambda: gone(apps[0]), 15, "the tab's app")
                assert tab_apps(served.proc.pid) == []

                # the other tab opens the cockpit without the token (the cookie carries it)
                cdp = DevTools(await session.ws_connect(other["webSocketDebuggerUrl"]))
                await cdp.call("Page.navigate", url=served.url)
                second = await asyncio.to_thread(
                    wait_for, lambda: tab_apps(served.proc.pid), 30, "a second tab's app"
                )
                await cdp.close()
                served.proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(served.proc.wait, 20) == 0
                for pid in second:
                    await asyncio.to_thread(wait_for, lambda p=pid: gone(p), 5, f"app {pid}")
    finally:
        stop_daemon(ws)
