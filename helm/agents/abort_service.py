"""The daemon's early-abort service: stop running jobs that cannot matter, and say why.

Every few seconds it reads the live jobs whose run was made on a pinned base by an agent, is
not one of that base's reference runs (``run.baseline``) nor a screen (``run.screen``:
short already, on a schedule of its own) and was not started with
``helm exp run --no-abort`` (the job's env carries ``HELM_NO_ABORT=1``; the run's env, its
identity for duplicates and diffs, is left alone). Promotion seeds are the operator's runs
(``run.agent`` is NULL): never judged. Each job's streamed log copy
(``<home>/jobs/<id>/train.log``) is read from where the last tick stopped into one
``CurveReader`` per job; the base's reference logs are read once and cached. The pure rule
(``helm.agents.early_abort.judge``) decides:

- **abort**: the run is recorded ``aborted`` (only while it is still in flight, in one write
  transaction, so a job that just finished keeps its result) with the evidence as JSON in
  ``run.verdict_note`` (``{"early_abort": {...}}``; ``experiment.finalize`` adds its
  ``note`` there when it reports the run), its job is asked to stop
  (``helm.remote.jobs.request_cancel``), and one feed post (kind ``system``, tags
  ``early-abort``/``aborted``) gives the step, the loss, the base's band and the GPU-seconds
  saved. The dispatcher's end-of-job write sets a verdict only on in-flight runs, so
  ``aborted`` stays.
- **at risk**: one feed post per run (tags ``early-abort``/``at-risk``): the TUI reads the
  feed already, so no new column is needed to show it.

Settings: ``[agents.abort]`` in ``config.toml`` (``enabled`` and ``AbortRule``'s fields).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from helm.agents.config import ConfigError, read_toml
from helm.agents.early_abort import ABORT, AT_RISK, AbortRule, Curve, CurveReader, Verdict, judge
from helm.models.base import base_of
from helm.models.db import Row
from helm.models.feed import post_feed
from helm.models.jobs import find_job, live_job_ids
from helm.models.runs import find_run, get_run, update_run
from helm.models.states import ACTIVE_JOB, IN_FLIGHT_RUN, RunStatus
from helm.workspace import Workspace

NO_ABORT_ENV = "HELM_NO_ABORT"
"""Set to ``1`` in a job's env by ``helm exp run --no-abort``: never aborted."""

TAG = "early-abort"


def load_rule(path: Path) -> AbortRule:
    """``[agents.abort]`` of ``config.toml`` (defaults when absent); ConfigError on a bad one."""
    table = read_toml(path).get("agents", {}).get("abort", {})
    if not isinstance(table, dict):
        raise ConfigError("[agents.abort] must be a table")
    values: dict[str, Any] = {}
    for f in fields(AbortRule):
        if f.name not in table:
            continue
        value, default = table[f.name], f.default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"[agents.abort] {f.name} must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"[agents.abort] {f.name} must be a number, not {value!r}")
        values[f.name] = type(default)(value)
    unknown = set(table) - {f.name for f in fields(AbortRule)}
    if unknown:
        raise ConfigError(f"[agents.abort] unknown keys: {', '.join(sorted(unknown))}")
    return AbortRule(**values)


def abort_text(run_id: int, ev: dict[str, Any]) -> str:
    """The evidence in words (the feed post and the agent's note)."""
    unit = ev.get("unit", "loss")
    parts = [f"step {ev.get('step')}"]
    if ev.get("value") is not None:
        parts.append(f"train {unit} {ev['value']:.4f}")
    if ev.get("band_low") is not None and ev.get("band_high") is not None:
        parts.append(f"base band {ev['band_low']:.4f}–{ev['band_high']:.4f}")
    if ev.get("margin") is not None:
        parts.append(f"margin {ev['margin']:.4f}")
    if ev.get("val_bpb") is not None:
        parts.append(f"val_bpb {ev['val_bpb']:.4f}")
    saved = ev.get("gpu_seconds_saved")
    parts.append(f"{saved:.0f} GPU-s saved" if saved is not None else "GPU-s saved unknown")
    return f"run {run_id} {ev.get('state', ABORT).replace('_', ' ')}: " + ", ".join(parts)


def abort_evidence(run: Row) -> dict[str, Any] | None:
    """The evidence the service stored on an aborted run (None when there is none)."""
    try:
        data = json.loads(run.get("verdict_note") or "")
    except ValueError:
        return None
    return data if isinstance(data, dict) and "early_abort" in data else None


@dataclass
class _Follow:
    """One job's log as read so far."""

    offset: int = 0
    reader: CurveReader = field(default_factory=CurveReader)
    curve: Curve = field(default_factory=Curve)


def _time_cap(env: dict[str, str]) -> float | None:
    try:
        cap = float(env.get("MAX_WALLCLOCK_SECONDS", "") or 0)
    except ValueError:
        return None
    return cap if cap > 0 and math.isfinite(cap) else None


class AbortService:
    name = "early-abort"

    def __init__(self, ws: Workspace, log: logging.Logger, interval_s: float = 2.0) -> None:
        self.ws = ws
        self.log = log
        self.interval_s = interval_s
        self.follows: dict[int, _Follow] = {}  # job id -> its log as read so far
        self.refs: dict[int, Curve] = {}  # reference run id -> its whole curve (ended)
        self.told_risk: set[int] = set()

    async def start(self) -> None:
        self.log.info("early abort: watching running jobs against their base")

    async def tick(self) -> None:
        await asyncio.to_thread(self.sync)

    async def stop(self) -> None:
        pass

    def _read(self, job_id: int) -> Curve:
        """Feed what the log copy gained since the last read (it only grows; a retried try
        starts a fresh file, read again from zero)."""
        f = self.follows.setdefault(job_id, _Follow())
        path = self.ws.job_dir(job_id) / "train.log"
        try:
            size = path.stat().st_size
            if size < f.offset:  # a new try's log
                f = self.follows[job_id] = _Follow()
            with path.open("rb") as fh:
                fh.seek(f.offset)
                data = fh.read()
        except OSError:
            return f.curve
        f.offset += len(data)
        if data:
            f.curve = f.reader.feed(data)
        return f.curve

    def _references(self, run_ids: tuple[int, ...]) -> list[Curve]:
        out: list[Curve] = []
        for rid in run_ids:
            if rid not in self.refs:
                with self.ws.db(write=False) as db:
                    run = find_run(db, rid)
                if run is None or not run.get("job_id"):
                    continue
                path = self.ws.job_dir(run["job_id"]) / "train.log"
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                reader = CurveReader()
                reader.feed(data)
                self.refs[rid] = reader.feed("\n")
            out.append(self.refs[rid])
        return out

    def _candidates(self) -> list[tuple[Row, Row]]:
        """(job, run) of every running job that early abort may judge."""
        out = []
        with self.ws.db(write=False) as db:
            for job_id in live_job_ids(db):
                job = find_job(db, job_id)
                if job is None or job["state"] not in ACTIVE_JOB or not job["run_id"]:
                    continue
                run = find_run(db, job["run_id"])
                if run is None or run["status"] not in IN_FLIGHT_RUN:
                    continue
                if not run.get("agent") or run.get("baseline") or not run.get("base_pin_id"):
                    continue  # a promotion seed (the operator's), a reference, or no base
                if run.get("screen"):
                    continue  # a screen is short already, and its schedule is not the base's
                env = json.loads(job["env_json"] or "{}")
                if env.get(NO_ABORT_ENV) == "1" or job.get("cancel_requested"):
                    continue
                out.append((job, run))
        return out

    def sync(self) -> list[tuple[int, Verdict]]:
        """One look at every candidate; returns the verdicts acted on (abort, first risk)."""
        rule = load_rule(self.ws.config_path)
        if not rule.enabled:
            return []
        acted: list[tuple[int, Verdict]] = []
        live: set[int] = set()
        bases: dict[int, Any] = {}
        for job, run in self._candidates():
            live.add(job["id"])
            pin_id = int(run["base_pin_id"])
            if pin_id not in bases:
                with self.ws.db(write=False) as db:
                    bases[pin_id] = base_of(db, pin_id)
            base = bases[pin_id]
            if base is None or base.contains(run["id"]):
                continue
            refs = self._references(base.run_ids)
            env = json.loads(job["env_json"] or "{}")
            curve = self._read(job["id"])
            verdict = judge(
                curve, refs, rule, time_cap_s=_time_cap(env), gpus=int(job["gpus"] or 1)
            )
            if verdict.state == ABORT and self._abort(job, run, verdict):
                acted.append((run["id"], verdict))
            elif verdict.state == AT_RISK and run["id"] not in self.told_risk:
                self.told_risk.add(run["id"])
                with self.ws.db(write=True) as db:
                    post_feed(
                        db,
                        abort_text(run["id"], verdict.evidence()),
                        agent=run["agent"],
                        kind="system",
                        run_id=run["id"],
                        tags=(TAG, "at-risk"),
                    )
                acted.append((run["id"], verdict))
        for job_id in set(self.follows) - live:
            del self.follows[job_id]  # ended: its log is read no more
        return acted

    def _abort(self, job: Row, run: Row, verdict: Verdict) -> bool:
        """Record the abort (if the run is still in flight), stop the job, post the evidence."""
        from helm.remote.jobs import request_cancel

        ev = verdict.evidence()
        with self.ws.db(write=True) as db:
            now = get_run(db, run["id"])
            if now["status"] not in IN_FLIGHT_RUN:
                return False  # it ended meanwhile: its own result stands
            update_run(
                db,
                run["id"],
                status=RunStatus.ABORTED.value,
                verdict_note=json.dumps({"early_abort": ev}),
            )
            post_feed(
                db,
                abort_text(run["id"], ev),
                agent=run["agent"],
                kind="system",
                run_id=run["id"],
                tags=(TAG, "aborted"),
            )
        request_cancel(self.ws, job["id"])
        self.log.info(
            "early abort: run %s (job %s) stopped at step %s", run["id"], job["id"], ev.get("step")
        )
        return True


def make_service(ws: Workspace, logger: logging.Logger) -> AbortService:
    return AbortService(ws, logger)
