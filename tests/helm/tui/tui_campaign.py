"""The TUI tests' campaign: a small store with fixed times and a fixed log (no daemon)."""

from __future__ import annotations

import json

from helm.models.tables import (
    Agent,
    Directive,
    DirectiveDelivery,
    FeedPost,
    Host,
    Job,
    Pin,
    Run,
)
from helm.tui.app import HelmApp
from helm.workspace import Workspace

T0 = 1_780_000_000.0  # the frozen "now" of every test
SIZE = (120, 34)

LOG_LINES = [
    "model_params:17059912",
    *[
        f"step:{s}/2000 train_loss:{4.2 - s * 0.0011:.4f} train_time:{s * 60}ms step_avg:60.00ms"
        for s in range(0, 1201, 100)
    ],
    "step:1000/2000 val_loss:2.2100 val_bpb:1.3090 train_time:60000ms step_avg:60.00ms",
]


def fill(ws: Workspace) -> None:
    """Three agents (one training on h100-a), a queued job, twelve runs, feed, a pin."""
    with ws.store.write() as s:
        s.add(
            Host(
                name="h100-a",
                kind="ssh",
                gpus=8,
                reachable=True,
                checked_at=T0 - 30,
                check_json=json.dumps(
                    {
                        "gpus": [
                            {
                                "name": "H100",
                                "utilization_pct": 97 if i < 2 else 3,
                                "memory_used_mib": 60000 if i < 2 else 500,
                                "memory_total_mib": 81559,
                                "temperature_c": 71 if i < 2 else 35,
                            }
                            for i in range(8)
                        ]
                    }
                ),
            )
        )
        s.add(Host(name="box-b", kind="ssh", gpus=4, reachable=False, checked_at=T0 - 300))
        for i, name in enumerate(("alpha", "bravo", "charlie")):
            s.add(
                Agent(
                    name=name,
                    driver="sweep" if i else "claude",
                    state=("training", "thinking", "stalled")[i],
                    current_run_id=12 if i == 0 else None,
                    last_seen_at=T0 - 5,
                )
            )
        descs = [
            "baseline",
            "int6 + zstd",
            "lr 0.03",
            "int5 mlp",
            "EMA 0.997",
            "more buckets",
            "seed 1337",
            "warmdown 3500",
            "11 layers",
            "gptq-lite",
            "xsa last 4",
        ]
        for i in range(1, 12):
            s.add(
                Run(
                    id=i,
                    agent=("alpha", "bravo", "charlie")[i % 3],
                    parent_id=i - 1 or None,
                    commit=f"{i:040x}",
                    code_hash=f"h{i if i != 7 else 6}",
                    description=descs[i - 1],
                    status="keep" if i in (1, 2, 4, 5, 8, 10) else "discard",
                    val_bpb=1.2244 - 0.004 * i + (0.01 if i % 3 == 0 else 0),
                    bytes_total=15_000_000 + 90_000 * i,
                    seed=42,
                    steps=2000,
                    train_time_ms=590_000,
                    created_at=T0 - 3600 + 60 * i,
                    finished_at=T0 - 3000 + 60 * i,
                )
            )
        s.add(
            Run(
                id=12,
                agent="alpha",
                parent_id=10,
                commit="c" * 40,
                description="int5 + bigram",
                status="running",
                job_id=1,
                created_at=T0 - 200,
                env_json='{"MLP_BITS": "5"}',
            )
        )
        s.add(
            Job(
                id=1,
                run_id=12,
                agent="alpha",
                state="running",
                host="h100-a",
                gpus=2,
                gpu_ids_json="[0, 1]",
                step=1200,
                total_steps=2000,
                train_loss=2.88,
                eta_s=48,
                queued_at=T0 - 190,
                started_at=T0 - 180,
            )
        )
        s.add(
            Run(
                id=13,
                agent="bravo",
                parent_id=10,
                description="rope 16",
                status="queued",
                job_id=2,
                created_at=T0 - 20,
            )
        )
        s.add(Job(id=2, run_id=13, agent="bravo", state="queued", gpus=1, queued_at=T0 - 20))
        s.add(Job(id=3, run_id=None, agent=None, state="queued", gpus=8, queued_at=T0 - 10))
        s.add(Pin(kind="run", ref="8", commit=f"{8:040x}", created_at=T0 - 1000))
        s.add(
            FeedPost(
                agent="bravo",
                kind="insight",
                text="int5 MLP frees 1.8 MB",
                run_id=4,
                created_at=T0 - 400,
            )
        )
        s.add(
            FeedPost(
                agent="alpha",
                kind="result",
                text="val_bpb 1.1844 keep",
                run_id=10,
                created_at=T0 - 120,
            )
        )
        s.add(
            FeedPost(
                agent="charlie", kind="ack", text="acknowledged directive #1", created_at=T0 - 60
            )
        )
        s.add(Directive(id=1, text="try int5 for MLP weights", created_at=T0 - 900))
        for name in ("alpha", "bravo", "charlie"):
            s.add(
                DirectiveDelivery(
                    directive_id=1,
                    agent=name,
                    delivered_at=T0 - 800,
                    acked_at=T0 - 60 if name == "charlie" else None,
                )
            )
    log = ws.job_dir(1)
    log.mkdir(parents=True, exist_ok=True)
    (log / "train.log").write_text("\n".join(LOG_LINES) + "\n")


async def settle(app: HelmApp, pilot: object, fresh: bool = False) -> None:
    """Wait for the first snapshot to render, or (``fresh``) for a new one read right now.

    Reads run in threads, so tests wait for the render count instead of sleeping; asking
    for a fresh read instead of waiting for the next tick keeps the suite fast.
    """
    import asyncio

    target = max(1, app.refresh_count + 1) if fresh else 1
    if fresh:
        app.request_refresh()
    for _ in range(500):
        if app.refresh_count >= target:
            break
        await asyncio.sleep(0.01)
    await pilot.pause()  # type: ignore[attr-defined]
    assert app.refresh_count >= target, "the snapshot never landed"
