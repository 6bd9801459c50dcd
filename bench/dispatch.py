"""Dispatch benchmark: how busy helm keeps a fleet, and how fast a queued job starts.

Two backends, each driven by the real daemon (``python -m helm.daemon``, default settings):

- ``ssh``: ``--hosts`` SSH hosts, all on one throwaway loopback sshd, each declaring
  ``--gpus`` GPUs; helm places every job on a host and its GPUs itself.
- ``slurm``: one real Slurm cluster on this machine (``helm.remote.slurmlab``: slurmctld and
  slurmd, one node with ``--gpus`` GRES GPUs and ``--slurm-cpus`` CPUs), one Slurm host with
  ``max_submitted`` = ``--max-submitted``: helm keeps that many jobs submitted and Slurm
  places them.
- ``both``: the SSH fleet with the same total GPUs (``--hosts`` defaults to 1), then the
  cluster, and one table comparing them.

Jobs are shell scripts that sleep ``--sleep`` seconds and print their own start and end times
(the timestamps measured; under Slurm also the GPU indices Slurm gave them).

1. Utilisation: a queue deep enough for ``--rounds`` full turns of the fleet (a mix of
   ``--sizes``-GPU jobs) is submitted at once. While jobs are still waiting, every idle
   GPU-second is the dispatcher's loss: utilisation = GPU-seconds of job processes running
   / (GPUs x seconds), over the span from submission to the last job's start. Also shown:
   the same share up to the last job's end (includes the unavoidable drain at the end) and
   the turnover gap (one job's process ends -> the next one's starts on the same GPU).
2. Latency: on the idle fleet, ``--latency-jobs`` 1-GPU jobs are submitted one by one;
   latency = the job's process start - its queue time (also: when the store said running,
   and for Slurm when sbatch had answered).

    .venv/bin/python bench/dispatch.py [--backend ssh|slurm|both] [--gpus 8] [--sleep 20] [--json]

Bounded: each backend's jobs are cancelled and its partial figures reported after
``--budget`` seconds; the daemon, sshd and Slurm daemons are ended by pid in every case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helm import daemon  # noqa: E402
from helm.models.db import Row  # noqa: E402
from helm.models.jobs import get_job, job_events  # noqa: E402
from helm.models.states import TERMINAL_JOB, JobState  # noqa: E402
from helm.remote.hosts import add_host  # noqa: E402
from helm.remote.jobs import request_cancel, submit_job  # noqa: E402
from helm.remote.loopback import LoopbackSshd  # noqa: E402
from helm.remote.settings import RemoteSettings  # noqa: E402
from helm.remote.slurm_conf import SlurmSettings  # noqa: E402
from helm.remote.slurmlab import PARTITION, LocalSlurm, slurm_available  # noqa: E402
from helm.workspace import Workspace  # noqa: E402

# Under Slurm the job asks the controller which GPU indices it holds (no CUDA_VISIBLE_DEVICES
# over placeholder GRES files), for the per-GPU turnover gap; inside the measured span.
JOB = (
    'echo "start $(date +%s.%N)"\n'
    '[ -z "$SLURM_JOB_ID" ] || echo "gpus $(scontrol -d show job "$SLURM_JOB_ID"'
    " | grep -o 'IDX:[^)]*' | head -n 1)\"\n"
    'sleep "$SLEEP_S"\n'
    'echo "end $(date +%s.%N)"\n'
)


@dataclass
class Fleet:
    """One backend under test: its workspace, host names, GPUs, and how to tear it down."""

    ws: Workspace
    hosts: list[str]
    gpus: int
    describe: str
    stop: Callable[[], None]
    notes: str = ""


def _workspace(root: Path, slurm_poll_s: float | None) -> Workspace:
    ws = Workspace(root / "ws").ensure()
    conf = "[remote]\ncheck_every_s = 0\n"  # otherwise the defaults
    if slurm_poll_s is not None:
        conf += f"slurm_poll_s = {slurm_poll_s}\n"
    ws.config_path.write_text(conf)
    return ws


def setup_ssh(root: Path, args: argparse.Namespace) -> Fleet:
    sshd = LoopbackSshd.start(root / "sshd")
    try:
        ws = _workspace(root, args.slurm_poll)
        ws.known_hosts_path.write_text(sshd.known_hosts_line())
        names = [f"h{i}" for i in range(args.hosts)]
        with ws.store.write() as s:
            for i, name in enumerate(names):
                add_host(
                    ws,
                    s,
                    name,
                    ssh=sshd.ssh_target(),
                    identity=str(sshd.user_key),
                    gpus=args.gpus,
                    workdir=str(root / f"box{i}"),
                    python="sh",  # the "training script" is a shell script
                    launcher="sh",
                )
    except BaseException:
        sshd.stop()
        raise
    describe = f"{args.hosts} SSH host(s) x {args.gpus} GPUs over loopback SSH"
    return Fleet(ws, names, args.hosts * args.gpus, describe, sshd.stop)


def _sched_params(conf: Path) -> str:
    lines = conf.read_text().splitlines()
    return next((x[20:] for x in lines if x.startswith("SchedulerParameters=")), "defaults")


def setup_slurm(root: Path, args: argparse.Namespace) -> Fleet:
    gpus = args.hosts * args.gpus if args.backend == "both" else args.gpus
    cpus = args.slurm_cpus or 2 * gpus  # each job takes one CPU: GPUs stay the limit
    max_submitted = args.max_submitted or gpus + 4
    lab = LocalSlurm.start(root / "lab", gpus=gpus, cpus=cpus)
    old_conf = os.environ.get("SLURM_CONF")

    def stop() -> None:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        lab.stop()

    try:
        os.environ.update(lab.env())  # the daemon's Slurm commands run here and need it
        ws = _workspace(root, args.slurm_poll)
        settings = SlurmSettings(
            partition=PARTITION, gpus_per_node=gpus, max_submitted=max_submitted
        )
        with ws.store.write() as s:
            add_host(
                ws,
                s,
                "cluster",
                slurm=settings,
                workdir=str(root / "shared"),
                python="sh",
                launcher="sh",  # multi-GPU jobs: one `srun sh train_gpt.py` per node
            )
    except BaseException:
        stop()
        raise
    poll = RemoteSettings.load(ws).slurm_poll_s
    notes = (
        f"Slurm places the jobs (slurm.conf SchedulerParameters={_sched_params(lab.conf)}, "
        f"sched/backfill); helm keeps at most {max_submitted} jobs submitted and reads squeue "
        f"every slurm_poll_s={poll:g}s. A process start includes Slurm's scheduling pass and "
        "the batch launch (multi-GPU jobs also an srun step); the store says running only at "
        "helm's next squeue read. Slurm starts jobs in its priority order (submission order "
        "here): one that does not fit holds smaller ones behind it (reason Priority), and "
        "backfill cannot help since every job has the same --time."
    )
    describe = f"Slurm: 1 node x {gpus} GRES GPUs, {cpus} CPUs, max_submitted {max_submitted}"
    return Fleet(ws, ["cluster"], gpus, describe, stop, notes)


def _times(ws: Workspace, job_id: int) -> tuple[float | None, float | None, list[int]]:
    start = end = None
    gpus: list[int] = []
    try:
        text = (ws.job_dir(job_id) / "train.log").read_text()
    except OSError:
        return None, None, []
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "start":
            start = float(value)
        elif key == "end":
            end = float(value)
        elif key == "gpus":
            gpus = _indices(value.strip().removeprefix("IDX:"))
    return start, end, gpus


def _indices(text: str) -> list[int]:
    """Slurm's GRES index list (``0``, ``0-3``, ``0,2-3``) as indices."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out += range(int(lo), int(hi or lo) + 1)
    return out


def _wait_all(
    ws: Workspace, ids: list[int], deadline: float, reasons: set | None = None
) -> list[Row]:
    """Wait for the jobs to end; ``reasons`` collects (job, Slurm's reason) pairs seen."""
    while True:
        with ws.db(write=False) as db:
            jobs = [get_job(db, i) for i in ids]
        if reasons is not None:
            reasons.update((j["id"], j["queue_reason"]) for j in jobs if j["queue_reason"])
        if all(j["state"] in TERMINAL_JOB for j in jobs):
            return jobs
        if time.time() > deadline:
            for i in ids:
                request_cancel(ws, i)
            raise TimeoutError
        time.sleep(0.25)


def warm_up(fleet: Fleet, deadline: float) -> None:
    """One short job per host: the daemon connects once and keeps its connections (and has
    read the cluster's squeue once), so first contact is not part of the steady state."""
    ws = fleet.ws
    ids = [
        submit_job(ws, ws.store, {"train_gpt.py": JOB}, env={"SLEEP_S": "0.1"}, host=h).id
        for h in fleet.hosts
    ]
    _wait_all(ws, ids, deadline)


def utilisation(fleet: Fleet, args: argparse.Namespace, deadline: float) -> dict:
    ws, total = fleet.ws, fleet.gpus
    sizes = [int(x) for x in args.sizes.split(",")]
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
    seen: set[tuple[int, str]] = set()
    jobs = _wait_all(ws, ids, deadline, seen)
    spans = []
    for j in jobs:
        start, end, printed = _times(ws, j["id"])
        if start is None or end is None or j["state"] != JobState.SUCCEEDED:
            raise RuntimeError(f"job {j['id']} {j['state']}: {j['error']}")
        ids_ = json.loads(j["gpu_ids_json"] or "[]") or printed  # helm's pick, else Slurm's
        spans.append((j, start, end, ids_))
    last_start = max(s for _, s, _, _ in spans)
    last_end = max(e for _, _, e, _ in spans)

    def used(t_end: float) -> float:
        return sum(j["gpus"] * max(0.0, min(e, t_end) - max(s, t0)) for j, s, e, _ in spans)

    per_gpu: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for j, s, e, gpu_ids in spans:
        for g in gpu_ids:
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
        "utilisation_while_queued": round(used(last_start) / (total * (last_start - t0)), 4),
        "utilisation_incl_drain": round(used(last_end) / (total * (last_end - t0)), 4),
        "turnover_gap_median_s": round(statistics.median(gaps), 3) if gaps else None,
        "turnover_gap_p90_s": round(_pct(gaps, 0.9), 3) if gaps else None,
        "queue_reasons": dict(Counter(reason for _, reason in sorted(seen))),  # jobs per reason
    }


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _event_at(ws: Workspace, job_id: int, test: Callable[[Row], bool]) -> float | None:
    with ws.db(write=False) as db:
        for e in job_events(db, job_id):
            if test(e):
                return float(e["created_at"])
    return None


def latency(fleet: Fleet, args: argparse.Namespace, deadline: float) -> dict:
    ws = fleet.ws
    ids, queued = [], {}
    for _ in range(args.latency_jobs):
        job = submit_job(ws, ws.store, {"train_gpt.py": JOB}, env={"SLEEP_S": "1"}, gpus=1)
        ids.append(job.id)
        queued[job.id] = job.queued_at
        time.sleep(args.latency_gap)
    _wait_all(ws, ids, deadline)
    lat, shown, sbatch = [], [], []
    for i in ids:
        start, _, _ = _times(ws, i)
        if start is None:
            raise RuntimeError(f"job {i} never started")
        lat.append(start - queued[i])
        at = _event_at(ws, i, lambda e: e["state"] == JobState.RUNNING)
        if at is not None:
            shown.append(at - queued[i])
        at = _event_at(ws, i, lambda e: str(e["message"]).startswith("submitted as Slurm job"))
        if at is not None:
            sbatch.append(at - queued[i])
    out = {
        "jobs": len(lat),
        "median_s": round(statistics.median(lat), 3),
        "p90_s": round(_pct(lat, 0.9), 3),
        "max_s": round(max(lat), 3),
    }
    if shown:
        out["store_running_median_s"] = round(statistics.median(shown), 3)
        out["store_running_p90_s"] = round(_pct(shown, 0.9), 3)
    if sbatch:
        out["sbatch_answered_median_s"] = round(statistics.median(sbatch), 3)
    return out


def kill_daemon(ws: Workspace) -> None:
    """Stop the daemon; should it not stop in time, end it by its pid."""
    try:
        daemon.stop(ws)
    except daemon.DaemonError:
        pid = daemon.is_running(ws)
        if pid and pid > 0:
            os.kill(pid, signal.SIGKILL)


def run_backend(name: str, root: Path, args: argparse.Namespace) -> dict:
    """Set up one backend, measure both figures within ``--budget``, tear everything down."""
    deadline = time.time() + args.budget
    fleet = (setup_ssh if name == "ssh" else setup_slurm)(root / name, args)
    result: dict = {"fleet": fleet.describe, "gpus": fleet.gpus, "load_before": _load()}
    if fleet.notes:
        result["notes"] = fleet.notes
    try:
        daemon.start_detached(fleet.ws)
        warm_up(fleet, deadline)
        result["utilisation"] = utilisation(fleet, args, deadline)
        result["latency"] = latency(fleet, args, deadline)
    except TimeoutError:
        result["error"] = f"budget of {args.budget:.0f}s exhausted; jobs cancelled"
    finally:
        try:
            kill_daemon(fleet.ws)
        finally:
            fleet.stop()
    result["load_after"] = _load()
    return result


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _reasons(u: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in (u.get("queue_reasons") or {}).items())


def _pc(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def _cells(r: dict) -> list[tuple[str, str]]:
    """One backend's figures, labelled, for the comparison table ("-" where not measured)."""
    u, lt = r.get("utilisation") or {}, r.get("latency") or {}
    rows = [("fleet", r["fleet"])]
    if u:
        rows += [
            (
                "jobs queued at once (sizes; sleep)",
                f"{u['jobs']} ({','.join(map(str, u['sizes']))}; {u['sleep_s']:g}s)",
            ),
            ("GPU utilisation while jobs wait", _pc(u["utilisation_while_queued"])),
            ("incl. final drain", _pc(u["utilisation_incl_drain"])),
            (
                "turnover gap median / p90",
                f"{_s(u['turnover_gap_median_s'])} / {_s(u['turnover_gap_p90_s'])}",
            ),
            ("Slurm's reasons while pending (jobs)", _reasons(u) or "-"),
        ]
    if lt:
        rows += [
            (
                "queue -> process start, idle: median / p90 / max",
                f"{_s(lt['median_s'])} / {_s(lt['p90_s'])} / {_s(lt['max_s'])} ({lt['jobs']})",
            ),
            (
                "queue -> store says running: median / p90",
                f"{_s(lt.get('store_running_median_s'))} / {_s(lt.get('store_running_p90_s'))}",
            ),
            ("queue -> sbatch answered: median", _s(lt.get("sbatch_answered_median_s"))),
        ]
    rows.append(("load average before -> after", f"{r['load_before']} -> {r['load_after']}"))
    if "error" in r:
        rows.append(("error", r["error"]))
    return rows


def table(results: dict[str, dict]) -> list[str]:
    """The figures of each backend side by side (markdown, one column per backend)."""
    names = list(results)
    cells = {n: dict(_cells(results[n])) for n in names}
    labels: list[str] = []
    for n in names:
        labels += [label for label, _ in _cells(results[n]) if label not in labels]
    lines = ["| measure | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label in labels:
        row = " | ".join(cells[n].get(label, "-") for n in names)
        lines.append(f"| {label} | {row} |")
    return lines


def _print_one(name: str, r: dict) -> None:
    u, lt = r.get("utilisation", {}), r.get("latency", {})
    print(f"{name} fleet: {r['fleet']}")
    if u:
        print(
            f"utilisation while jobs wait: {u['utilisation_while_queued']:.1%} "
            f"({u['jobs']} jobs of {u['sleep_s']:g}s, sizes {u['sizes']}, "
            f"{u['span_s']:.0f}s); incl. final drain: {u['utilisation_incl_drain']:.1%}; "
            f"turnover gap median {u['turnover_gap_median_s']}s p90 {u['turnover_gap_p90_s']}s"
        )
        if _reasons(u):
            print(f"jobs Slurm held pending, by reason: {_reasons(u)}")
    if lt:
        extra = ""
        if "store_running_median_s" in lt:
            extra += f"; store says running: median {lt['store_running_median_s']}s"
        if "sbatch_answered_median_s" in lt:
            extra += f"; sbatch answered: median {lt['sbatch_answered_median_s']}s"
        print(
            f"queue -> running: median {lt['median_s']}s, p90 {lt['p90_s']}s, "
            f"max {lt['max_s']}s ({lt['jobs']} jobs){extra}"
        )
    if "notes" in r:
        print(f"note: {r['notes']}")
    if "error" in r:
        print(r["error"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("ssh", "slurm", "both"), default="ssh")
    p.add_argument("--hosts", type=int, help="SSH hosts (default 4; 1 with --backend both)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs per SSH host / on the Slurm node")
    p.add_argument("--sleep", type=float, default=20.0, help="seconds each job sleeps")
    p.add_argument("--rounds", type=int, default=3, help="full turns of the fleet queued")
    p.add_argument("--sizes", default="1,2,1,4,1,2", help="GPU counts of the job mix, cycled")
    p.add_argument("--latency-jobs", type=int, default=30)
    p.add_argument("--latency-gap", type=float, default=0.3)
    p.add_argument("--max-submitted", type=int, help="Slurm: jobs submitted at once (GPUs + 4)")
    p.add_argument("--slurm-cpus", type=int, help="CPUs of the Slurm node (default 2 x GPUs)")
    p.add_argument("--slurm-poll", type=float, help="helm's slurm_poll_s (default: helm's)")
    p.add_argument("--budget", type=float, default=240.0, help="give up on a backend after this")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.hosts is None:
        args.hosts = 1 if args.backend == "both" else 4
    if args.backend != "ssh" and (why := slurm_available()) is not None:
        print(f"no Slurm cluster here: {why}", file=sys.stderr)
        return 2
    names = ["ssh", "slurm"] if args.backend == "both" else [args.backend]
    root = Path(tempfile.mkdtemp(prefix="helm-bench-dispatch-"))
    results: dict[str, dict] = {}
    try:
        for name in names:
            results[name] = run_backend(name, root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, r in results.items():
            _print_one(name, r)
        if len(results) > 1:
            print("\n".join(["", *table(results)]))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
