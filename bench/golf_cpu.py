"""CPU benchmark of golf_task/train_gpt.py on the tiny offline data.

Measures, on this machine (one thread per run, as the demo runs it):
  1. the tiny preset as is: wall and CPU seconds for a whole run, tokens/s, final val_bpb;
  2. the tiny model trained for a fixed wall-clock budget: tokens/s and val_bpb;
  3. on that trained model's float weights: the compression ratio (codes stored one per byte
     / zstd-22 bytes) of per-row GPTQ-lite int8, int6 and int5 codes. The public figures to
     compare with are about 1.51x (int6) and 1.88x (int5).

    .venv/bin/python bench/golf_cpu.py [--data DIR] [--budget 60]

Prints a markdown table to paste into bench/RESULTS.md (section "golf_task (CPU)").

    .venv/bin/python bench/golf_cpu.py --ablate [...]    # = bench/golf_ablate.py --ablate
    .venv/bin/python bench/golf_cpu.py --compare [...]   # = bench/golf_ablate.py --compare

hand their arguments to bench/golf_ablate.py: each technique on/off at equal wall-clock,
and the new default against the previous script, side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golf_task.data import make_tiny  # noqa: E402
from golf_task.presets import tiny_env  # noqa: E402

SCRIPT = REPO / "golf_task" / "train_gpt.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_gpt_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_gpt_bench"] = module
    spec.loader.exec_module(module)
    return module


def run(data: Path, workdir: Path, **overrides: str) -> dict:
    """One run in a subprocess; returns its timings and the numbers read from its stdout."""
    env = tiny_env(data, **overrides)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=workdir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout
    steps, train_ms = map(
        int,
        re.findall(r"^step:(\d+)/\d+ val_loss:\S+ val_bpb:\S+ train_time:(\d+)ms", out, re.M)[-1],
    )
    bpb = float(
        re.findall(r"^final_\S+_roundtrip_exact val_loss:\S+ val_bpb:(\S+)$", out, re.M)[-1]
    )
    last = float(re.findall(r"^final_\S+ val_loss:\S+ val_bpb:(\S+)", out, re.M)[-1])
    tokens = steps * int(env["TRAIN_BATCH_TOKENS"])
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": steps,
        "tok_per_s": tokens / (train_ms / 1000),
        "roundtrip_bpb": bpb,
        "sliding_bpb": last,
        "run_id": env["RUN_ID"],
    }


def compression_ratios(tg, state: dict, args) -> dict[int, tuple[float, float]]:
    """(zstd-22 ratio, zstd-3 ratio) of all quantizable matrices' codes at one bit width."""
    out = {}
    for bits in (8, 6, 5):
        codes = {}
        for name, t in state.items():
            if tg.quant_bits_for(name, t, args):
                codes[name] = tg.quantize_rows(t, bits, args.percentiles())[0]
        raw = sum(q.numel() for q in codes.values())
        blob22 = tg.zstd_compress(tg.serialize(codes), 22)
        blob3 = tg.zstd_compress(tg.serialize(codes), 3)
        out[bits] = (raw / len(blob22), raw / len(blob3))
    return out


def cpu_throughput(tg, data: Path, steps: int = 20) -> float:
    """Training tokens per CPU-second of the tiny preset (one thread), measured in-process.

    CPU time, unlike the runs' wall-clock train_time, does not shrink when other processes
    share the cores, so this figure is comparable across busy and quiet machines.
    """
    import torch

    env = tiny_env(data)
    hp = tg.Hyperparameters.from_env(env)
    torch.manual_seed(0)
    model = tg.GPT(hp)
    opts = tg.build_optimizers(model, hp, fused=False)
    loader = tg.DistributedTokenLoader(
        os.path.join(env["DATA_PATH"], "fineweb_train_*.bin"), 0, 1, torch.device("cpu")
    )

    def step() -> None:
        x, y = loader.next_batch(hp.train_batch_tokens, hp.train_seq_len)
        model(x, y).backward()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)

    step()
    t0 = time.process_time()
    for _ in range(steps):
        step()
    return steps * hp.train_batch_tokens / (time.process_time() - t0)


def main() -> None:
    if {"--ablate", "--compare", "--render"} & set(sys.argv[1:]):
        from golf_ablate import main as ablate_main  # bench/ is sys.path[0] for this script

        raise SystemExit(ablate_main(sys.argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="tiny data dir (built if absent)")
    parser.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = args.data or Path(tempfile.gettempdir()) / "helm-bench-tiny"
    make_tiny(data)
    work = Path(tempfile.mkdtemp(prefix="golf-bench-"))

    preset = run(data, work, RUN_ID="preset")
    budget = run(
        data,
        work,
        RUN_ID="budget",
        ITERATIONS="100000",
        MAX_WALLCLOCK_SECONDS=str(args.budget),
        WARMDOWN_ITERS="60",
        SAVE_RAW_MODEL="1",
    )
    tg = load_script()
    hp = tg.Hyperparameters.from_env(tiny_env(data))
    state = torch.load(work / "logs" / "budget.pt", map_location="cpu")
    ratios = compression_ratios(tg, state, hp)
    cpu_tps = cpu_throughput(tg, data)

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, load {os.getloadavg()}")
    print("| measurement | value |")
    print("|---|---|")
    print(
        f"| tiny preset run, python start to final line | {preset['wall_s']:.1f} s wall, "
        f"{preset['cpu_s']:.1f} s CPU |"
    )
    print(
        f"| tiny preset: steps, tokens/s (wall) | {preset['steps']}, {preset['tok_per_s']:,.0f} |"
    )
    print(f"| tiny preset: training tokens per CPU-second | {cpu_tps:,.0f} |")
    print(
        f"| tiny preset: val_bpb round trip / sliding | {preset['roundtrip_bpb']:.4f} / "
        f"{preset['sliding_bpb']:.4f} |"
    )
    print(
        f"| {args.budget:.0f} s budget: steps, tokens/s | {budget['steps']}, "
        f"{budget['tok_per_s']:,.0f} |"
    )
    print(
        f"| {args.budget:.0f} s budget: val_bpb round trip / sliding | "
        f"{budget['roundtrip_bpb']:.4f} / {budget['sliding_bpb']:.4f} |"
    )
    for bits, (r22, r3) in ratios.items():
        print(f"| int{bits} codes: raw / zstd-22 (zstd-3) | {r22:.2f}x ({r3:.2f}x) |")


if __name__ == "__main__":
    main()
