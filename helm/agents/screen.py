"""Screening: run a candidate first as a short, small job, and give it a full run only if it
beats the base's screen by the noise margin.

Definitions, once:

- A *screen* of a configuration is the same code and environment with every step count of
  the schedule scaled by ``steps_frac`` (``SCALED_STEPS``: the run's length, its warm-ups and
  warm-down, its logging cadence), the wall-clock cap scaled so that the screen's GPUs do
  that share of the full run's work (``frac x full GPUs / screen GPUs``), and the screen's
  own settings on top (``[agents.screen] env``: by default no test-time training and no
  sliding-window score, which only refine the last digits, and none of the full run's
  diagnostic scores: a screen is judged on its export's score alone). Values the
  environment does not set come from the script's own defaults (``helm.agents.knobs``), so
  a candidate that edits a default is screened with its own.
- The *base's screen* is the screen of the code the candidate changes: the branch's best (on
  a new base, the pin's code), with its run.env. It is run once per configuration and seed
  and then found again (``find_duplicate(..., screen=True)``), so an agent pays for it once
  per best, not once per candidate; the candidate's and the base's screens run side by side.
- A candidate *passes* when ``base_screen - candidate_screen > margin``, where
  ``margin = max(min_delta, k x spread)``; the spread is the pooled seed-to-seed spread of
  screens (``screen_scores``), else that of full runs, else the keep rule's default. By
  default ``k`` and ``min_delta`` are 0: the candidate must simply score below the base's
  screen. Two reasons, both measured on the tiny sweep of ``bench/early_abort.py``: the two
  screens share their seed and data order, so the seed-to-seed spread overstates the noise
  of their difference (a change that does nothing scores the same to the last digit and
  fails); and an effect is smaller at a fraction of the steps (a change the keep rule kept
  at -0.0216 bpb was -0.0078 in its quarter-length screen, below one seed spread, 0.009).
  A rejected good idea is lost for good, a passed bad one only costs its full run, which
  the keep rule still judges; ``k`` raises the bar where screens prove noisier.

Screens are never ranked (their statuses are outside ``FINISHED_RUN``); the full run points
to its screen (``run.screen_run_id``), the candidate's screen to the base's screen it was
judged against (``run.screen_ref_id``). A reference run or a re-seeded repeat (no change to
screen) is never screened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helm import fmt
from helm.agents import taskrepo as tr
from helm.agents.config import AgentsConfig, ScreenConfig
from helm.agents.jobq import (
    Backend,
    Candidate,
    DuplicateRun,
    Progress,
    StopRequested,
    queue_run,
    wait_run,
)
from helm.agents.keeprule import seed_spread
from helm.agents.knobs import Knob, discover
from helm.agents.report import ExpResult, build_result, feed_text, signed
from helm.models.agents import update_agent
from helm.models.db import Db, Row
from helm.models.feed import post_feed
from helm.models.runs import (
    canonical_env,
    find_duplicate,
    get_run,
    seed_scores,
    update_run,
)
from helm.models.screens import screen_scores
from helm.models.states import RunStatus
from helm.workspace import Workspace

SCALED_STEPS = (
    "ITERATIONS",
    "WARMDOWN_ITERS",
    "LR_WARMUP_STEPS",
    "MUON_MOMENTUM_WARMUP_STEPS",
    "VAL_LOSS_EVERY",
    "TRAIN_LOG_EVERY",
)
"""Step counts a screen scales by ``steps_frac`` (0, "off", stays 0)."""
WALLCLOCK = "MAX_WALLCLOCK_SECONDS"


@dataclass
class Gate:
    """What screening decided: ``result`` when there is to be no full run (screened out,
    crashed, cancelled), else the screen the full run comes through (None: not screened)."""

    result: ExpResult | None = None
    screen_run_id: int | None = None


def wanted(asked: bool | None, baseline: bool, conf: ScreenConfig) -> bool:
    """Screen this experiment? ``asked``: ``--screen``/``--no-screen``; None: the campaign's."""
    if baseline:
        return False
    return conf.enabled if asked is None else asked


def _number(raw: str | None, knob: Knob | None) -> float | None:
    if raw is None:
        return float(knob.default) if knob is not None and knob.kind is not bool else None
    try:
        return float(raw)
    except ValueError:
        return None


def screen_env(
    env: dict[str, str], knobs: dict[str, Knob], conf: ScreenConfig, full_gpus: int
) -> dict[str, str]:
    """The environment of the screen of a run with ``env`` on ``full_gpus`` GPUs."""
    out = dict(env)
    for key in SCALED_STEPS:
        value = _number(env.get(key), knobs.get(key))
        if value is not None and value > 0:
            out[key] = str(max(1, round(value * conf.steps_frac)))
    wall = _number(env.get(WALLCLOCK), knobs.get(WALLCLOCK))
    if wall is not None and wall > 0:
        out[WALLCLOCK] = f"{wall * conf.steps_frac * full_gpus / conf.gpus:g}"
    out.update(conf.env)
    return out


def margin(db: Db, conf: AgentsConfig) -> tuple[float, str]:
    """The bar a screen must clear, and where its spread came from."""
    spread, _ = seed_spread(screen_scores(db))
    source = "screens' spread"
    if spread is None:
        spread, _ = seed_spread(seed_scores(db))
        source = "full runs' spread"
    if spread is None:
        spread, source = conf.keep.default_spread, "default spread"
    return max(conf.screen.min_delta, conf.screen.k * spread), source


def _knobs(wt: Any, commit: str) -> dict[str, Knob]:
    return discover(tr.show_file(wt, commit, "train_gpt.py") or "")


def _queue_screen(
    ws: Workspace,
    cand: Candidate,
    backend: Backend,
    conf: AgentsConfig,
    *,
    commit: str,
    code_hash: str,
    env: dict[str, str],
    seed: int | None,
    description: str,
    ref_id: int | None = None,
) -> tuple[int, int | None]:
    """The screen's run id, queued now or found from before; the job id when queued now.
    A candidate's screen names the base's screen it will be judged against (``ref_id``)
    from the start, so a screen without one is a base's."""
    env_s = canonical_env(env)

    def duplicate(db: Db) -> Row | None:
        return find_duplicate(db, code_hash, env_s, seed, screen=True)

    def fields(db: Db) -> dict[str, Any]:
        return {
            "branch": tr.branch_of(cand.agent),
            "code_hash": code_hash,
            "description": description,
            "env_json": env_s,
            "base_pin_id": cand.base_pin_id,
            "screen": True,
            "screen_ref_id": ref_id,
        }

    try:
        return queue_run(
            ws,
            backend,
            cand.wt,
            commit=commit,
            env=env,
            gpus=conf.screen.gpus,
            seed=seed,
            agent=cand.agent,
            time_limit_s=conf.time_limit_s,
            fields=fields,
            duplicate=duplicate,
        )
    except DuplicateRun as dup:
        return int(dup.row["id"]), None


def screen_first(
    ws: Workspace,
    cand: Candidate,
    *,
    seed: int | None,
    backend: Backend,
    conf: AgentsConfig,
    full_gpus: int,
    on_progress: Progress | None = None,
    poll_s: float = 1.0,
    should_stop: Callable[[], bool] | None = None,
) -> Gate:
    """Screen the candidate against the base's screen; see the module docstring."""
    base_hash = tr.code_hash(cand.wt, cand.prev_head)
    base_env = {
        **cand.agent_env,
        **tr.parse_env(tr.show_file(cand.wt, cand.prev_head, tr.ENV_FILE) or ""),
    }
    if base_hash == cand.code_hash and base_env == cand.env:
        return Gate()  # nothing changed (a re-seeded repeat): nothing to screen
    sc = conf.screen
    cand_env = screen_env(cand.env, _knobs(cand.wt, cand.commit), sc, full_gpus)
    ref_env = screen_env(base_env, _knobs(cand.wt, cand.prev_head), sc, full_gpus)
    short = cand.prev_head[:8]
    ref_id, ref_job = _queue_screen(
        ws, cand, backend, conf, commit=cand.prev_head, code_hash=base_hash, env=ref_env,
        seed=seed, description=f"screen of the base ({short})",
    )  # fmt: skip
    try:
        run_id, job = _queue_screen(
            ws, cand, backend, conf, commit=cand.commit, code_hash=cand.code_hash, env=cand_env,
            seed=seed, description=f"screen: {cand.description}", ref_id=ref_id,
        )  # fmt: skip
    except BaseException:
        if ref_job is not None:
            backend.cancel(ws, ref_job)
        raise
    with ws.db(write=True) as db:
        update_agent(db, cand.agent, state="training", current_run_id=run_id)
    try:
        wait_run(ws, run_id, on_progress=on_progress, poll_s=poll_s, should_stop=should_stop)
        wait_run(ws, ref_id, poll_s=poll_s, should_stop=should_stop)
    except StopRequested:
        for job_id in (job, ref_job):  # only what this experiment queued
            if job_id is not None:
                backend.cancel(ws, job_id)
        for rid, queued in ((run_id, job), (ref_id, ref_job)):
            if queued is not None:
                wait_run(ws, rid, poll_s=poll_s, timeout_s=60.0, cancel_on_timeout=True)
        return Gate(result=_ended(ws, cand, run_id, "cancelled", "cancelled while screening"))
    with ws.db(write=False) as db:  # the daemon recorded them (a scored screen: screened)
        run, ref = get_run(db, run_id), get_run(db, ref_id)
    return _judge(ws, cand, conf, run, ref)


def _judge(ws: Workspace, cand: Candidate, conf: AgentsConfig, run: Row, ref: Row) -> Gate:
    """Pass or fail the candidate's screen against the base's. A screen found again keeps its
    score; its verdict stands only against the same base's screen (a newer best has its own)."""
    rid = run["id"]
    if run["status"] in (RunStatus.CRASH, RunStatus.CANCELLED) or run["val_bpb"] is None:
        verdict = "crash" if run["status"] != RunStatus.CANCELLED else "cancelled"
        return Gate(result=_ended(ws, cand, rid, verdict, "its screen ended without a score"))
    if ref["val_bpb"] is None:  # nothing to compare with: better a full run than a lost idea
        note = f"not judged: the base's screen (run {ref['id']}) has no score; run in full"
        with ws.db(write=True) as db:
            update_run(db, rid, screen_ref_id=ref["id"], verdict_note=note)
            post_feed(db, f"run {rid} SCREEN: {note}", agent=cand.agent, kind="result", run_id=rid)
        return Gate(screen_run_id=rid)
    judged = run["status"] in (RunStatus.SCREEN_PASS, RunStatus.SCREEN_FAIL)
    if judged and run["screen_ref_id"] == ref["id"]:  # found again against the same base
        passed, note = run["status"] == RunStatus.SCREEN_PASS, run.get("verdict_note") or ""
    else:  # a new screen, or an old one (its score stands) against a newer base's
        with ws.db(write=True) as db:
            bar, source = margin(db, conf)
            gain = ref["val_bpb"] - run["val_bpb"]
            passed = gain > bar
            note = (
                f"screen {fmt.score(run['val_bpb'])} vs the base's screen "
                f"{fmt.score(ref['val_bpb'])} (run {ref['id']}): {signed(-gain)} bpb, "
                f"{'beats' if passed else 'does not beat'} the margin {bar:.5f} ({source})"
            )
            status = RunStatus.SCREEN_PASS if passed else RunStatus.SCREEN_FAIL
            update_run(db, rid, status=status.value, screen_ref_id=ref["id"], verdict_note=note)
            tail = "full run next" if passed else "no full run"
            post_feed(
                db,
                f"run {rid} {status.value.upper()}: {cand.description} \u2014 {note}; {tail}",
                agent=cand.agent,
                kind="result",
                run_id=rid,
            )
    if passed:
        return Gate(screen_run_id=rid)
    return Gate(result=_ended(ws, cand, rid, RunStatus.SCREEN_FAIL.value, note))


def _ended(ws: Workspace, cand: Candidate, run_id: int, verdict: str, note: str) -> ExpResult:
    """The experiment's result when it ends at its screen (the agent is free again)."""
    with ws.db(write=True) as db:
        update_agent(db, cand.agent, state="thinking", current_run_id=None)
        res = build_result(db, get_run(db, run_id), verdict=verdict)
        res.note = note
        if verdict == "crash":
            post_feed(db, feed_text(res), agent=cand.agent, kind="result", run_id=run_id)
    return res
