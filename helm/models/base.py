"""The base a run is compared with, and the seeds of a configuration: defined here, once.

**The base of a pin** is the set of runs that measured the pinned code itself:

- its *reference runs*: runs made on that pin (``run.base_pin_id``) flagged ``baseline``,
  at the pin's own commit (the pinned code and ``run.env`` unchanged; a reference after a
  ``set`` directive, or a coding agent's first run that already edits the code, measures
  something else), that finished with a score, from any agent;
- for a pin of kind ``run``, the pinned run itself.

Its figures (``BaseStats``): ``mean`` of their val_bpb; ``spread``, the sample standard
deviation of those scores when there are two or more, else the pooled seed spread of the
whole campaign (``seed_spread``), else None; ``n``; and the run ids.

**Δ base** of a run is its val_bpb minus the mean of the base of the pin it ran on (its
``base_pin_id``; a run made outside the agents' loop has none and is compared with the
current base). A run that is part of that base has no Δ: it shows ``◆`` instead. The TUI's
header and leaderboard, the feed's result posts and the agents' report, ``helm diff`` and
``helm context`` all read these numbers through ``bases_of`` / ``base_of``; the keep rule
starts a branch from the base's mean (``helm.agents.report.branch_start``).

**The seeds of a configuration** are the scored runs of the same code hash *and* the same
canonical environment (``run.env_json`` as ``runs.canonical_env`` writes it), one score per
seed (the first: a replay of a seed says nothing new). The leaderboard's "seeds" column,
``helm diff``'s seeds and the pooled spread all group runs this way (``seed_groups``).

**The best** run is the lowest val_bpb among the runs that count: kept, or promoted (a
written submission), never a discard (``runs.best_kept_run``): the TUI header's "best kept"
and its ★, and the feed's "vs leader".

Plain SQL and arithmetic: this module sits in the store's layer so that every reader above
it (the TUI's snapshot among them, which reads the bases of a whole leaderboard in three
queries) gets the same numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helm.models.db import Db, Row, in_list
from helm.models.runs import config_scores, seed_scores
from helm.models.states import FINISHED_RUN

ConfigKey = tuple[str, str]
"""A configuration: ``(code_hash, env_json)``."""


# Seeds and the pooled spread ------------------------------------------------------------------
def seed_groups(scores: Iterable[Mapping[str, Any]]) -> dict[ConfigKey, dict[Any, float]]:
    """Scored runs (``code_hash, env_json, seed, val_bpb``, oldest first) grouped by
    configuration, one score per seed: the first score of a seed stands."""
    groups: dict[ConfigKey, dict[Any, float]] = {}
    for r in scores:
        key = (r["code_hash"], r["env_json"])
        groups.setdefault(key, {}).setdefault(r["seed"], float(r["val_bpb"]))
    return groups


def pooled_spread(groups: Iterable[Sequence[float]]) -> tuple[float | None, int]:
    """Pooled sample std over groups with >= 2 values; (None, 0) when there are none."""
    ss, dof = 0.0, 0
    for values in groups:
        xs = [v for v in values if v is not None and math.isfinite(v)]
        if len(xs) < 2:
            continue
        mean = sum(xs) / len(xs)
        ss += sum((x - mean) ** 2 for x in xs)
        dof += len(xs) - 1
    if dof == 0:
        return None, 0
    return math.sqrt(ss / dof), dof


def seed_spread(scores: Iterable[Mapping[str, Any]]) -> tuple[float | None, int]:
    """The pooled spread of scored runs (as ``runs.seed_scores`` reads them) over their
    configurations' seeds, and its degrees of freedom."""
    return pooled_spread(list(g.values()) for g in seed_groups(scores).values())


def config_seeds(db: Db, keys: Sequence[ConfigKey]) -> dict[ConfigKey, dict[Any, float]]:
    """The seeds of each of these configurations (seed -> its first score)."""
    found = seed_groups(config_scores(db, keys))
    return {k: found.get(k, {}) for k in keys}


def seed_counts(db: Db, keys: Sequence[ConfigKey]) -> dict[ConfigKey, int]:
    """How many seeds each of these configurations has scored (the leaderboard's column)."""
    return {k: len(v) for k, v in config_seeds(db, keys).items()}


# The base ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaseStats:
    """The base of one pin: its runs and their figures (see the module docstring)."""

    pin: Row
    run_ids: tuple[int, ...]  # the base's runs, oldest first
    mean: float | None  # None: no run of the base has a score yet
    spread: float | None
    n: int
    pooled: bool = False  # the spread is the campaign's pooled seed spread (n < 2)

    @property
    def pin_id(self) -> int:
        return int(self.pin["id"])

    @property
    def label(self) -> str:
        return pin_label(self.pin)

    def contains(self, run_id: int | None) -> bool:
        return run_id is not None and int(run_id) in self.run_ids

    def delta(self, run_id: int | None, val_bpb: float | None) -> float | None:
        """Δ base: ``val_bpb`` - the mean; None for a run of the base itself or no score."""
        if val_bpb is None or self.mean is None or self.contains(run_id):
            return None
        if not (math.isfinite(val_bpb) and math.isfinite(self.mean)):
            return None
        return val_bpb - self.mean

    def to_json(self) -> dict[str, Any]:
        return {
            "pin_id": self.pin_id,
            "pin": self.label,
            "run_ids": list(self.run_ids),
            "mean": self.mean,
            "spread": self.spread,
            "spread_pooled": self.pooled,
            "n": self.n,
        }


def pinned_run_id(pin: Mapping[str, Any]) -> int | None:
    """The run a pin of kind ``run`` pinned (its ref is ``14``; stores before issue 16 wrote
    ``run 14``), else None."""
    if pin.get("kind") != "run":
        return None
    ref = str(pin.get("ref") or "").strip().removeprefix("run").strip().lstrip("#")
    return int(ref) if ref.isdigit() else None


def pin_label(pin: Mapping[str, Any], *, short: bool = False) -> str:
    """A pin as people read it: ``run #14``, ``PR owner/repo#374``, ``file /path`` (``short``:
    the file's name only), ``init golf_task``."""
    run_id = pinned_run_id(pin)
    if run_id is not None:
        return f"run #{run_id}"
    kind, ref = str(pin.get("kind") or "?"), str(pin.get("ref") or "")
    if kind == "pr":
        return f"PR {ref}"
    if kind == "file" and short:
        return f"file {ref.rsplit('/', 1)[-1]}"
    return f"{kind} {ref}".strip()


def base_pin_id(run: Mapping[str, Any], current_pin_id: int | None) -> int | None:
    """The pin whose base a run is compared with: the one it ran on, else the current one."""
    pin_id = run.get("base_pin_id")
    return int(pin_id) if pin_id is not None else current_pin_id


def _pins(db: Db, pin_ids: Sequence[int]) -> list[Row]:
    params: dict[str, Any] = {}
    return db.rows(f"SELECT * FROM pin WHERE {in_list('id', pin_ids, params, 'p')}", params)


def _reference_scores(db: Db, pin_ids: Sequence[int]) -> list[Row]:
    """``id, val_bpb, base_pin_id`` of the reference runs of these pins, oldest first.

    The status is checked here rather than in SQL: a ``status IN`` there sends SQLite
    through the leaderboard's index, row by row, three times slower than one pass over the
    table (a scored run is a finished one anyway, ``states.FINISHED_RUN``).
    """
    params: dict[str, Any] = {"yes": True}
    rows = db.rows(
        "SELECT run.id, run.val_bpb, run.base_pin_id, run.status FROM run "
        'JOIN pin ON pin.id = run.base_pin_id AND pin."commit" = run."commit" '
        f"WHERE {in_list('run.base_pin_id', pin_ids, params, 'p')} AND run.baseline = :yes "
        "AND run.val_bpb IS NOT NULL ORDER BY run.id",
        params,
    )
    return [r for r in rows if r["status"] in FINISHED_RUN]


def _scored(db: Db, run_ids: Sequence[int]) -> dict[int, float]:
    """The scores of these runs among those that finished with one."""
    if not run_ids:
        return {}
    params: dict[str, Any] = {}
    finished = in_list("status", sorted(FINISHED_RUN), params, "st")
    rows = db.rows(
        f"SELECT id, val_bpb FROM run WHERE {in_list('id', run_ids, params, 'r')} "
        f"AND {finished} AND val_bpb IS NOT NULL",
        params,
    )
    return {int(r["id"]): float(r["val_bpb"]) for r in rows}


def pooled_seed_spread(db: Db) -> float | None:
    """The campaign's pooled seed spread (None before any configuration has two seeds)."""
    return seed_spread(seed_scores(db))[0]


def bases_of(
    db: Db,
    pin_ids: Iterable[int | None],
    *,
    pooled: Callable[[Db], float | None] = pooled_seed_spread,
) -> dict[int, BaseStats]:
    """The bases of these pins, by pin id (unknown pins left out), in three queries whatever
    their number (the leaderboard reads every row's base at once), plus ``pooled`` once if a
    base has a single run (the TUI passes one that remembers its last answer)."""
    wanted = sorted({int(p) for p in pin_ids if p is not None})
    if not wanted:
        return {}
    pins = _pins(db, wanted)
    pinned = {int(p["id"]): pinned_run_id(p) for p in pins}
    scores = _scored(db, [r for r in pinned.values() if r is not None])
    members: dict[int, dict[int, float]] = {int(p["id"]): {} for p in pins}
    for pin_id, run_id in pinned.items():
        if run_id is not None and run_id in scores:
            members[pin_id][run_id] = scores[run_id]
    for r in _reference_scores(db, wanted):
        members[int(r["base_pin_id"])][int(r["id"])] = float(r["val_bpb"])
    read: list[float | None] = []  # read once, only if a base needs it

    def spread(values: list[float]) -> tuple[float | None, bool]:
        if len(values) >= 2:
            return statistics.stdev(values), False
        if not values:
            return None, False
        if not read:
            read.append(pooled(db))
        return read[0], read[0] is not None

    out: dict[int, BaseStats] = {}
    for p in pins:
        runs = members[int(p["id"])]
        ids = tuple(sorted(runs))
        values = [runs[i] for i in ids]
        s, is_pooled = spread(values)
        out[int(p["id"])] = BaseStats(
            pin=p,
            run_ids=ids,
            mean=statistics.fmean(values) if values else None,
            spread=s,
            n=len(values),
            pooled=is_pooled,
        )
    return out


def base_of(db: Db, pin_id: int | None) -> BaseStats | None:
    """The base of one pin (None for no pin or an unknown one)."""
    if pin_id is None:
        return None
    return bases_of(db, [pin_id]).get(int(pin_id))
