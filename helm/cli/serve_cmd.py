"""``helm serve``: the TUI in a browser, one app per tab (helm/tui/serve.py).

The cockpit steers agents and spends GPU time, so where it listens is the user's explicit
choice: loopback by default (reach it over an SSH tunnel, see the README), any other address
only with ``--public`` *and* a token. The token comes from a file or the environment, never
the command line, where every user of the machine could read it in ``ps``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path

from helm.cli import common
from helm.cli.common import CommandError, UsageError, add_leaf, bounded_int


def _read_token(args: argparse.Namespace, min_chars: int, env_name: str) -> tuple[str, str] | None:
    """(token, where it came from) from ``--token-file`` (created if missing) or the env."""
    if args.token_file:
        path = Path(args.token_file).expanduser()
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
            print(f"helm serve: wrote a new token to {path}", flush=True)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the token file {path}: {exc}") from exc
        where = f"the contents of {path}"
    elif os.environ.get(env_name):
        token, where = os.environ[env_name].strip(), f"${env_name}"
    else:
        return None
    if len(token) < min_chars or not token.isascii() or not token.isprintable() or " " in token:
        raise UsageError(f"the token ({where}) must be at least {min_chars} printable ASCII "
                         "characters without spaces")  # fmt: skip
    return token, where


def _serve(args: argparse.Namespace) -> int:
    try:
        from helm.tui import serve
    except ModuleNotFoundError as exc:
        raise CommandError(f"helm serve needs textual-serve ({exc.name} is missing)") from exc

    token = _read_token(args, serve.MIN_TOKEN_CHARS, serve.TOKEN_ENV)
    if not serve.is_loopback(args.host):
        if not args.public:
            raise UsageError(
                f"--host {args.host} is not a loopback address and anyone who reaches it "
                "could steer the swarm: add --public and --token-file FILE, or keep "
                "127.0.0.1 and use an SSH tunnel (README)"
            )
        if token is None:
            raise UsageError(
                f"--public needs a token: --token-file FILE (created if missing) "
                f"or ${serve.TOKEN_ENV}"
            )
    os.environ.pop(serve.TOKEN_ENV, None)  # read once; the tabs' apps never see it
    ws = common.workspace(args)
    config = serve.ServeConfig(
        argv=[sys.executable, "-m", "helm.cli", "--home", str(ws.root)],
        host=args.host,
        port=args.port,
        token=token[0] if token else None,
        title=f"helm · {ws.root.name}",
    )

    def announce(host: str, port: int) -> None:
        url = serve.display_url(host, port)
        if token is None:
            print(f"helm serve: open {url}", flush=True)
        else:  # the token itself is never printed: the user has it, a log must not
            print(f"helm serve: open {url}?token=TOKEN (TOKEN: {token[1]})", flush=True)
        if not serve.is_loopback(host):
            print("helm serve: plain HTTP: the token and the screen cross the network "
                  "unencrypted; an SSH tunnel to 127.0.0.1 does not (README)", flush=True)  # fmt: skip
        print("helm serve: one helm per browser tab; Ctrl-C stops them all", flush=True)

    logging.basicConfig(level=logging.INFO, format="helm serve: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(serve.serve(config, announce))
    except OSError as exc:  # the address is taken or not ours
        why = (exc.strerror or str(exc)).rsplit(": ", 1)[-1]  # aiohttp repeats the address
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {why}") from exc
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_leaf(sub, "serve", _serve, "the TUI in a browser (loopback unless --public)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=bounded_int(0, 65535, "port"),
        default=8000,
        help="TCP port (default 8000; 0 picks a free one)",
    )
    p.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --host (needs a token)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="require the token in FILE (created with a random one if missing); "
        "also $HELM_SERVE_TOKEN",
    )
