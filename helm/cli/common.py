"""What every command shares: the workspace option, errors, output, small parsers.

Kept free of heavy imports: ``helm context`` and ``helm feed post`` are called by agents all
the time and must start in well under half a second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from helm import fmt

Handler = Callable[[argparse.Namespace], int | None]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class CommandError(Exception):
    """A command that could not do its work: printed as one line, exit code 1."""


def common_parser() -> argparse.ArgumentParser:
    """Options every leaf command accepts, wherever they appear on the line."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        help="campaign folder (default: $HELM_HOME, else ~/.local/share/helm)",
    )
    return p


def json_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print JSON (documented in docs/CLI.md)")
    return p


def agent_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--agent",
        default=argparse.SUPPRESS,
        help="act as this agent (default: $HELM_AGENT, set by helm when it starts an agent)",
    )
    return p


def add_leaf(
    sub: argparse._SubParsersAction,
    name: str,
    handler: Handler,
    help: str,
    *,
    listing: bool = False,
    agent: bool = False,
) -> argparse.ArgumentParser:
    """Add a leaf command with the shared options and its handler."""
    parents = [common_parser()]
    if listing:
        parents.append(json_parser())
    if agent:
        parents.append(agent_parser())
    p = sub.add_parser(name, parents=parents, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def workspace(args: argparse.Namespace):  # -> Workspace (import kept lazy)
    from helm.workspace import Workspace

    return Workspace(getattr(args, "home", None)).ensure()


def agent_name(args: argparse.Namespace, *, required: bool = True) -> str | None:
    name = getattr(args, "agent", None) or os.environ.get("HELM_AGENT")
    if required and not name:
        raise UsageError("no agent: pass --agent NAME or set HELM_AGENT")
    return name


def nonempty(text: str, what: str) -> str:
    if not text or not text.strip():
        raise UsageError(f"{what} is empty")
    return text.strip()


_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env(items: Sequence[str] | None) -> dict[str, str]:
    """``K=V`` pairs into a dict; keys must be shell identifiers (values may be anything)."""
    env: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise UsageError(f"malformed --env {item!r}: expected KEY=VALUE with KEY like NAME_1")
        env[key] = value
    return env


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` into seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"bad duration {text!r}: use e.g. 30s, 15m, 1h, 2d")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


def parse_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("empty agent list")
    return names


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain aligned table, like `kubectl get`: easy to read and to grep."""
    cells = [[str(h) for h in headers]]
    cells += [[fmt.MISSING if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
