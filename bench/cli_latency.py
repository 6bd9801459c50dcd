"""Wall-clock latency of the commands agents call constantly.

Agents call ``helm context`` before and ``helm feed post`` after every experiment; the goal
is under 0.5 s each on a 2-core machine. The store is filled like a busy campaign (50 agents,
10,000 runs, 2,000 feed posts, 200 directives) so the queries are measured at a realistic
size. For comparison it also times a bare SQLModel round trip (import + one query).

    .venv/bin/python bench/cli_latency.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def fill(home: Path) -> None:
    from helm.models.directives import send_directive
    from helm.models.tables import Agent, FeedPost, Pin, Run
    from helm.workspace import Workspace

    ws = Workspace(home).ensure()
    rng = random.Random(0)
    with ws.store.write() as s:
        for i in range(50):
            s.add(Agent(name=f"a{i:02d}", branch=f"agents/a{i:02d}"))
        s.add(Pin(kind="init", ref="golf_task", commit="0" * 40))
        for i in range(10_000):
            s.add(
                Run(
                    agent=f"a{i % 50:02d}",
                    description=f"experiment {i}",
                    status=rng.choice(["keep", "discard", "discard", "crash"]),
                    val_bpb=1.2 + rng.random() * 0.2,
                    bytes_total=15_000_000 + rng.randrange(900_000),
                )
            )
        for i in range(2_000):
            s.add(FeedPost(agent=f"a{i % 50:02d}", text=f"insight {i}"))
    with ws.db(write=True) as db:
        for i in range(200):
            send_directive(db, f"directive {i}")


def time_cmd(cmd: list[str], env: dict[str, str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return out


def report(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[int(0.9 * (len(xs) - 1))]
    return (
        f"| {name} | {statistics.median(xs) * 1000:.0f} | {p90 * 1000:.0f} | {xs[-1] * 1000:.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    helm = str(Path(sys.executable).with_name("helm"))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        fill(home)
        env = dict(os.environ, HELM_HOME=str(home), HELM_AGENT="a07")
        env.pop("HELM_DB_URL", None)
        rows = [
            report("helm context", time_cmd([helm, "context"], env, args.repeat)),
            report("helm context --json", time_cmd([helm, "context", "--json"], env, args.repeat)),
            report("helm feed post", time_cmd([helm, "feed", "post", "x"], env, args.repeat)),
            report(
                "helm directive ack",
                time_cmd([helm, "directive", "ack", "1"], env, args.repeat),
            ),
            report(
                "bare SQLModel round trip",
                time_cmd(
                    [
                        sys.executable,
                        "-c",
                        "from sqlmodel import create_engine, text; "
                        f"e = create_engine('sqlite:///{home / 'helm.db'}'); "
                        "c = e.connect(); c.execute(text('select 1'))",
                    ],
                    env,
                    args.repeat,
                ),
            ),
        ]
    print(f"{args.repeat} runs each, store: 50 agents, 10,000 runs, 2,000 posts, 200 directives")
    print("| command | median ms | p90 ms | max ms |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
