"""Dispatch benchmark: how busy helm keeps a fleet, and how fast a queued job starts.

A simulated fleet: ``--hosts`` SSH hosts, all on one throwaway loopback sshd, each declaring
``--gpus`` GPUs; jobs are shell scripts that sleep ``--sleep`` seconds and print their own
start and end times. The real daemon (``python -m helm.daemon``, default settings) does
the dispatching over real SSH.

1. Utilisation: a queue deep enough for ``--rounds`` full turns of the fleet (a mix of
   ``--sizes``-GPU jobs) is submitted at once. While jobs are still waiting, every idle
   GPU-second is the dispatcher's loss: utilisation = GPU-seconds of job processes running
   / (GPUs x seconds), over the span from submission to the last job's start. Also shown:
   the same share up to the last job's end (includes the unavoidable drain at the end) and
   the turnover gap (one job's process ends -> the next one's starts on the same GPU).
2. Latency: on the idle fleet, ``--latency-jobs`` 1-GPU jobs are submitted one by one;
   latency = the job's process start - its queue time.

    .venv/bin/python bench/dispatch.py [--hosts 4] [--gpus 8] [--sleep 20] [--json]

Bounded: everything is cancelled and the partial figures reported after ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helm import daemon  # noqa: E402
from helm.models.db import Row  # noqa: E402
from helm.models.jobs import get_job  # noqa: E402
from helm.models.states import TERMINAL_JOB, JobState  # noqa: E402
from helm.remote.hosts import add_host  # noqa: E402
from helm.remote.jobs import request_cancel, submit_job  # noqa: E402
from helm.remote.loopback import LoopbackSshd  # noqa: E402
from helm.workspace import Workspace  # noqa: E402

JOB = 'echo "start $(date +%s.%N)"\nsleep "$SLEEP_S"\necho "end $(date +%s.%N)"\n'


def _setup(root: Path, hosts: int, gpus: int) -> tuple[Workspace, LoopbackSshd]:
    sshd = LoopbackSshd.start(root / "sshd")
    ws = Workspace(root / "ws").ensure()
    ws.known_hosts_path.write_text(sshd.known_hosts_line())
    ws.config_path.write_text("[remote]\ncheck_every_s = 0\n")  # otherwise the defaults
    with ws.store.write() as s:
        for i in range(hosts):
            add_host(
                ws,
                s,
                f"h{i}",
                ssh=sshd.ssh_target(),
                identity=str(sshd.user_key),
                gpus=gpus,
                workdir=str(root / f"box{i}"),
                python="sh",  # the "training script" is a shell script
                launcher="sh",
            )
    return ws, sshd


def _times(ws: Workspace, job_id: int) -> tuple[float | None, float | None]:
    start = end = None
    try:
        text = (ws.job_dir(job_id) / "train.log").read_text()
    except OSError:
        return None, None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "start":
            start = float(value)
        elif key == "end":
            end = float(value)
    return start, end


def _wait_all(ws: Workspace, ids: list[int], deadline: float) -> list[Row]:
    while True:
        with ws.db(write=False) as db:
            jobs = [get_job(db, i) for i in ids]
        if all(j["state"] in TERMINAL_JOB for j in jobs):
            return jobs
        if time.time() > deadline:
            for i in ids:
                request_cancel(ws, i)
            raise TimeoutError
        time.sleep(0.25)


def warm_up(ws: Workspace, args: argparse.Namespace, deadline: float) -> None:
    """One short job per host: the daemon connects once and keeps its connections, so the
    first connection (key exchange, sessions) is not part of the steady state measured."""
    ids = [
        submit_job(ws, ws.store, {"train_gpt.py": JOB}, env={"SLEEP_S": "0.1"}, host=f"h{i}").id
        for i in range(args.hosts)
    ]
    _wait_all(ws, ids, deadline)


def utilisation(ws: Workspace, args: argparse.Namespace, deadline: float) -> dict:
    sizes = [int(x) for x in args.sizes.split(",")]
    total = args.hosts * args.gpus
    work = total * args.rounds  # GPU-jobs of --sleep seconds
    plan: list[int] = []
    while sum(plan) < work:
        plan.append(sizes[len(plan) % len(sizes)])
    t0 = time.time()
    with ws.store.write() as s:
        ids = [
            submit_job(ws, s, {"train_gpt.py": JOB}, env={"SLEEP_S": str(args.sleep)}, gpus=g).id
            for g in plan
        ]
    jobs = _wait_all(ws, ids, deadline)
    spans = []
    for j in jobs:
        start, end = _times(ws, j["id"])
        if start is None or end is None or j["state"] != JobState.SUCCEEDED:
            raise RuntimeError(f"job {j['id']} {j['state']}: {j['error']}")
        spans.append((j, start, end))
    last_start = max(s for _, s, _ in spans)
    last_end = max(e for _, _, e in spans)

    def used(t_end: float) -> float:
        return sum(j["gpus"] * max(0.0, min(e, t_end) - max(s, t0)) for j, s, e in spans)

    steady = used(last_start) / (total * (last_start - t0))
    whole = used(last_end) / (total * (last_end - t0))
    per_gpu: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for j, s, e in spans:
        for g in json.loads(j["gpu_ids_json"]):
            per_gpu.setdefault((j["host"] or "", g), []).append((s, e))
    gaps = []
    for intervals in per_gpu.values():
        intervals.sort()
        gaps += [b[0] - a[1] for a, b in zip(intervals, intervals[1:], strict=False)]
    return {
        "jobs": len(jobs),
        "gpus": total,
        "sleep_s": args.sleep,
        "sizes": sizes,
        "span_s": round(last_start - t0, 2),
        "utilisation_while_queued": round(steady, 4),
        "utilisation_incl_drain": round(whole, 4),
        "turnover_gap_median_s": round(statistics.median(gaps), 3) if gaps else None,
        "turnover_gap_p90_s": round(_pct(gaps, 0.9), 3) if gaps else None,
    }


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(ws: Workspace, args: argparse.Namespace, deadline: float) -> dict:
    ids, queued = [], {}
    for _ in range(args.latency_jobs):
        job = submit_job(ws, ws.store, {"train_gpt.py": JOB}, env={"SLEEP_S": "1"}, gpus=1)
        ids.append(job.id)
        queued[job.id] = job.queued_at
        time.sleep(args.latency_gap)
    _wait_all(ws, ids, deadline)
    lat = []
    for i in ids:
        start, _ = _times(ws, i)
        if start is None:
            raise RuntimeError(f"job {i} never started")
        lat.append(start - queued[i])
    return {
        "jobs": len(lat),
        "median_s": round(statistics.median(lat), 3),
        "p90_s": round(_pct(lat, 0.9), 3),
        "max_s": round(max(lat), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--sleep", type=float, default=20.0, help="seconds each job sleeps")
    p.add_argument("--rounds", type=int, default=3, help="full turns of the fleet queued")
    p.add_argument("--sizes", default="1,2,1,4,1,2", help="GPU counts of the job mix, cycled")
    p.add_argument("--latency-jobs", type=int, default=30)
    p.add_argument("--latency-gap", type=float, default=0.3)
    p.add_argument("--budget", type=float, default=240.0, help="give up after this many seconds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="helm-bench-dispatch-"))
    deadline = time.time() + args.budget
    ws, sshd = _setup(root, args.hosts, args.gpus)
    result: dict = {"hosts": args.hosts, "gpus_per_host": args.gpus}
    try:
        daemon.start_detached(ws)
        warm_up(ws, args, deadline)
        result["utilisation"] = utilisation(ws, args, deadline)
        result["latency"] = latency(ws, args, deadline)
    except TimeoutError:
        result["error"] = f"budget of {args.budget:.0f}s exhausted; jobs cancelled"
    finally:
        try:
            daemon.stop(ws)
        finally:
            sshd.stop()
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        u, lt = result.get("utilisation", {}), result.get("latency", {})
        print(f"fleet: {args.hosts} hosts x {args.gpus} GPUs over loopback SSH")
        if u:
            print(
                f"utilisation while jobs wait: {u['utilisation_while_queued']:.1%} "
                f"({u['jobs']} jobs of {u['sleep_s']:g}s, sizes {u['sizes']}, "
                f"{u['span_s']:.0f}s); incl. final drain: {u['utilisation_incl_drain']:.1%}; "
                f"turnover gap median {u['turnover_gap_median_s']}s p90 {u['turnover_gap_p90_s']}s"
            )
        if lt:
            print(
                f"queue -> running: median {lt['median_s']}s, p90 {lt['p90_s']}s, "
                f"max {lt['max_s']}s ({lt['jobs']} jobs)"
            )
        if "error" in result:
            print(result["error"])
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
