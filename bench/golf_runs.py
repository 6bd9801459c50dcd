"""Runs of train_gpt.py scripts in parallel subprocesses, the numbers read from them, and the
old script a comparison runs against.

The scheduler of bench/golf_ablate.py: each job its own directory and environment, at most
``parallel`` at a time in list order, each stopped after a timeout. Output is read with
bench/gpu_summary.py's parser, the one the GPU check uses, so both agree on what a log says.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpu_summary import summarise


@dataclass
class Job:
    label: str  # row key ("baseline", a technique key, "new", "old")
    side: str  # "on", "off", "new", "old"
    seed: int
    script: Path
    env: dict[str, str]


@dataclass
class Result:
    label: str
    side: str
    seed: int
    rc: int
    wall_s: float
    steps: int | None = None
    bpb: float | None = None  # the last *_exact score line
    scores: dict[str, float] = field(default_factory=dict)  # every *_exact line, by name
    total_bytes: int | None = None
    error: str = ""


def parse_run(job: Job, rc: int, wall_s: float, text: str) -> Result:
    """The numbers the tables need, read from a run's console output."""
    s = summarise(text)
    res = Result(job.label, job.side, job.seed, rc, wall_s, steps=s.steps)
    res.total_bytes = s.total_bytes
    for line in s.scores:
        name, _, rest = line.partition(" val_loss:")
        if name.endswith("_exact"):
            res.scores[name] = float(rest.split("val_bpb:")[1].split()[0])
    if s.final_score and s.final_score.split()[0].endswith("_exact"):
        res.bpb = float(s.final_score.split("val_bpb:")[1].split()[0])
    if rc != 0 or res.bpb is None:
        res.error = (s.errors[-1] if s.errors else f"exit {rc}, no score line")[:300]
    return res


def run_jobs(jobs: list[Job], work: Path, parallel: int, timeout_s: float) -> list[Result]:
    """Run the jobs ``parallel`` at a time, each in its own directory, one thread each.

    Jobs start in list order, so jobs next to each other (a row's seeds, or new and old of
    one seed) run at the same time under the same load.
    """
    results: list[Result] = []
    pending = list(enumerate(jobs))
    running: list[tuple[int, Job, subprocess.Popen, float, Path]] = []
    while pending or running:
        while pending and len(running) < parallel:
            i, job = pending.pop(0)
            run_dir = work / f"{i:03d}_{job.label}_{job.side}_{job.seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            out = run_dir / "stdout.txt"
            env = {**os.environ, **job.env, "RUN_ID": f"{job.label}_{job.side}_{job.seed}"}
            with open(out, "w") as sink:
                proc = subprocess.Popen(
                    [sys.executable, str(job.script)],
                    cwd=run_dir,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            running.append((i, job, proc, time.perf_counter(), out))
        time.sleep(0.5)
        for entry in list(running):
            i, job, proc, t0, out = entry
            if proc.poll() is None and time.perf_counter() - t0 < timeout_s:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            running.remove(entry)
            res = parse_run(job, proc.returncode, time.perf_counter() - t0, out.read_text())
            results.append(res)
            done = f"[{len(results)}/{len(jobs)}] {job.label} {job.side} seed {job.seed}"
            got = f"bpb {res.bpb:.4f}" if res.bpb is not None else f"FAILED: {res.error}"
            print(f"{done}: {got}, {res.steps} steps, {res.wall_s:.0f} s", file=sys.stderr)
    return results


def mean_of(values: list[float | None]) -> float | None:
    """The mean, or None when any run gave no number (a partial mean would mislead)."""
    got = [v for v in values if v is not None]
    return statistics.fmean(got) if got and len(got) == len(values) else None


def fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def steps_of(results: list[Result]) -> str:
    return "/".join(str(r.steps) for r in results) or "n/a"


def score(result: Result, suffix: str | None) -> float | None:
    """The run's final score (``suffix`` None) or its ``*<suffix>`` exact score line."""
    if suffix is None:
        return result.bpb
    return next((v for k, v in result.scores.items() if k.endswith(suffix)), None)


def expected_wall_s(n_jobs: int, seconds: float, parallel: int, overhead_s: float) -> float:
    """Rounds of ``parallel`` runs, each the cap plus start-up, export and evaluation."""
    return -(-n_jobs // parallel) * (seconds + overhead_s)


def old_script(out: Path, path: Path | None, ref: str) -> Path:
    """The previous script: ``path`` as given, else ``git show REF:golf_task/train_gpt.py``."""
    if path is not None:
        return path
    dest = out / f"old_train_gpt_{ref.replace('/', '_')}.py"
    proc = subprocess.run(
        [
            "git",
            "-C",
            str(Path(__file__).resolve().parents[1]),
            "show",
            f"{ref}:golf_task/train_gpt.py",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"cannot read {ref}:golf_task/train_gpt.py ({proc.stderr.strip()}); "
            "pass --old-script PATH"
        )
    dest.write_text(proc.stdout, encoding="utf-8")
    return dest
