"""Directives in the worktree, and the small grammar the sweep agent obeys.

A directive reaches an agent as files in its worktree, written before its next experiment:
``DIRECTIVES.md`` for every driver, plus the instruction file its CLI reads on start
(``CLAUDE.md`` for Claude Code, ``AGENTS.md`` for Codex, OpenCode and custom commands).
Writing a file marks the directive delivered for that agent; the agent acknowledges it with
``helm directive ack ID`` once it acts on it, so the operator sees who has picked it up.

The sweep agent cannot read prose, so it follows only this grammar (one command per line or
separated by ``;``; verbs are case-insensitive, keys are upper-cased):

    sweep KEY=a,b,c [KEY2=x,y]   try each value of each key (one at a time) on the best
    set KEY=v [KEY2=w]           fix a value for every later experiment (a new reference)
    focus KEY,KEY                only vary these keys from now on (`focus all` clears it)
    stop                         finish, acknowledge, and stop the agent

Anything else is acknowledged with a feed note that the sweep agent cannot follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helm.workspace import Workspace

_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGN = re.compile(rf"^({_KEY})=(.+)$")


class GrammarError(ValueError):
    """The text is not in the sweep grammar; the message says what was expected."""


@dataclass(frozen=True)
class Command:
    verb: str  # sweep | set | focus | stop
    values: dict[str, list[str]] = field(default_factory=dict)  # sweep: KEY -> values
    assign: dict[str, str] = field(default_factory=dict)  # set: KEY -> value
    keys: tuple[str, ...] = ()  # focus (empty: clear)


def _assignments(tokens: list[str], verb: str) -> list[tuple[str, str]]:
    if not tokens:
        raise GrammarError(f"`{verb}` needs KEY=VALUE")
    out = []
    for tok in tokens:
        m = _ASSIGN.match(tok)
        if not m:
            raise GrammarError(f"`{verb}` expects KEY=VALUE, got {tok!r}")
        out.append((m.group(1).upper(), m.group(2)))
    return out


def parse_command(line: str) -> Command:
    tokens = line.split()
    if not tokens:
        raise GrammarError("empty command")
    verb, rest = tokens[0].lower().rstrip(":"), tokens[1:]
    if verb == "stop" and not rest:
        return Command("stop")
    if verb == "set":
        return Command("set", assign=dict(_assignments(rest, verb)))
    if verb == "sweep":
        values: dict[str, list[str]] = {}
        merged: list[str] = []  # "KEY=a, b" -> "KEY=a,b": spaces after commas are fine
        for tok in rest:
            if merged and "=" not in tok:
                merged[-1] += tok
            else:
                merged.append(tok)
        for key, raw in _assignments(merged, verb):
            vals = [v.strip() for v in raw.split(",") if v.strip()]
            if not vals:
                raise GrammarError(f"`sweep {key}=` has no values")
            values[key] = vals
        return Command("sweep", values=values)
    if verb == "focus":
        keys = [k.strip().upper() for k in " ".join(rest).split(",") if k.strip()]
        if not keys:
            raise GrammarError("`focus` needs KEY,KEY (or `focus all`)")
        if keys == ["ALL"]:
            return Command("focus")
        bad = [k for k in keys if not re.fullmatch(_KEY, k)]
        if bad:
            raise GrammarError(f"`focus` got bad key(s): {', '.join(bad)}")
        return Command("focus", keys=tuple(keys))
    raise GrammarError("expected `sweep KEY=a,b`, `set KEY=v`, `focus KEY,KEY` or `stop`")


def parse_directive(text: str) -> list[Command]:
    """Every command in a directive's text; raises GrammarError on the first bad one."""
    parts = [p.strip() for chunk in text.splitlines() for p in chunk.split(";")]
    commands = [parse_command(p) for p in parts if p]
    if not commands:
        raise GrammarError("empty directive")
    return commands


# Delivery -----------------------------------------------------------------------------------------
def instruction_file(driver: str) -> str | None:
    """The file a coding-agent CLI reads on start (None for the built-in sweep)."""
    if driver == "sweep":
        return None
    return "CLAUDE.md" if driver == "claude" else "AGENTS.md"


def render_directives(pending: list[dict[str, Any]]) -> str:
    lines = [
        "# Directives from the operator",
        "",
        "Obey these before anything else. After acting on one, run `helm directive ack ID`.",
        "",
    ]
    if not pending:
        lines.append("No directives pending.")
    for d in sorted(pending, key=lambda d: d["id"]):
        lines.append(f"## #{d['id']} (from {d['sender']})")
        lines.append("")
        lines.append(d["text"])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_instructions(agent: str, pending: list[dict[str, Any]]) -> str:
    return (
        f"# You are helm agent `{agent}`\n\n"
        "Read `program.md` in this folder and follow it: it is your whole job.\n"
        "Directives from the operator come first; they are repeated below and in "
        "`DIRECTIVES.md`.\n\n" + render_directives(pending).replace("# Directives", "## Directives")
    )


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def deliver(ws: Workspace, agent: str, worktree: Path, driver: str) -> list[dict[str, Any]]:
    """Write the agent's pending directives into its worktree and record the delivery."""
    from helm.models.directives import list_directives, mark_delivered

    with ws.db(write=False) as db:
        pending = list_directives(db, agent=agent, pending_only=True)
    if not worktree.is_dir():
        return pending
    _write_if_changed(worktree / "DIRECTIVES.md", render_directives(pending))
    extra = instruction_file(driver)
    if extra:
        _write_if_changed(worktree / extra, render_instructions(agent, pending))
    fresh = [
        d["id"]
        for d in pending
        if any(x["agent"] == agent and x["delivered_at"] is None for x in d["deliveries"])
    ]
    if fresh:
        with ws.db(write=True) as db:
            mark_delivered(db, agent, fresh)
    return pending
