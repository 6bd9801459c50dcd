"""Our own rerun of a PR's code, and whether it lands where the PR says it does.

The rerun queues the folder's Python files as ordinary jobs (one per seed) with the PR's own
configuration (``config.stated_config``: its JSON or README, else the script's defaults),
plus any operator overrides (``--env``: e.g. the tiny preset on a CPU box), and waits for the
daemon to run them. The jobs carry no Run row: a community script's score is evidence for
its audit, not a result of ours for the leaderboard.

The comparison is against the seed-to-seed spread, not a fixed tolerance, because scores
move by ~0.001 bpb between seeds on 8xH100 and by far more on a tiny CPU model:

    spread = max(std of the claim's own logs, std of our seeds, SPREAD_FLOOR)
    gap    = mean of our seeds - claimed val_bpb        (positive: we scored worse)
    reproduced  when  gap <= K_SPREADS x spread

One-sided on purpose: a fake claims too good a score; scoring better than claimed proves no
fraud (though a gap that large is reported, as it hints at a configuration that differs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from golf_task.logs import parse_file
from golf_task.pack import readable
from helm.audit import config as cfgmod
from helm.workspace import Workspace

K_SPREADS = 3.0
SPREAD_FLOOR = 0.0005  # bpb: below the seed noise of any real run, so never too lenient
DEFAULT_SEED = 1337


def std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def compare(claim: float, claim_std: float | None, scores: list[float]) -> dict[str, Any]:
    """Gap between our seeds' mean and the claim, in bpb and in spreads; the outcome."""
    mean = sum(scores) / len(scores)
    ours_std = std(scores)
    spread = max(claim_std or 0.0, ours_std or 0.0, SPREAD_FLOOR)
    gap = mean - claim
    within = gap <= K_SPREADS * spread
    outcome = "reproduced" if within else "not_reproduced"
    summary = (
        f"our {len(scores)} seed(s) mean {mean:.6f} vs claimed {claim:.6f}: gap {gap:+.6f} bpb "
        f"= {gap / spread:+.2f} spreads (band {K_SPREADS:g} x {spread:.6f})"
        + ("" if within else ": not reproduced")
    )
    if within and gap < -K_SPREADS * spread:
        summary += "; we scored much better than claimed: does the configuration differ?"
    return {
        "outcome": outcome,
        "mean_bpb": mean,
        "claimed_bpb": claim,
        "claim_std": claim_std,
        "ours_std": ours_std,
        "spread": spread,
        "k": K_SPREADS,
        "gap_bpb": gap,
        "gap_spreads": gap / spread,
        "summary": summary,
    }


def default_seeds(claimed_seeds: list[int | None]) -> list[int]:
    """One seed, the claim's first: a same-seed rerun is the sharpest comparison."""
    first = next((s for s in claimed_seeds if s is not None), None)
    return [first if first is not None else DEFAULT_SEED]


def job_code(folder: Path) -> dict[str, bytes]:
    """The folder's Python files: the script and any module it imports beside it."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.py")) if p.is_file()}


def run_env(folder: Path, overrides: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the PR's stated configuration, the environment the jobs get without their seed)."""
    code = readable((folder / "train_gpt.py").read_bytes()).encode("utf-8")  # packed or not
    stated = cfgmod.stated_config(folder, cfgmod.code_config(code))
    return stated, {**stated, **overrides}


def reproduce(
    ws: Workspace,
    folder: Path,
    claim: float,
    claim_std: float | None,
    *,
    seeds: list[int],
    overrides: dict[str, str] | None = None,
    gpus: int = 8,
    host: str | None = None,
    time_limit_s: float = 1800.0,
    poll_s: float = 1.0,
    wait_s: float | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Queue one job per seed, wait for all, and compare their scores with the claim.

    A job still unfinished after ``wait_s`` (default: its time limit plus 10 minutes of
    queueing, e.g. no host has enough GPUs) is cancelled and counts as giving no score.
    """
    from helm.remote.jobs import request_cancel, submit_job, wait_for_job

    wait_s = time_limit_s + 600 if wait_s is None else wait_s
    say = on_progress or (lambda _msg: None)
    stated, env = run_env(folder, dict(overrides or {}))
    code = job_code(folder)
    job_ids: list[int] = []
    with ws.store.write() as s:
        for seed in seeds:
            job = submit_job(
                ws,
                s,
                code,
                env={**env, "SEED": str(seed)},
                gpus=gpus,
                seed=seed,
                time_limit_s=time_limit_s,
                host=host,
            )
            assert job.id is not None
            job_ids.append(job.id)
    say(f"queued {len(job_ids)} reproduction job(s): {job_ids} (seeds {seeds})")
    runs: list[dict[str, Any]] = []
    for seed, job_id in zip(seeds, job_ids, strict=True):

        def progress(job: Any, seed: int = seed) -> None:
            step = f" step {job.step}/{job.total_steps}" if job.step else ""
            say(f"seed {seed}: job {job.id} {job.state}{step}")

        error = None
        try:
            job = wait_for_job(ws, job_id, on_progress=progress, poll_s=poll_s, timeout_s=wait_s)
        except TimeoutError:
            job = request_cancel(ws, job_id)
            error = f"no result after {wait_s:.0f}s ({job.state}): cancelled"
            say(f"seed {seed}: {error}")
        log = ws.job_dir(job_id) / "train.log"
        summary = parse_file(log) if log.is_file() else None
        runs.append(
            {
                "seed": seed,
                "job_id": job_id,
                "state": job.state if error is None else "timeout",
                "error": error or job.error,
                "val_bpb": summary.val_bpb if summary else None,
                "stop_step": summary.stop_step if summary else None,
                "log": str(log),
            }
        )
    scores = [r["val_bpb"] for r in runs if r["state"] == "succeeded" and r["val_bpb"] is not None]
    base = {"seeds": seeds, "env": env, "stated": stated, "runs": runs}
    if not scores:
        states = ", ".join(f"seed {r['seed']} {r['state']}" for r in runs)
        return {**base, "outcome": "no_score", "summary": f"no rerun produced a score ({states})"}
    return {**base, **compare(claim, claim_std, scores)}
