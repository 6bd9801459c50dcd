"""``helm serve``: the same cockpit in a browser, through textual-serve.

textual-serve runs one app process per browser websocket and relays its terminal stream to
xterm.js in the page. helm keeps its per-tab protocol (``AppService``) and page, and changes
what a cockpit that can steer a swarm (and spend GPU money) needs changed:

- **Who may connect.** With a token, every request must carry it (``?token=`` once, then an
  HttpOnly cookie, so the websocket that the page's script opens carries it too); the token
  never reaches a log (no access log) nor the app processes' environment. Bound to loopback,
  a request whose ``Host`` is not a loopback name is refused (DNS rebinding), and a websocket
  from another origin is refused always (any page the operator visits could otherwise open
  ``ws://127.0.0.1:PORT/ws`` and type into the TUI).
- **No process left behind.** Each tab's app runs in its own session with a parent-death
  signal; closing the tab asks it to quit, and one that does not within a few seconds is
  killed with its process group; stopping the server does the same for every tab.
- **Links the browser can follow.** The websocket URL is built from the request's ``Host``,
  so an SSH tunnel to another local port works; the page's Google Fonts link is replaced by
  the font textual-serve bundles (an operator's browser may be offline, and it is a
  third-party request from the cockpit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
import textual_serve
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

log = logging.getLogger("helm.serve")

TOKEN_ENV = "HELM_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
MAX_SESSIONS = 8  # browser tabs at once: each is a Python process with Textual (~100 MB)
QUIT_GRACE_S = 5.0  # how long a tab's app may take to quit before its process group is killed
_TEMPLATE = "app_index.html"
_GOOGLE_FONTS = re.compile(r"<link[^>]*fonts\.googleapis\.com[^>]*>", re.S)
_LOCAL_FONT = (
    '<link rel="preload" as="font" type="font/ttf" crossorigin '
    'href="{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf" />\n'
    '<style>@font-face { font-family: "Roboto Mono"; '
    'src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf") '
    'format("truetype"); }</style>'
)
_PR_SET_PDEATHSIG = 1


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def token_cookie(port: int) -> str:
    """The cookie's name: cookies ignore ports, so two servers on one host must not share it."""
    return f"helm_serve_{port}"


@dataclass
class ServeConfig:
    """What to serve and to whom: ``argv`` runs once per browser tab."""

    argv: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    title: str = "helm"
    max_sessions: int = MAX_SESSIONS
    # environment variables the app processes must not see (the token's, at least)
    drop_env: tuple[str, ...] = field(default=(TOKEN_ENV,))


def _die_with_parent() -> None:
    """In the forked child: SIGTERM when ``helm serve`` dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


try:  # loaded here, not in the child between fork and exec
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


class TabApp(AppService):
    """One browser tab's app process, which must not outlive the tab or the server."""

    def __init__(self, argv: list[str], drop_env: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.argv = argv
        self.drop_env = drop_env

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        env = super()._build_environment(width, height)
        for name in self.drop_env:
            env.pop(name, None)
        return env

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
        # exec, not a shell: a --home with spaces or quotes needs no quoting, and the pid is
        # the app's own; its own session, so that a kill takes its children with it
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width, height),
            start_new_session=True,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def run(self) -> None:
        """Relay the app's output; when the app ends (quit, crash), end the tab's session too,
        so that the page says "Session ended" instead of waiting on a dead process."""
        try:
            await super().run()
        finally:
            with contextlib.suppress(Exception):
                await self.remote_close()

    async def close(self, grace_s: float = QUIT_GRACE_S) -> None:
        """Ask the app to quit; kill its process group if it has not within ``grace_s``."""
        process = self._process
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stop(), grace_s)
        if process is None:
            return
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 0.5)
            except TimeoutError:  # it did not quit: end it and whatever it started
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, sig)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 2.0)
                        break
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None


def _page_loader() -> jinja2.BaseLoader:
    """textual-serve's page, with its Google Fonts link swapped for the bundled font."""
    base = Path(textual_serve.__file__).parent / "templates"

    def load(name: str) -> str | None:
        path = base / name
        if not path.is_file():
            return None
        return _GOOGLE_FONTS.sub(_LOCAL_FONT, path.read_text(encoding="utf-8"))

    return jinja2.FunctionLoader(load)


class HelmServer(Server):
    """textual-serve's server with helm's guard, per-request URLs and owned app processes."""

    def __init__(self, config: ServeConfig) -> None:
        super().__init__(" ".join(config.argv), host=config.host, port=config.port,
                         title=config.title)  # fmt: skip
        self.config = config
        self.tabs: set[TabApp] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._closing = False

    # The guard ----------------------------------------------------------------------------
    def _refusal(self, request: web.Request) -> str | None:
        """Why this request may not reach the cockpit, or None."""
        host = request.url.host or ""
        if is_loopback(self.config.host) and not is_loopback(host):
            return "this server answers only to loopback names (127.0.0.1, localhost)"
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin and origin.split("://", 1)[-1] != request.host:
            return "websocket from another origin"
        token = self.config.token
        if token is None:
            return None
        given = request.query.get("token") or request.cookies.get(token_cookie(self.config.port))
        if given is None or not secrets.compare_digest(given.encode(), token.encode()):
            return "this server needs its token: open the URL with ?token=TOKEN"
        return None

    @web.middleware
    async def guard(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        why = self._refusal(request)
        if why is not None:
            log.warning("refused %s %s: %s", request.method, request.path, why)
            raise web.HTTPForbidden(text=f"helm serve: {why}\n")
        if self.config.token is not None and "token" in request.query:
            # a valid token in the URL: keep it in a cookie and drop it from the address bar
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = request.path + (f"?{urlencode(query)}" if query else "")
            response = web.HTTPSeeOther(target)
            response.set_cookie(token_cookie(self.config.port), self.config.token,
                                httponly=True, samesite="Lax", path="/")  # fmt: skip
            raise response
        return await handler(request)

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        aiohttp_jinja2.setup(app, loader=_page_loader())
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        return app

    # The page and the tabs ----------------------------------------------------------------
    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        """The page, its links built from the address the browser used (tunnels included)."""
        origin = f"{request.scheme}://{request.host}"
        ws_scheme = "wss" if request.scheme == "https" else "ws"
        context = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{ws_scheme}://{request.host}/ws",
            "config": {"static": {"url": f"{origin}/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template(_TEMPLATE, request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: start its app, relay until either side closes, then end the app."""
        websocket = web.WebSocketResponse(heartbeat=15)
        if self._closing or len(self.tabs) >= self.config.max_sessions:
            raise web.HTTPServiceUnavailable(text="helm serve: too many browser sessions\n")
        await websocket.prepare(request)
        tab = TabApp(
            self.config.argv,
            self.config.drop_env,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        self.tabs.add(tab)
        self._sockets.add(websocket)
        try:
            width = to_int(request.query.get("width", "80"), 80)
            height = to_int(request.query.get("height", "24"), 24)
            await tab.start(width, height)
            log.info("tab opened: app pid %s", tab.pid)
            await self._process_messages(websocket, tab)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("browser session failed")
        finally:
            await asyncio.shield(self._end_tab(tab, websocket))
        return websocket

    async def _end_tab(self, tab: TabApp, websocket: web.WebSocketResponse) -> None:
        await tab.close()
        log.info("tab closed: app pid %s", tab.pid)
        self.tabs.discard(tab)
        self._sockets.discard(websocket)
        with contextlib.suppress(Exception):
            await websocket.close()

    async def close_all(self) -> None:
        """End every tab's app (the server is stopping)."""
        self._closing = True
        await asyncio.gather(*(t.close() for t in list(self.tabs)), return_exceptions=True)
        for websocket in list(self._sockets):
            with contextlib.suppress(Exception):
                await websocket.close()


def display_url(host: str, port: int) -> str:
    """The address to open; a wildcard bind shows this machine's name instead."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


async def serve(config: ServeConfig, announce: Callable[[str, int], None]) -> None:
    """Serve until SIGINT or SIGTERM; ``announce(host, port)`` once listening."""
    server = HelmServer(config)
    app = await server._make_app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=QUIT_GRACE_S + 5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else config.port
        server.config.port = port  # the cookie's name follows the real port (port 0)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        announce(config.host, port)
        await stop.wait()
    finally:
        await server.close_all()
        await runner.cleanup()
