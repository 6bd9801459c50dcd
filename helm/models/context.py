"""``helm context``: everything an agent needs before its next experiment, in one read."""

from __future__ import annotations

from typing import Any

from helm.models.agents import get_agent
from helm.models.audits import recent_audits
from helm.models.base import base_of
from helm.models.claims import live_claims
from helm.models.costs import Usage, agent_usage, campaign_usage, improvement_per_money
from helm.models.db import Db
from helm.models.directives import list_directives
from helm.models.feed import list_feed
from helm.models.pins import latest_pin
from helm.models.runs import leaderboard, run_counts


def context(db: Db, agent: str | None, *, top: int = 5, feed: int = 10) -> dict[str, Any]:
    """The agent itself, the base (the pin, with its figures under ``stats``:
    ``helm.models.base``), its pending directives, the leaderboard, feed and claims, and
    what the GPUs cost so far (``usage``: the campaign's, and the agent's own under
    ``agent.usage``), so an agent can weigh an expensive idea against what is left, and what
    that money bought (``improvement``: ``costs.improvement_per_money``)."""
    me: dict[str, Any] | None = None
    if agent is not None:
        row = get_agent(db, agent)
        runs, keeps = run_counts(db, agent)
        best = leaderboard(db, limit=1, agent=agent)
        me = {
            "name": row["name"],
            "driver": row["driver"],
            "state": row["state"],
            "branch": row["branch"],
            "worktree": row["worktree"],
            "runs": runs,
            "keeps": keeps,
            "best": best[0] if best else None,
            "usage": agent_usage(db).get(agent, Usage()).to_json(),
        }
    pin = latest_pin(db)
    base = base_of(db, pin["id"]) if pin else None
    return {
        "agent": me,
        "base": {**pin, "stats": base.to_json() if base else None} if pin else None,
        "directives": (
            list_directives(db, agent=agent, pending_only=True, own_delivery_only=True)
            if agent
            else []
        ),
        "leaderboard": leaderboard(db, limit=top),
        "feed": list_feed(db, limit=feed),
        "claims": live_claims(db),
        "audits": recent_audits(db),
        "usage": {"campaign": campaign_usage(db).to_json()},
        "improvement": improvement_per_money(db),
    }
