"""What every command shares: the workspace option, errors, output, small parsers.

Kept free of heavy imports: ``helm context`` and ``helm feed post`` are called by agents all
the time and must start in well under half a second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from helm import fmt
from helm.models.states import JOB_GPU_COUNTS

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
    if name and bad_utf8([name]):  # from HELM_AGENT: the command line was checked in main
        raise UsageError("HELM_AGENT is not valid UTF-8")
    return name


def nonempty(text: str, what: str) -> str:
    if not text or not text.strip():
        raise UsageError(f"{what} is empty")
    return text.strip()


# Bad input (issue 13): every argument is checked where it is parsed, with one line -------------
class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: agents read stderr, and the usage is in --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


MAX_ID = 2**63 - 1
"""Row ids, run and job numbers: SQLite INTEGER and PostgreSQL BIGINT are signed 64-bit."""
MAX_SEED = 2**32 - 1
"""numpy's ``random.seed`` (train_gpt.py seeds it from SEED) takes 0..2**32-1."""
MAX_LIMIT = 1_000_000
"""``--limit``: how many rows a listing prints (at least 1: no limit is not a number)."""
PRIORITY_RANGE = (-1000, 1000)
"""``job run --priority``: higher runs first; promotion queues its seeds at 10."""
MAX_HOST_GPUS = 64
"""``host add --gpus``: GPUs (or, on a local host, job slots) to schedule on one box."""
MAX_AGENTS = 256
"""``swarm up -n/--add``, ``demo --agents``: each agent is a process and a git worktree."""
MAX_TEXT_BYTES = 1024 * 1024
"""A feed post or directive, however given; every agent's ``helm context`` carries them."""

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only, short enough for int()


def bounded_int(lo: int, hi: int, what: str) -> Callable[[str], int]:
    """An argparse ``type``: a decimal integer in ``lo..hi``, else a one-line usage error.

    Every integer of every command goes through this (tests/helm/cli/test_bad_input.py walks
    the parser), so that 2**63 is "must be ..." rather than an OverflowError from the store,
    and a negative ``--limit`` is refused instead of meaning "no limit".
    """

    def parse(text: str) -> int:
        value = int(text) if _INTEGER.fullmatch(text.strip()) else None
        if value is None or not lo <= value <= hi:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, not {shown!r}")
        return value

    parse.bounds = (lo, hi)  # type: ignore[attr-defined]  (read by the parser-walking test)
    parse.__name__ = what
    return parse


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A plain ASCII decimal: ``float()`` alone also takes ``nan``, ``inf`` and other scripts' digits."""


def bounded_float(lo: float, hi: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``lo..hi``, else a one-line usage error.

    ``float()`` takes ``nan`` and ``inf``: a ``--timeout nan`` would never time out and a
    ``--sota inf`` would make every run a record. Both are refused here.
    """

    def parse(text: str) -> float:
        value = float(text) if _DECIMAL.fullmatch(text.strip()) else math.nan
        if not math.isfinite(value) or not lo <= value <= hi:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise argparse.ArgumentTypeError(f"must be a number in {lo:g}..{hi:g}, not {shown!r}")
        return value

    parse.bounds = (lo, hi)  # type: ignore[attr-defined]  (read by the parser-walking test)
    parse.__name__ = what
    return parse


def int_list(lo: int, hi: int, what: str) -> Callable[[str], tuple[int, ...]]:
    """An argparse ``type`` for ``42,1337,2025``: each item as ``bounded_int`` checks it."""
    one = bounded_int(lo, hi, what)

    def parse(text: str) -> tuple[int, ...]:
        items = tuple(one(s) for s in text.split(",") if s.strip())
        if not items:
            raise argparse.ArgumentTypeError("give at least one, e.g. 42,1337")
        return items

    parse.__name__ = what
    return parse


ID = bounded_int(1, MAX_ID, "an id")
LIMIT = bounded_int(1, MAX_LIMIT, "--limit")
SEED = bounded_int(0, MAX_SEED, "a seed")
SEEDS = int_list(0, MAX_SEED, "a seed")
PRIORITY = bounded_int(*PRIORITY_RANGE, "--priority")
AGENT_COUNT = bounded_int(1, MAX_AGENTS, "an agent count")
HOST_GPUS = bounded_int(1, MAX_HOST_GPUS, "--gpus")
JOB_GPUS = bounded_int(1, max(JOB_GPU_COUNTS), "--gpus")  # with choices=JOB_GPU_COUNTS


def bad_utf8(argv: Sequence[str]) -> str | None:
    """One line for the first argument that is not valid UTF-8, or None.

    Python hands undecodable argv bytes over as lone surrogates; the store, JSON and the
    agents' prompts all need real text, so the one rule for every text argument (names, tags,
    texts, paths) is checked once, in ``main``, before anything else happens.
    """
    for i, arg in enumerate(argv, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            return f"argument {i} is not valid UTF-8: {raw[:60]!r}"
    return None


def text_input(text: str | None, path: str | None, what: str) -> str:
    """The text of a post or directive: the argument, or the file ``--file`` names (``-``:
    stdin), for texts past the OS's 128 KiB limit on one argument. One line for bad input:
    both or neither given, unreadable, not UTF-8, a NUL byte, empty, over MAX_TEXT_BYTES."""
    if (text is None) == (path is None):
        raise UsageError(f"give the {what} as an argument or with --file PATH (- for stdin)"
                         + (", not both" if text is not None else ""))  # fmt: skip
    if path is None:
        data = text.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
    else:
        try:
            if path == "-":
                data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
            else:
                with open(path, "rb") as fh:
                    data = fh.read(MAX_TEXT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    where = " from stdin" if path == "-" else f" in {path}" if path else ""
    if len(data) > MAX_TEXT_BYTES:
        raise UsageError(f"the {what}{where} is over the {MAX_TEXT_BYTES:,}-byte limit")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the {what}{where} is not valid UTF-8 (byte {exc.start})") from exc
    if "\x00" in decoded:
        raise UsageError(f"the {what}{where} contains a NUL byte")
    return nonempty(decoded, what)


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


SECRET_HELP = (
    "NAME's value is a secret (stored and shown as ***); without --env NAME=V it is read "
    "from this shell's environment, so it never appears on a command line (repeatable)"
)


def parse_env_secrets(
    items: Sequence[str] | None, secrets: Sequence[str] | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """``--env K=V`` pairs and ``--secret NAME`` names: (the environment, the declared names).

    A NAME not given with ``--env`` takes its value from helm's own environment (an unset one
    is an error: a job that silently lacks its token would fail much later).
    """
    env = parse_env(items)
    names: list[str] = []
    for name in secrets or ():
        if not _ENV_KEY.match(name):
            raise UsageError(f"malformed --secret {name!r}: expected a NAME like HF_TOKEN")
        if name not in env:
            if name not in os.environ:
                raise UsageError(f"--secret {name}: give --env {name}=VALUE or set {name}")
            env[name] = os.environ[name]
        names.append(name)
    return env, tuple(names)


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
