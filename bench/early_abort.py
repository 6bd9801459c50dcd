"""Early abort and screening benchmark: GPU-seconds spent for the same kept set.

Two passes over the same experiments, each in a fresh workspace with the real daemon
(``python -m helm.daemon``: dispatch, log streaming and the early-abort service) and one
local CPU host with ``--slots`` slots (the box), on the tiny data. A full run holds
``--full-gpus`` slots (by default all of them, as a competition run holds all eight GPUs of
its box: its start-up and evaluation are paid on every one), a screen one slot:

1. **plain**: ``--agents`` built-in sweep agents (``helm.agents.sweep.SweepAgent``, their own
   proposals: a reference, a noise repeat, then local and random moves around their best)
   run until each has made ``--experiments / --agents`` experiments; early abort off
   (``[agents.abort] enabled = false``) and no screening. Every proposal is recorded in
   order.
2. **saving**: the same proposals, agent by agent and in the same order, through the same
   experiment protocol (``helm.agents.experiment.run_experiment``) with early abort on and
   screening on (``[agents.screen] enabled = true``, ``--screen-frac`` of the steps on one
   GPU slot).

Reported per pass: GPU-seconds the campaign's jobs held (``helm.models.costs``, the figure
every cost view shows: from placement to the end of each try), full runs that ran to the end,
screens, screened out, aborted, wall time; and whether every experiment the keep rule kept in
the plain pass is also kept in the saving pass (the same proposal index of the same agent).
Training is deterministic here (one thread, fixed seeds), so a full run scores the same in
both passes and only screening and aborts can change a verdict.

    .venv/bin/python bench/early_abort.py [--experiments 40] [--agents 2] [--slots 2]
        [--full-gpus SLOTS] [--iterations 100] [--screen-frac 0.25] [--json] [--out FILE]

Bounded: each pass stops after ``--budget`` seconds (partial figures, marked); the daemon is
ended by its pid in every case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dispatch import kill_daemon  # noqa: E402  (bench/, beside this script)

from golf_task.data import make_tiny  # noqa: E402
from golf_task.presets import tiny_env  # noqa: E402
from helm import daemon  # noqa: E402
from helm.agents import swarm  # noqa: E402
from helm.agents import taskrepo as tr  # noqa: E402
from helm.agents.experiment import ExpRequest, RemoteBackend, run_experiment  # noqa: E402
from helm.agents.report import ExpResult  # noqa: E402
from helm.agents.search import Proposal  # noqa: E402
from helm.agents.sweep import SweepAgent  # noqa: E402
from helm.models.agents import update_agent  # noqa: E402
from helm.models.costs import campaign_usage  # noqa: E402
from helm.models.runs import status_counts  # noqa: E402
from helm.models.states import FINISHED_RUN, RunStatus  # noqa: E402
from helm.remote.hosts import add_host  # noqa: E402
from helm.workspace import Workspace  # noqa: E402

SKIP = ("duplicate", "queued")  # not an experiment that ran


class RecordingSweep(SweepAgent):
    """The sweep agent, unchanged, with a note of each proposal and what it got."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.made: list[tuple[Proposal, ExpResult]] = []

    def learn(self, p: Proposal, res: ExpResult) -> None:
        self.made.append((p, res))
        super().learn(p, res)

    def count(self) -> int:
        return sum(1 for _, r in self.made if r.verdict not in SKIP)


def _workspace(root: Path, data: Path, args: argparse.Namespace, *, saving: bool) -> Workspace:
    ws = Workspace(root / "ws").ensure()
    conf = "[remote]\ncheck_every_s = 0\n"
    conf += f"[agents]\ngpus = {args.full_gpus}\n"
    conf += f"[agents.abort]\nenabled = {'true' if saving else 'false'}\n"
    conf += "[agents.sweep]\nrandom_prob = 0.25\n"
    if saving:
        conf += f"[agents.screen]\nenabled = true\nsteps_frac = {args.screen_frac}\n"
    ws.config_path.write_text(conf)
    with ws.store.write() as s:
        add_host(ws, s, "cpu", local=True, gpus=args.slots, data=str(data))
    tr.ensure_task_repo(ws)
    env = tiny_env(data, ITERATIONS=args.iterations, WARMDOWN_ITERS=int(args.iterations * 0.4))
    for i in range(args.agents):
        swarm.add_agent(ws, f"a{i + 1}", env=env)
        with ws.db(write=True) as db:  # driven here, in-process: the daemon must not start it
            update_agent(db, f"a{i + 1}", desired="down")
    return ws


def _figures(ws: Workspace, started: float, results: list[tuple[str, int, ExpResult]]) -> dict:
    with ws.db(write=False) as db:
        use = campaign_usage(db)
        counts = status_counts(db)

    def count(status: str | None = None, *, screen: bool | None = None) -> int:
        return sum(n for (st, sc), n in counts.items()
                   if status in (None, st) and screen in (None, sc))  # fmt: skip

    return {
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],  # the box was shared
        "gpu_seconds": round(use.gpu_seconds, 1),
        "wall_s": round(time.time() - started, 1),
        "experiments": len(results),
        "full_runs_finished": sum(count(st, screen=False) for st in FINISHED_RUN),
        "screens": count(screen=True),
        "screened_out": count(RunStatus.SCREEN_FAIL),
        "aborted": count(RunStatus.ABORTED),
        "crashed": count(RunStatus.CRASH),
        "kept": sorted([a, i] for a, i, res in results if res.verdict == "keep"),
        "verdicts": [[a, i, res.verdict, res.val_bpb] for a, i, res in results],
    }


def _in_threads(names: list[str], work: Any, deadline: float) -> None:
    errors: list[BaseException] = []

    def guarded(name: str) -> None:
        try:
            work(name)
        except BaseException as exc:  # reported after the others stop
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.time() + 120))
    if errors:
        raise errors[0]


def plain_pass(root: Path, data: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    ws = _workspace(root, data, args, saving=False)
    per_agent = -(-args.experiments // args.agents)
    deadline = time.time() + args.budget
    sweeps = {f"a{i + 1}": None for i in range(args.agents)}
    started = time.time()
    daemon.start_detached(ws)
    try:

        def work(name: str) -> None:
            stop = lambda: time.time() > deadline  # noqa: E731
            sa = RecordingSweep(ws, name, backend=RemoteBackend(), poll_s=0.5, seed=7,
                                should_stop=stop)  # fmt: skip
            sweeps[name] = sa
            while sa.count() < per_agent and not stop():
                sa.step()

        _in_threads(list(sweeps), work, deadline)
    finally:
        kill_daemon(ws)
    made = {n: sa.made for n, sa in sweeps.items() if sa is not None}
    results = [(n, i, r) for n, pairs in made.items() for i, (_, r) in enumerate(pairs)]
    results = [x for x in results if x[2].verdict not in SKIP]
    out = _figures(ws, started, results)
    out["partial"] = time.time() > deadline
    return out, made


def saving_pass(root: Path, data: Path, args: argparse.Namespace, made: dict[str, list]) -> dict:
    ws = _workspace(root, data, args, saving=True)
    deadline = time.time() + args.budget
    results: list[tuple[str, int, ExpResult]] = []
    started = time.time()
    daemon.start_detached(ws)
    try:

        def work(name: str) -> None:
            for i, (p, before) in enumerate(made[name]):
                if before.verdict in SKIP or time.time() > deadline:
                    continue
                req = ExpRequest(name, p.description, env=dict(p.changes),
                                 baseline=p.baseline, seed=p.seed)  # fmt: skip
                res = run_experiment(ws, req, backend=RemoteBackend(), poll_s=0.5)
                results.append((name, i, res))

        _in_threads(list(made), work, deadline)
    finally:
        kill_daemon(ws)
    out = _figures(ws, started, results)
    out["partial"] = time.time() > deadline
    return out


def compare(plain: dict, saving: dict) -> dict:
    kept_plain = {tuple(k) for k in plain["kept"]}
    kept_saving = {tuple(k) for k in saving["kept"]}
    lost = sorted(kept_plain - kept_saving)
    saved = 1 - saving["gpu_seconds"] / plain["gpu_seconds"] if plain["gpu_seconds"] else None
    return {
        "gpu_seconds_saved_share": None if saved is None else round(saved, 3),
        "kept_plain": len(kept_plain),
        "kept_saving": len(kept_saving),
        "kept_lost": [list(k) for k in lost],
        "kept_gained": [list(k) for k in sorted(kept_saving - kept_plain)],
        # after an agent's first differing verdict on a keep its best differs, so the later
        # proposals build on other code in the two passes: later differences follow from it
        "first_divergence": {
            agent: min(i for a, i in kept_plain ^ kept_saving if a == agent)
            for agent in sorted({a for a, _ in kept_plain ^ kept_saving})
        },
        "goal_met": saved is not None and saved >= 0.30 and not lost,
    }


def table(plain: dict, saving: dict, cmp: dict) -> list[str]:
    rows = [
        ("GPU-seconds", "gpu_seconds"),
        ("experiments", "experiments"),
        ("full runs finished", "full_runs_finished"),
        ("screens (screened out)", None),
        ("aborted", "aborted"),
        ("crashed runs", "crashed"),
        ("kept", None),
        ("wall s", "wall_s"),
        ("load average at the end (1, 5, 15 min)", "load_avg_1_5_15"),
    ]
    out = ["| | plain | abort + screening |", "|---|---|---|"]
    for label, key in rows:
        if key is not None:
            out.append(f"| {label} | {plain[key]} | {saving[key]} |")
        elif label.startswith("screens"):
            out.append(f"| {label} | 0 | {saving['screens']} ({saving['screened_out']}) |")
        else:
            out.append(f"| {label} | {len(plain['kept'])} | {len(saving['kept'])} |")
    share = cmp["gpu_seconds_saved_share"]
    out.append("")
    out.append(
        f"GPU-seconds saved: {'-' if share is None else f'{share:.0%}'}; kept runs lost: "
        f"{len(cmp['kept_lost'])} {cmp['kept_lost'] or ''}; goal (>= 30%, none lost): "
        f"{'met' if cmp['goal_met'] else 'NOT met'}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=40, help="experiments in all (40)")
    ap.add_argument("--agents", type=int, default=2, help="sweep agents (2)")
    ap.add_argument("--slots", type=int, default=2, help="the CPU host's job slots (2)")
    ap.add_argument("--full-gpus", type=int, help="a full run's slots (all of --slots)")
    ap.add_argument("--iterations", type=int, default=100, help="a full run's steps (100)")
    ap.add_argument("--screen-frac", type=float, default=0.25, help="a screen's share (0.25)")
    ap.add_argument("--budget", type=float, default=3600.0, help="seconds per pass (3600)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--out", type=Path, help="also write the JSON figures here")
    args = ap.parse_args(argv)
    args.full_gpus = args.slots if args.full_gpus is None else args.full_gpus
    if args.experiments < 1 or args.agents < 1 or not 0 < args.screen_frac <= 1:
        ap.error("--experiments and --agents must be >= 1, --screen-frac in (0, 1]")
    if not 1 <= args.full_gpus <= args.slots:
        ap.error("--full-gpus must be between 1 and --slots")
    root = Path(tempfile.mkdtemp(prefix="helm-bench-abort-"))
    try:
        data = root / "data"
        make_tiny(data)
        plain, made = plain_pass(root / "plain", data, args)
        saving = saving_pass(root / "saving", data, args, made)
        cmp = compare(plain, saving)
        proposals = {
            n: [asdict(p) | {"verdict": r.verdict} for p, r in pairs] for n, pairs in made.items()
        }
        report = {"args": vars(args) | {"out": str(args.out) if args.out else None},
                  "plain": plain, "saving": saving, "compare": cmp, "proposals": proposals}  # fmt: skip
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            print("\n".join(table(plain, saving, cmp)))
        return 0 if cmp["goal_met"] else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
