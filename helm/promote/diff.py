"""``helm diff``: what changed between two runs — code, environment, hyperparameters, results.

autoresearch's simplicity rule weighs a gain against the lines it added, so the code diff
carries per-file line counts; the environment and the hyperparameters the script actually
printed are shown side by side with changed values marked (a default that moved is invisible
in the environment but not in the log); results come with deltas (A minus B: negative
val_bpb is better). B defaults to A's parent; ``base=True`` compares with the pinned base,
whose val_bpb is its mean. Every diff also shows A against the base of the pin it ran on
(``helm.models.base``: the mean, spread and count of the base's runs, the same figures as the
TUI's "Δ base" and the feed's "vs base"); a run's seeds are those of its code and canonical
environment (``config_seeds``, the leaderboard's "seeds").
"""

from __future__ import annotations

import difflib
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from helm import fmt
from helm.agents.report import screen_facts
from helm.models.base import BaseStats, base_of, base_pin_id, config_seeds, pin_label, pinned_run_id
from helm.models.db import NotFound
from helm.models.pins import find_pin, latest_pin
from helm.models.runs import find_run, get_run
from helm.promote import sources as src
from helm.workspace import Workspace

METRICS = (
    "val_bpb",
    "val_loss",
    "bytes_total",
    "bytes_code",
    "steps",
    "step_avg_ms",
    "train_time_ms",
)


class DiffError(LookupError):
    """The runs cannot be compared (no parent, no pin, unknown run)."""


@dataclass
class Side:
    """One end of a diff: a run, or a bare commit (the pinned base)."""

    label: str
    run_id: int | None
    commit: str | None
    description: str = ""
    agent: str | None = None
    status: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    # the screen a full run came through, or the run itself when it is a screen
    # (``report.screen_facts``: run_id, status, val_bpb, ref_run_id, ref_bpb, delta, note)
    screen: dict[str, Any] | None = None

    def screen_text(self) -> str:
        """``through screen #15 1.3060 (-0.0040 vs the base's screen #14)`` for a full run,
        ``a screen (screen-fail, -0.0040 vs ...)`` for a screen; "" for neither."""
        s = self.screen
        if s is None:
            return ""
        vs = f"{fmt.delta(s['val_bpb'], s['ref_bpb'])} vs the base's screen #{s['ref_run_id']}"
        if s["run_id"] == self.run_id:
            return f"a screen ({s['status']}" + (f", {vs})" if s["ref_run_id"] else ")")
        text = f"through screen #{s['run_id']} {fmt.score(s['val_bpb'])}"
        return text + (f" ({vs})" if s["ref_run_id"] else "")


@dataclass
class FileChange:
    path: str
    status: str  # added | removed | modified
    added: int
    removed: int


@dataclass
class Row:
    key: str
    a: str | None
    b: str | None

    @property
    def changed(self) -> bool:
        return self.a != self.b


@dataclass
class Metric:
    name: str
    a: Any
    b: Any

    @property
    def delta(self) -> float | None:
        if self.name == "seed":  # a label, not a quantity
            return None
        if isinstance(self.a, int | float) and isinstance(self.b, int | float):
            return self.a - self.b
        return None


@dataclass
class RunDiff:
    """A (the run of interest) against B (what it is compared with)."""

    a: Side
    b: Side
    files: list[FileChange]
    patch: str
    env: list[Row]
    hyperparameters: list[Row]
    results: list[Metric]
    base: BaseStats | None = None  # the base of the pin A ran on (else the current one)

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)

    def env_changes(self) -> list[Row]:
        return [r for r in self.env if r.changed]

    def to_json(self) -> dict[str, Any]:
        def rows(items: list[Row]) -> list[dict[str, Any]]:
            return [{"key": r.key, "a": r.a, "b": r.b, "changed": r.changed} for r in items]

        return {
            "a": asdict(self.a),
            "b": asdict(self.b),
            "code": {
                "added": self.added,
                "removed": self.removed,
                "files": [asdict(f) for f in self.files],
                "patch": self.patch,
            },
            "env": rows(self.env),
            "hyperparameters": rows(self.hyperparameters),
            "results": [
                {"metric": m.name, "a": m.a, "b": m.b, "delta": m.delta} for m in self.results
            ],
            "base": self.base.to_json() if self.base else None,
        }


# Sides --------------------------------------------------------------------------------------------
def _results(ws: Workspace, run: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {m: run.get(m) for m in METRICS}
    out["seed"] = src.effective_seed(ws, run)
    seeds: dict[Any, float] = {}
    if run.get("code_hash"):
        key = (run["code_hash"], run.get("env_json") or "{}")
        with ws.db(write=False) as db:
            seeds = config_seeds(db, [key])[key]
    # a run without a job seed ran the script's default (or its env's SEED): name it
    default = src.effective_seed(ws, {**run, "seed": None}, read_log=False)
    out["seeds"] = sorted(default if s is None else int(s) for s in seeds)
    out["seeds_mean_val_bpb"] = sum(seeds.values()) / len(seeds) if seeds else None
    return out


def run_side(ws: Workspace, run: dict[str, Any], role: str = "") -> Side:
    facts = src.log_facts(ws, run)
    screen = None
    if run.get("screen") or run.get("screen_run_id") is not None:
        with ws.db(write=False) as db:
            screen = screen_facts(db, run)
    label = f"run #{run['id']}" + (f" ({role})" if role else "")
    return Side(
        label=label,
        run_id=int(run["id"]),
        commit=run.get("commit"),
        description=run.get("description") or "",
        agent=run.get("agent"),
        status=run.get("status"),
        env=src.run_env(run),
        hyperparameters=dict(facts.hyperparameters),
        results=_results(ws, run),
        screen=screen,
    )


def base_side(ws: Workspace, a_run: dict[str, Any], pin: dict[str, Any]) -> Side:
    """The pinned base: its run when it is one, else its commit with A's non-file environment;
    its val_bpb is the base's mean (``helm.models.base``), what "Δ base" is measured from."""
    with ws.db(write=False) as db:
        base = base_of(db, pin["id"])
        pinned_id = pinned_run_id(pin)
        pinned = find_run(db, pinned_id) if pinned_id is not None else None
    mean = base.mean if base else None
    if pinned is not None:
        side = run_side(ws, pinned)
        side.label = f"base pin #{pin['id']} ({pin_label(pin)})"
        side.results["val_bpb"] = mean
        return side
    from helm.agents.taskrepo import parse_env, show_file

    commit = pin.get("commit")
    a_file = (
        parse_env(show_file(ws.task_dir, a_run["commit"], src.ENV_FILE) or "")
        if (src.has_commit(ws, a_run.get("commit")))
        else {}
    )
    b_file = parse_env(show_file(ws.task_dir, commit, src.ENV_FILE) or "") if commit else {}
    # A's environment = its agent's environment + its run.env; the base ran under the same
    # agent environment with its own run.env, so only run.env differences show.
    env = {k: v for k, v in src.run_env(a_run).items() if k not in a_file}
    env.update(b_file)
    return Side(
        label=f"base pin #{pin['id']} ({pin_label(pin)})",
        run_id=None,
        commit=commit,
        description=pin.get("note") or "",
        env=env,
        results={"val_bpb": mean, "seeds_mean_val_bpb": mean},
    )


def base_of_run(ws: Workspace, run: dict[str, Any]) -> BaseStats | None:
    """The base a run is compared with: the pin it ran on, else the current one."""
    with ws.db(write=False) as db:
        current = latest_pin(db) if run.get("base_pin_id") is None else None
        pin_id = base_pin_id(run, current["id"] if current else None)
        return base_of(db, pin_id)


# Code ------------------------------------------------------------------------------------------
def _git_code_diff(ws: Workspace, old: str, new: str) -> tuple[list[FileChange], str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ws.task_dir), "diff", "--no-color", "--no-ext-diff", "--no-renames",
             *args, old, new, "--", ".", f":(exclude){src.ENV_FILE}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip

    kinds = {"A": "added", "D": "removed"}
    state = {
        line.split("\t", 1)[1]: kinds.get(line[0], "modified")
        for line in git("--name-status").splitlines()
        if "\t" in line
    }
    files = []
    for line in git("--numstat").splitlines():
        add, rem, path = line.split("\t", 2)
        files.append(
            FileChange(
                path,
                state.get(path, "modified"),
                int(add) if add.isdigit() else 0,
                int(rem) if rem.isdigit() else 0,
            )
        )
    return files, git()


def _text_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def _files_diff(old: dict[str, bytes], new: dict[str, bytes]) -> tuple[list[FileChange], str]:
    """The same result from two file maps (a run without a commit in the task repo)."""
    files, chunks = [], []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        lines = list(
            difflib.unified_diff(
                _text_lines(a or b""),
                _text_lines(b or b""),
                fromfile=f"a/{path}" if a is not None else "/dev/null",
                tofile=f"b/{path}" if b is not None else "/dev/null",
            )
        )
        added = sum(1 for x in lines[2:] if x.startswith("+"))
        removed = sum(1 for x in lines[2:] if x.startswith("-"))
        status = "added" if a is None else "removed" if b is None else "modified"
        files.append(FileChange(path, status, added, removed))
        chunks.append(
            f"diff {path}\n" + "".join(x if x.endswith("\n") else x + "\n" for x in lines)
        )
    return files, "".join(chunks)


def code_diff(
    ws: Workspace, a: Side, b: Side, a_run: dict[str, Any], b_run: dict[str, Any] | None
) -> tuple[list[FileChange], str]:
    if src.has_commit(ws, a.commit) and src.has_commit(ws, b.commit):
        assert a.commit is not None and b.commit is not None
        return _git_code_diff(ws, b.commit, a.commit)
    new = src.code_files(ws, a_run)
    if b_run is not None:
        old = src.code_files(ws, b_run)
    else:
        raise DiffError(f"the base commit {b.commit} is not in the task repository")
    return _files_diff(old, new)


# Assembly --------------------------------------------------------------------------------------
def _rows(a: dict[str, str], b: dict[str, str]) -> list[Row]:
    return [Row(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))]


def _run(ws: Workspace, run_id: int) -> dict[str, Any]:
    with ws.db(write=False) as db:
        return get_run(db, run_id)


def diff_runs(ws: Workspace, a: int, b: int | None = None, *, base: bool = False) -> RunDiff:
    """Compare run ``a`` with run ``b`` (default: a's parent; ``base``: the pinned base)."""
    with ws.db(write=False) as db:
        a_run = get_run(db, a)
        pin = latest_pin(db) if base else None
    b_run: dict[str, Any] | None
    if base:
        if pin is None:
            raise DiffError("no base is pinned yet")
        b_run = None
        b_side = base_side(ws, a_run, pin)
        if b_side.run_id is not None:
            b_run = _run(ws, b_side.run_id)
    else:
        if b is None:
            b = a_run.get("parent_id")
            if b is None:
                raise DiffError(f"run {a} has no parent: name a run to compare with, or --base")
            role = "parent"
        else:
            role = ""
        b_run = _run(ws, b)
        b_side = run_side(ws, b_run, role)
    a_side = run_side(ws, a_run)
    files, patch = code_diff(ws, a_side, b_side, a_run, b_run)
    return RunDiff(
        a=a_side,
        b=b_side,
        files=files,
        patch=patch,
        env=_rows(a_side.env, b_side.env),
        hyperparameters=_rows(a_side.hyperparameters, b_side.hyperparameters),
        results=[
            Metric(name, a_side.results.get(name), b_side.results.get(name))
            for name in (*METRICS, "seed", "seeds", "seeds_mean_val_bpb")
        ],
        base=base_of_run(ws, a_run),
    )


def diff_against_base_pin(ws: Workspace, run_id: int) -> RunDiff | None:
    """The run against the base it was made on (for a submission's README), if known."""
    with ws.db(write=False) as db:
        run = get_run(db, run_id)
        pin = find_pin(db, run.get("base_pin_id"))
        if pin is None and run.get("parent_id") is None:
            pin = latest_pin(db)  # made outside the agents' loop: the current base
    try:
        if pin is not None and pin.get("commit"):
            b_side = base_side(ws, run, pin)
            b_run = _run(ws, b_side.run_id) if b_side.run_id is not None else None
            a_side = run_side(ws, run)
            files, patch = code_diff(ws, a_side, b_side, run, b_run)
            return RunDiff(
                a_side,
                b_side,
                files,
                patch,
                _rows(a_side.env, b_side.env),
                _rows(a_side.hyperparameters, b_side.hyperparameters),
                [Metric(n, a_side.results.get(n), b_side.results.get(n)) for n in METRICS],
                base_of_run(ws, run),
            )
        if run.get("parent_id") is not None:
            return diff_runs(ws, run_id)
    except (DiffError, NotFound, subprocess.CalledProcessError):
        return None
    return None
