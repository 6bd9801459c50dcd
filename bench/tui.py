"""TUI under a big campaign: 50 agents, 64 running jobs, 10,000 runs.

Measures, headless through ``App.run_test`` (the rendering work is the same as on a terminal,
minus the terminal write):

- the main screen's refresh: the snapshot read (worker thread) and the render (UI thread);
- log latency: a line appended to a running job's ``train.log`` until it is in the run
  detail's ``Log`` widget;
- the app's CPU use over a bounded interval while a separate writer process moves all 64
  jobs forward every 0.5 s and streams 20 log lines/s into the watched job's log.

    .venv/bin/python bench/tui.py [--seconds 10] [--lines 40] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helm.models import hosts
from helm.tui.app import HelmApp
from helm.tui.screens.detail import RunDetailScreen
from helm.workspace import Workspace

AGENTS, JOBS, RUNS, HOSTS = 50, 64, 10_000, 8


def populate(ws: Workspace) -> None:
    """A campaign of the stated size, written in one transaction with plain SQL."""
    ws.store  # noqa: B018  (create the schema)
    rnd = random.Random(7)
    now = time.time()
    with ws.db(write=True) as db:
        for h in range(HOSTS):
            gpus = [
                {
                    "index": i,
                    "name": "H100",
                    "utilization_pct": 95,
                    "memory_used_mib": 70000,
                    "memory_total_mib": 81559,
                    "temperature_c": 70,
                }
                for i in range(8)
            ]
            hosts.insert_host(db, name=f"box{h}", kind="ssh", gpus=8, workdir="~")
            hosts.edit_host(db, f"box{h}", reachable=True, check_json=json.dumps({"gpus": gpus}))
        for a in range(AGENTS):
            db.execute(
                "INSERT INTO agent (name, driver, state, desired, restarts, created_at, "
                "last_seen_at, env_json) VALUES (:n, 'sweep', 'training', 'up', 0, :t, :t, '{}')",
                {"n": f"agent{a:02d}", "t": now},
            )
        best = 1.30
        for r in range(1, RUNS + 1):
            bpb = 1.12 + rnd.random() * 0.2
            status = "keep" if bpb < best else "discard"
            best = min(best, bpb)
            db.execute(
                'INSERT INTO run (id, agent, parent_id, "commit", code_hash, description, status, '
                "env_json, gpus, val_bpb, bytes_total, steps, created_at, baseline) VALUES "
                "(:id, :a, :p, :c, :h, :d, :s, '{}', 8, :v, :b, 2000, :t, 0)",
                {
                    "id": r,
                    "a": f"agent{r % AGENTS:02d}",
                    "p": r - 1 or None,
                    "c": f"{r:040x}",
                    "h": f"h{r}",
                    "d": f"idea {r}",
                    "s": status,
                    "v": bpb,
                    "b": 15_000_000 + rnd.randrange(900_000),
                    "t": now - RUNS + r,
                },
            )
        for j in range(1, JOBS + 1):
            run_id = RUNS + j
            agent = f"agent{(j - 1) % AGENTS:02d}"
            db.execute(
                "INSERT INTO run (id, agent, description, status, env_json, gpus, created_at, "
                "job_id, baseline) VALUES (:id, :a, 'live', 'running', '{}', 1, :t, :j, 0)",
                {"id": run_id, "a": agent, "t": now, "j": j},
            )
            db.execute(
                "INSERT INTO job (id, run_id, agent, state, code_dir, entry, env_json, gpus, "
                "time_limit_s, priority, host, gpu_ids_json, attempts, max_attempts, "
                "cancel_requested, log_offset, step, total_steps, train_loss, eta_s, queued_at) "
                "VALUES (:j, :r, :a, 'running', '', 'train_gpt.py', '{}', 1, 1800, 0, :h, :g, "
                "1, 3, 0, 0, 100, 2000, 3.5, 500, :t)",
                {
                    "j": j,
                    "r": run_id,
                    "a": agent,
                    "h": f"box{(j - 1) // 8}",
                    "g": json.dumps([(j - 1) % 8]),
                    "t": now,
                },
            )
        for p in range(500):
            db.execute(
                "INSERT INTO feed_post (agent, kind, text, tags_json, created_at) "
                "VALUES (:a, 'insight', :x, '[]', :t)",
                {"a": f"agent{p % AGENTS:02d}", "x": f"finding {p}", "t": now - 500 + p},
            )
    ws.job_dir(1).mkdir(parents=True, exist_ok=True)
    (ws.job_dir(1) / "train.log").write_text(
        "".join(f"step:{s}/2000 train_loss:3.5 train_time:{s}ms\n" for s in range(100))
    )


WRITER = r"""
import sqlite3, sys, time
db, log, until = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(db, timeout=60, isolation_level=None)
step, n = 100, 0
with open(log, "a") as fh:
    while time.time() < until:
        for _ in range(10):
            n += 1
            fh.write(f"step:{100 + n}/2000 train_loss:3.4 train_time:{n}ms step_avg:60ms\n")
            fh.flush()
            time.sleep(0.05)
        step += 10
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE job SET step = ?, train_loss = train_loss * 0.999", (step,))
        conn.execute("COMMIT")
"""


async def measure(ws: Workspace, seconds: float, lines: int) -> dict[str, float]:
    app = HelmApp(ws, start_daemon=False, refresh_rate=1.0, keymap={})
    out: dict[str, float] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        while app.refresh_count < 1:
            await asyncio.sleep(0.01)
        loads, renders = [], []
        for _ in range(10):
            target = app.refresh_count + 1
            app.request_refresh()
            while app.refresh_count < target:
                await asyncio.sleep(0.002)
            loads.append(app.last_load_s)
            renders.append(app.last_render_s)
        out["refresh_read_ms_median"] = statistics.median(loads) * 1e3
        out["refresh_render_ms_median"] = statistics.median(renders) * 1e3
        out["refresh_total_ms_max"] = max(a + b for a, b in zip(loads, renders, strict=True)) * 1e3

        app.flows.open_detail(RUNS + 1, 1)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        log = screen.query_one("#log")
        while log.line_count < 100:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        latencies = []
        path = ws.job_dir(1) / "train.log"
        for i in range(lines):
            marker = f"bench-marker-{i}"
            t0 = time.perf_counter()
            with open(path, "a") as fh:
                fh.write(marker + "\n")
            while not log.lines or log.lines[-1] != marker:  # type: ignore[attr-defined]
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)
        latencies.sort()
        out["log_latency_ms_median"] = statistics.median(latencies) * 1e3
        out["log_latency_ms_p95"] = latencies[int(len(latencies) * 0.95) - 1] * 1e3

        app.pop_screen()
        for label, open_detail in (("main", False), ("detail", True)):
            if open_detail:
                app.flows.open_detail(RUNS + 1, 1)
                await pilot.pause()
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WRITER,
                    str(ws.db_path),
                    str(path),
                    str(time.time() + seconds),
                ]
            )
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            out[f"cpu_pct_{label}"] = (
                100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            )
            writer.wait(timeout=30)
        out["refreshes"] = app.refresh_count
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each CPU interval")
    parser.add_argument("--lines", type=int, default=40, help="log lines timed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "home").ensure()
        t0 = time.perf_counter()
        populate(ws)
        built = time.perf_counter() - t0
        result = asyncio.run(measure(ws, args.seconds, args.lines))
    result["populate_s"] = built
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28} {v:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
