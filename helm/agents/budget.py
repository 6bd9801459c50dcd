"""Budgets: how much of the campaign's (and each agent's) money or GPU time may be spent.

Read from ``<home>/config.toml``; every key is optional and no table means no budget::

    [budget]
    money = 500.0             # USD, at the hosts' prices (helm host add --price)
    gpu_hours = 40            # GPU-hours, whatever the hosts cost

    [budget.agents]
    a1 = 100.0                # money
    a2 = {gpu_hours = 5}      # or {money = 50.0, gpu_hours = 5}

The figures spent are ``helm.models.costs``' (running tries counted up to now, so a long run
is seen while it runs). One scope (the campaign, or one agent) is ``ok``, ``warn`` from 80%
and ``stop`` from 100% of whichever of its limits is used the most. At ``stop`` no new job is
queued for that scope (``helm exp run`` refuses, a promotion needs ``--past-budget``); a job
already running is never touched: it was paid for when it was queued, and killing it would
waste what it already spent. Each crossing (a scope reaching ``warn`` or ``stop`` under one
limit) is posted to the feed once, when a run is next queued, not on every tick.
"""

from __future__ import annotations

import fcntl
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from helm.agents.config import read_toml
from helm.models.costs import Usage, agent_usage, campaign_usage
from helm.models.db import Db
from helm.models.feed import post_feed
from helm.workspace import Workspace

Level = Literal["ok", "warn", "stop"]
WARN_AT = 0.8  # share of a limit from which helm warns
_RANK = {"ok": 0, "warn": 1, "stop": 2}
POSTED_FILE = "budget-posted.json"  # under <home>: the crossings already told in the feed


class BudgetError(ValueError):
    """The ``[budget]`` table of config.toml is malformed (a typo must not mean "no budget")."""


@dataclass(frozen=True)
class Limit:
    """One scope's limits; None: not limited on that measure."""

    money: float | None = None
    gpu_hours: float | None = None

    @property
    def empty(self) -> bool:
        return self.money is None and self.gpu_hours is None


@dataclass(frozen=True)
class Budget:
    campaign: Limit = field(default_factory=Limit)
    agents: dict[str, Limit] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.campaign.empty and not self.agents


@dataclass(frozen=True)
class ScopeState:
    """Where one scope stands, on the measure nearest its limit."""

    scope: str  # "campaign" or "agent NAME"
    level: Level
    unit: Literal["money", "gpu_hours"]
    spent: float
    limit: float
    money_known: bool  # False: some tries ran on hosts without a price (money is a floor)
    line: str  # "budget reached: $512.30 of $500.00 (campaign)"

    @property
    def share(self) -> float:
        return self.spent / self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "level": self.level,
            "unit": self.unit,
            "spent": round(self.spent, 6),
            "limit": self.limit,
            "share": round(self.share, 4),
            "money_known": self.money_known,
            "line": self.line,
        }


@dataclass(frozen=True)
class BudgetState:
    campaign: ScopeState | None = None
    agents: dict[str, ScopeState] = field(default_factory=dict)

    def scopes(self, agent: str | None = None) -> list[ScopeState]:
        """The scopes that apply to ``agent`` (all of them for None): campaign first."""
        out = [self.campaign] if self.campaign else []
        if agent is None:
            return out + [self.agents[a] for a in sorted(self.agents)]
        return out + ([self.agents[agent]] if agent in self.agents else [])

    def worst(self, agent: str | None = None) -> ScopeState | None:
        """The scope nearest its limit among those that apply (campaign first on a tie)."""
        found = self.scopes(agent)
        if not found:
            return None
        return max(found, key=lambda s: (_RANK[s.level], s.share, s.scope == "campaign"))

    def binding(self, agent: str | None) -> ScopeState | None:
        """The scope that decides whether a job for ``agent`` may be queued: the worst of the
        campaign's and the agent's own; for the operator's jobs (None: promotion seeds, ``helm
        job run``) the campaign's alone, since an agent's budget stops only that agent."""
        if agent is None:
            return self.campaign
        return self.worst(agent)

    def level(self, agent: str | None = None) -> Level:
        w = self.worst(agent)
        return w.level if w else "ok"

    def line(self, agent: str | None = None) -> str:
        w = self.worst(agent)
        return w.line if w else "no budget"

    def to_json(self, agent: str | None = None) -> dict[str, Any]:
        """What ``helm context --json`` carries under ``budget`` (None scopes: no limit)."""
        mine = self.agents.get(agent) if agent else None
        return {
            "level": self.level(agent),
            "line": self.line(agent),
            "campaign": self.campaign.to_json() if self.campaign else None,
            "agent": mine.to_json() if mine else None,
        }


# Reading the config -----------------------------------------------------------------------------
def _amount(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BudgetError(f"{where} must be a positive number, not {value!r}")
    return float(value)


def _limit(table: Any, where: str, *, nested: bool) -> Limit:
    if not isinstance(table, dict):
        raise BudgetError(f"{where} must be a table")
    unknown = sorted(set(table) - {"money", "gpu_hours"} - ({"agents"} if nested else set()))
    if unknown:
        raise BudgetError(f"{where} has unknown key {unknown[0]!r} (money, gpu_hours)")
    money = table.get("money")
    hours = table.get("gpu_hours")
    return Limit(
        money=None if money is None else _amount(money, f"{where} money"),
        gpu_hours=None if hours is None else _amount(hours, f"{where} gpu_hours"),
    )


def parse_budget(data: dict[str, Any]) -> Budget:
    """The budget of a parsed config.toml (its ``budget`` table)."""
    table = data.get("budget", {})
    campaign = _limit(table, "[budget]", nested=True)
    agents_t = table.get("agents", {})
    if not isinstance(agents_t, dict):
        raise BudgetError("[budget.agents] must be a table")
    agents: dict[str, Limit] = {}
    for name, value in agents_t.items():
        where = f"[budget.agents] {name}"
        if isinstance(value, dict):
            agents[name] = _limit(value, where, nested=False)
        else:
            agents[name] = Limit(money=_amount(value, where))
    return Budget(campaign, {a: lim for a, lim in agents.items() if not lim.empty})


def load_budget(ws: Workspace) -> Budget:
    """The workspace's budget; none when config.toml does not exist or has no ``[budget]``."""
    return parse_budget(read_toml(ws.config_path, BudgetError))


# Deciding ---------------------------------------------------------------------------------------
def _figure(unit: str, value: float, known: bool) -> str:
    if unit == "money":
        return f"{'at least ' if not known else ''}${value:,.2f}"
    return f"{value:,.2f}"


def _percent(share: float) -> int:
    """Whole percent, rounded down (85% is 85 even when 8.5 / 10 is 0.8499999...)."""
    return math.floor(100 * share + 1e-9)


def _line(level: Level, unit: str, spent: float, limit: float, known: bool, scope: str) -> str:
    used = _figure(unit, spent, known)
    of = f"${limit:,.2f}" if unit == "money" else f"{limit:,.2f} GPU-hours"
    head = "budget reached" if level == "stop" else f"budget at {_percent(spent / limit)}%"
    return f"{head}: {used} of {of} ({scope})"


def scope_state(scope: str, limit: Limit, usage: Usage) -> ScopeState | None:
    """The scope's state on whichever measure is used the most; None without a limit."""
    measures: list[tuple[str, float, float, bool]] = []
    if limit.money is not None:
        measures.append(("money", usage.money, limit.money, usage.money_known))
    if limit.gpu_hours is not None:
        measures.append(("gpu_hours", usage.gpu_hours, limit.gpu_hours, True))
    if not measures:
        return None
    unit, spent, lim, known = max(measures, key=lambda m: m[1] / m[2])
    share = spent / lim
    level: Level = "stop" if share >= 1.0 else "warn" if share >= WARN_AT else "ok"
    line = _line(level, unit, spent, lim, known, scope)
    return ScopeState(scope, level, unit, spent, lim, known, line)  # type: ignore[arg-type]


def budget_state(db: Db, budget: Budget, now: float | None = None) -> BudgetState:
    """Where the campaign and each agent with a budget stand at ``now`` (default: the wall
    clock; the TUI passes its snapshot's clock, so header and spent figures agree)."""
    if budget.empty:
        return BudgetState()
    campaign = None
    if not budget.campaign.empty:
        campaign = scope_state("campaign", budget.campaign, campaign_usage(db, now))
    agents: dict[str, ScopeState] = {}
    if budget.agents:
        used = agent_usage(db, now)
        for name, lim in budget.agents.items():
            st = scope_state(f"agent {name}", lim, used.get(name, Usage()))
            if st is not None:
                agents[name] = st
    return BudgetState(campaign, agents)


# Acting -----------------------------------------------------------------------------------------
class BudgetReached(RuntimeError):
    """No new job for this scope: the message is the state's line."""

    def __init__(self, state: ScopeState) -> None:
        super().__init__(state.line)
        self.state = state


def _crossing_key(s: ScopeState) -> str:
    """One crossing: a scope reaching a level under one limit (a raised limit is new)."""
    return f"{s.scope}|{s.level}|{s.unit}|{s.limit:g}"


def _post_text(s: ScopeState) -> str:
    if s.level == "stop":
        return f"{s.line}; no new job is queued for it, running jobs finish"
    return f"{s.line}; at 100% no new job is queued for it"


def post_crossings(ws: Workspace, state: BudgetState, agent: str | None) -> list[str]:
    """Post each warn/stop crossing that applies to ``agent`` once; returns the texts posted.

    The crossings told are kept in ``<home>/budget-posted.json`` under a file lock, so two
    agents queueing at once post one line, and a supervisor restart does not repeat it.
    """
    due = [s for s in state.scopes(agent) if s.level != "ok"]
    if not due:
        return []
    path = Path(ws.root) / POSTED_FILE
    posted: list[str] = []
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            try:
                told: dict[str, float] = json.loads(fh.read() or "{}")
            except ValueError:
                told = {}
            fresh = [s for s in due if _crossing_key(s) not in told]
            if not fresh:
                return []
            with ws.db(write=True) as db:
                for s in fresh:
                    who = s.scope.removeprefix("agent ") if s.scope != "campaign" else None
                    row = post_feed(db, _post_text(s), agent=who, kind="system", tags=["budget"])
                    told[_crossing_key(s)] = row["created_at"]
                    posted.append(row["text"])
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(told, indent=1, sort_keys=True))
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return posted


def check_queue(ws: Workspace, agent: str | None, *, past_budget: bool = False) -> BudgetState:
    """Before queueing a job for ``agent`` (None: the operator's, campaign only): tell new
    crossings, and raise ``BudgetReached`` at ``stop`` unless ``past_budget``."""
    budget = load_budget(ws)
    if budget.empty:
        return BudgetState()
    with ws.db(write=False) as db:
        state = budget_state(db, budget)
    post_crossings(ws, state, agent)
    worst = state.binding(agent)
    if worst is not None and worst.level == "stop" and not past_budget:
        raise BudgetReached(worst)
    return state


# What other views show --------------------------------------------------------------------------
def header_text(state: BudgetState) -> str | None:
    """The TUI header's budget cell: None while every scope is ok (nothing to say)."""
    parts: list[str] = []
    c = state.campaign
    if c is not None and c.level != "ok":
        used = _figure(c.unit, c.spent, c.money_known).removeprefix("at least ")
        of = f"${c.limit:,.2f}" if c.unit == "money" else f"{c.limit:,.2f} GPU-h"
        head = "budget reached" if c.level == "stop" else f"budget {_percent(c.share)}%"
        parts.append(f"{head} {used}/{of}")
    over = [a for a, s in sorted(state.agents.items()) if s.level == "stop"]
    near = [a for a, s in sorted(state.agents.items()) if s.level == "warn"]
    if over:
        parts.append(f"over budget: {', '.join(over)}")
    if near:
        parts.append(f"near budget: {', '.join(near)}")
    return " · ".join(parts) or None


def context_budget(ws: Workspace, db: Db, agent: str | None) -> dict[str, Any] | None:
    """``helm context``'s ``budget`` (``BudgetState.to_json``), None without a budget."""
    budget = load_budget(ws)
    return None if budget.empty else budget_state(db, budget).to_json(agent)


def context_lines(data: dict[str, Any] | None) -> list[str]:
    """``helm context``'s budget section from ``BudgetState.to_json(agent)`` (None or no
    limit: nothing), telling an agent what the level means for its next run."""
    if not data or (data.get("campaign") is None and data.get("agent") is None):
        return []
    lines = ["## Budget"]
    for key in ("campaign", "agent"):
        s = data.get(key)
        if s:
            lines.append(f"- {s['line']}")
    level = data.get("level")
    if level == "stop":
        lines.append("- no new run is queued: `helm exp run` refuses until the budget is raised")
    elif level == "warn":
        lines.append("- over 80% spent: prefer the runs most likely to improve the best")
    return lines
