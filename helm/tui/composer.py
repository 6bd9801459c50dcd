"""What the directive composer offers: suggestions the agents present can follow.

A directive is read by every agent it goes to, but not every agent reads prose: the built-in
sweep driver follows only the grammar of ``helm.agents.directives`` (``sweep KEY=a,b``,
``set KEY=v``, ``focus KEY,KEY``, ``stop``) and acknowledges anything else as something it
cannot follow; the coding-agent drivers (``claude``, ``codex``, ``opencode``, a command
template) read the text as prose. So the composer says who is listening, suggests grammar
lines built from the knobs the swarm has actually turned (the leaderboard runs' ``env``)
for sweep agents and prose only when a prose reader is present, and checks what the
operator types against the grammar as it is typed. Pure functions: the dialog renders them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from helm.agents.directives import GrammarError, parse_directive
from helm.agents.drivers import BUILTIN
from helm.agents.knobs import Knob, format_value
from helm.agents.search import neighbours

SWEEP = "sweep agents"
PROSE = "prose readers"
GRAMMAR = "sweep KEY=a,b · set KEY=v · focus KEY,KEY · stop"
# golf_task's own knobs: examples when no run has changed a knob yet.
FALLBACK_ENV = {"NUM_LAYERS": "11", "MODEL_DIM": "512"}
PROSE_EXAMPLES = (
    "try int5 for MLP weights, keep the rest of the best run",
    "explain why the best run won, then try one change on top of it",
)


class AgentLike(Protocol):
    """What the composer needs of an agent (``helm.tui.data.AgentView`` has it)."""

    name: str
    driver: str
    state: str
    desired: str


@dataclass(frozen=True)
class Audience:
    """The agents a directive would reach now, split by how they read it."""

    sweep: tuple[str, ...] = ()  # follow only the sweep grammar
    prose: tuple[tuple[str, str], ...] = ()  # (name, driver): read free text

    @property
    def empty(self) -> bool:
        return not self.sweep and not self.prose

    def prose_names(self) -> str:
        return ", ".join(f"{name} ({driver.split()[0]})" for name, driver in self.prose)


@dataclass(frozen=True)
class Suggestion:
    text: str
    who: str  # SWEEP: a grammar line every agent can follow; PROSE: for prose readers only


def present(agent: AgentLike) -> bool:
    """Running, or about to: stopped agents and those asked to stop read nothing new."""
    return agent.state != "stopped" and agent.desired != "down"


def audience(agents: Iterable[AgentLike], targets: Collection[str] | None = None) -> Audience:
    """Who would read a directive sent now to ``targets`` (None: every agent present)."""
    chosen = [a for a in agents if present(a) and (not targets or a.name in targets)]
    return Audience(
        sweep=tuple(a.name for a in chosen if a.driver == BUILTIN),
        prose=tuple((a.name, a.driver) for a in chosen if a.driver != BUILTIN),
    )


def _knob(name: str, text: str) -> Knob | None:
    for kind in (int, float):
        try:
            return Knob(name, kind, kind(text))
        except ValueError:
            continue
    return None


def _knobs(runs: Sequence[Mapping[str, Any]], limit: int = 2) -> list[Knob]:
    """The numeric knobs runs have set most often, each at its value in the best run that
    set it (``runs`` best first, as the leaderboard holds them); golf_task's when none."""
    counts: Counter[str] = Counter()
    best_value: dict[str, str] = {}
    for run in runs:
        for key, value in (run.get("env") or {}).items():
            counts[key] += 1
            best_value.setdefault(key, str(value))
    for values, order in ((best_value, [k for k, _ in counts.most_common()]), (FALLBACK_ENV, [])):
        found = [k for k in (_knob(key, values[key]) for key in order or values) if k]
        if found:
            return found[:limit]
    return []


def grammar_lines(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """``sweep`` / ``set`` / ``focus`` lines over the swarm's knobs (all of them parse)."""
    knobs = _knobs(runs)
    lines = []
    for knob in knobs[:1]:
        near = [format_value(v) for v in sorted(neighbours(knob, knob.default)[:3])]
        lines.append(f"sweep {knob.name}={','.join(near)}")
    for knob in knobs[1:2] or knobs[:1]:
        lines.append(f"set {knob.name}={format_value(neighbours(knob, knob.default)[0])}")
    if knobs:
        lines.append(f"focus {','.join(k.name for k in knobs)}")
    return [line for line in lines if _follows(line)]


def _follows(text: str) -> bool:
    try:
        parse_directive(text)
    except GrammarError:
        return False
    return True


def suggestions(aud: Audience, runs: Sequence[Mapping[str, Any]]) -> list[Suggestion]:
    """Grammar lines when a sweep agent is present (every driver can follow those), prose
    only when some agent reads prose; nothing when nobody is listening."""
    out: list[Suggestion] = []
    if aud.sweep:
        out += [Suggestion(line, SWEEP) for line in grammar_lines(runs)]
    if aud.prose:
        out += [Suggestion(text, PROSE) for text in PROSE_EXAMPLES]
    return out


def describe(aud: Audience) -> str:
    """Who is listening, in two lines: the sweep agents' grammar, the prose readers."""
    if aud.empty:
        return "no agent running: a directive waits for the agents that start later"
    sweep = (
        f"{', '.join(aud.sweep)} (sweep) follow only: {GRAMMAR}"
        if aud.sweep
        else "no sweep agent: every agent reads prose"
    )
    verb = "reads" if len(aud.prose) == 1 else "read"
    prose = f"{aud.prose_names()} {verb} free prose" if aud.prose else "no agent reads free prose"
    return f"{sweep}\n{prose}"


def verdict(text: str, aud: Audience) -> str:
    """Who can follow ``text``: the sweep agents only if it parses, prose readers always."""
    text = text.strip()
    if not text or aud.empty:
        return ""
    parts = []
    if aud.sweep:
        names = ", ".join(aud.sweep)
        try:
            parse_directive(text)
        except GrammarError as exc:
            parts.append(f"✗ {names} (sweep) cannot follow this: {exc}")
        else:
            parts.append(f"✓ {names} (sweep) can follow this")
    if aud.prose:
        parts.append(f"✓ {aud.prose_names()} will read it as prose")
    return "\n".join(parts)
