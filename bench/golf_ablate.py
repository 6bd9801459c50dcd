"""Ablations of golf_task/train_gpt.py on CPU at equal wall-clock, and new default vs old.

Every run trains for the same ``MAX_WALLCLOCK_SECONDS`` (``ITERATIONS`` is out of reach), so
a technique that costs time pays for it in steps, as it would in the 600 s of the real run.
The configuration is ``golf_task.presets.TINY_CPU_ENV`` scaled up to the largest size that
still trains meaningfully on one core in a minute or two (``BENCH_SIZE``; measured in
bench/RESULTS.md), one thread per run, two runs at a time on the 2-core box.

    .venv/bin/python bench/golf_ablate.py --ablate [--seconds 90] [--seeds 1337,1338]
    .venv/bin/python bench/golf_ablate.py --ablate --techniques LEAKY_SLOPE,TTT --seeds 1337
    .venv/bin/python bench/golf_ablate.py --compare        # new default vs git HEAD's script
    .venv/bin/python bench/golf_ablate.py --render DIR/results.json   # re-print the tables

``--ablate`` is leave-one-out: the "on" runs are the whole new default at bench scale (one
run per seed, shared by every row) and each row's "off" runs switch that one technique to
its off value (``TECHNIQUES``). A row whose technique is off by default (BigramHash) runs
its "on" side instead. TTT changes only the evaluation, so its "off" score is the sliding-
window score of the same runs, which the script prints before the TTT score.
Scores are the last ``*_exact`` line of a run (what the competition reads).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from golf_runs import (  # noqa: E402
    Job,
    Result,
    expected_wall_s,
    fmt,
    mean_of,
    old_script,
    run_jobs,
    score,
    steps_of,
)

from golf_task.data import make_tiny  # noqa: E402
from golf_task.presets import TINY_CPU_ENV  # noqa: E402
from golf_task.shards import DataLayout  # noqa: E402
from golf_task.variants import pieces  # noqa: E402

SCRIPT = REPO / "golf_task" / "train_gpt.py"

# The bench scale (TINY_CPU_ENV is 4 x 128 with 1,024-token steps). Six layers is the fewest
# that still hold every depth technique apart: a looped band of two, two parallel layers at
# the top, value embeddings on the last two. Measured in bench/RESULTS.md ("ablation").
BENCH_SIZE: dict[str, str] = {
    "NUM_LAYERS": "6",
    "MODEL_DIM": "128",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "TRAIN_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "2048",
    "ITERATIONS": "1000000",  # out of reach: the wall-clock cap ends every run
    "WARMDOWN_ITERS": "50",  # the last ~50 steps' time: 30-50 % of a 90 s run
    "TRAIN_LOG_EVERY": "50",
    "PREQUANT_EVAL": "0",  # a diagnostic; the ablation reads the exported model's scores
}
# Keys of TINY_CPU_ENV that are technique choices (or their sizes), dropped from the shared
# base so that each script keeps its own default and the tables below decide the rest.
TECHNIQUE_KEYS = {
    "MLP_MULT", "XSA_LAST_N", "BIGRAM_BUCKETS", "BIGRAM_DIM", "LOOP_START", "LOOP_END",
    "LOOP_REPEATS", "PARALLEL_FROM", "VE_LAYERS", "VE_DIM", "GPTQ_CALIB_BATCHES",
    "GPTQ_RESERVE_SECONDS", "TTT_CHUNK_TOKENS", "VOCAB_SIZE",
}  # fmt: skip


def new_scale(layers: int) -> dict[str, str]:
    """The depth-dependent switches' "on" values, scaled from 11 layers to ``layers``, and
    the sizes the tiny preset scales the same way.

    Full: VE on 9,10 (VE_DIM 128 of 512); XSA on all 11; parallel from 8; layers 3..5
    looped. Calibration and TTT chunks are the tiny preset's (~24 k validation tokens).
    """
    return {
        "VE_LAYERS": f"{layers - 2},{layers - 1}",
        "VE_DIM": "32",
        "XSA_LAST_N": str(layers),
        "PARALLEL_FROM": str(round(8 * layers / 11)),
        "LOOP_START": str(round(3 * layers / 11)),
        "LOOP_END": str(round(5 * layers / 11)),
        "BIGRAM_DIM": "64",
        "GPTQ_CALIB_BATCHES": "8",
        "GPTQ_RESERVE_SECONDS": "1",
        "TTT_CHUNK_TOKENS": "4096",
    }


def old_scale(layers: int) -> dict[str, str]:
    """The old default's depth-dependent switches, scaled as its tiny preset did (XSA on the
    last 4 of 10 layers; the 10,240 x 128 BigramHash as 2,048 x 64)."""
    return {
        "XSA_LAST_N": str(max(1, round(0.4 * layers))),
        "BIGRAM_BUCKETS": "2048",
        "BIGRAM_DIM": "64",
    }


def env_value(value: object) -> str:
    """A default as the environment spells it (booleans as 1/0, as from_env reads them)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def script_defaults(script: Path = SCRIPT) -> dict[str, str]:
    """``Hyperparameters`` defaults of a train_gpt.py, by env name, read with ``ast``.

    Reading the source, not importing it, keeps the bench free of a torch import and works
    for the old script as well; a test holds it equal to the imported dataclass.
    """
    tree = ast.parse(Path(script).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Hyperparameters":
            out = {}
            for st in node.body:
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value:
                    try:
                        out[st.target.id.upper()] = env_value(ast.literal_eval(st.value))
                    except ValueError:
                        continue
            return out
    return {}


def same(a: str | None, b: str) -> bool:
    """Equal as numbers where both are numbers ("0.0" is "0"), else as text."""
    if a is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


@dataclass(frozen=True)
class Technique:
    """One row of the ablation: the env that turns the technique on, and off.

    ``on`` is the script's own default where that default is on and does not depend on
    depth, the bench-scale value for depth-dependent switches, and ``on`` as given (the
    full stack's value) where the script has it off or lacks the switch. ``default_on``:
    the script's default is on, so the "on" side is the shared baseline run. ``eval_only``:
    it changes only the evaluation; its "off" score is the baseline runs' ``off_score``.
    ``in_script``: every key exists in the script (a switch it lacks is ignored by it).
    """

    key: str
    name: str
    on: dict[str, str]
    off: dict[str, str]
    default_on: bool = True
    eval_only: bool = False
    off_score: str = ""
    in_script: bool = True

    def switch(self) -> str:
        return ", ".join(f"{k} {self.on.get(k, '?')} → {self.off[k]}" for k in self.off)


# key, name, nominal "on" (the full stack's value), off (earlier default or plain variant)
TECHNIQUE_TABLE: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    ("LEAKY_SLOPE", "LeakyReLU(0.5)² MLP", {"LEAKY_SLOPE": "0.5"}, {"LEAKY_SLOPE": "0"}),
    ("LN_SCALE", "LN scale 1/√(layer+1)", {"LN_SCALE": "1"}, {"LN_SCALE": "0"}),
    ("ORTHO_INIT", "orthogonal init", {"ORTHO_INIT": "1"}, {"ORTHO_INIT": "0"}),
    ("VE_LAYERS", "value embeddings", {"VE_LAYERS": "scaled"}, {"VE_LAYERS": ""}),
    ("XSA_LAST_N", "XSA on all layers", {"XSA_LAST_N": "scaled"}, {"XSA_LAST_N": "0"}),
    ("SMEAR_GATE", "SmearGate", {"SMEAR_GATE": "1"}, {"SMEAR_GATE": "0"}),
    ("SMEAR_BOS", "BOS-aware SmearGate", {"SMEAR_BOS": "1"}, {"SMEAR_BOS": "0"}),
    ("QK_GAIN_INIT", "QK gain (records' 5.0)", {"QK_GAIN_INIT": "5.0"}, {"QK_GAIN_INIT": "1.5"}),
    ("PARALLEL_FROM", "parallel residuals", {"PARALLEL_FROM": "scaled"}, {"PARALLEL_FROM": "-1"}),
    ("LOOP_END", "depth recurrence", {"LOOP_END": "scaled"}, {"LOOP_END": "-1"}),
    ("POLAR_NS", "Polar-Express Newton-Schulz", {"POLAR_NS": "1"}, {"POLAR_NS": "0"}),
    ("MIN_LR", "learning-rate floor", {"MIN_LR": "0.1"}, {"MIN_LR": "0"}),
    ("MUON_WD", "Muon weight decay (later records)", {"MUON_WD": "0.095"}, {"MUON_WD": "0.04"}),
    ("GPTQ", "full-Hessian GPTQ", {"GPTQ": "1"}, {"GPTQ": "0"}),
    (
        "CLIP_SDS",
        "clip by row std (vs GPTQ-lite percentiles)",
        {"CLIP_SDS_ATTN": "13.0", "CLIP_SDS_MLP": "11.5", "CLIP_SDS_EMBED": "14.0"},
        {"CLIP_SDS_ATTN": "0", "CLIP_SDS_MLP": "0", "CLIP_SDS_EMBED": "0"},
    ),
    ("TTT", "legal score-first TTT", {"TTT": "1"}, {"TTT": "0"}),
    (
        "BIGRAM_BUCKETS",
        "BigramHash 2048 x 64",
        {"BIGRAM_BUCKETS": "2048", "BIGRAM_DIM": "64"},
        {"BIGRAM_BUCKETS": "0"},
    ),
]
EVAL_ONLY = {"TTT": "_sliding_window_exact"}  # its "off" score, read from the same runs


def techniques(layers: int, defaults: dict[str, str] | None = None) -> list[Technique]:
    """The rows at bench scale, "on" and ``default_on`` taken from the script's defaults."""
    defaults = script_defaults() if defaults is None else defaults
    scaled = new_scale(layers)
    rows = []
    for key, name, nominal, off in TECHNIQUE_TABLE:
        in_script = all(k in defaults for k in off)
        default_on = not in_script or any(not same(defaults.get(k), v) for k, v in off.items())
        on = {}
        for k, v in nominal.items():
            if v == "scaled":
                on[k] = scaled[k]
            elif default_on and k in defaults:
                on[k] = defaults[k]
            else:
                on[k] = v
        if key == "LOOP_END":
            on["LOOP_START"] = scaled["LOOP_START"]
        rows.append(
            Technique(
                key,
                name,
                on,
                off,
                default_on=default_on,
                eval_only=key in EVAL_ONLY,
                off_score=EVAL_ONLY.get(key, ""),
                in_script=in_script,
            )
        )
    return rows


def base_env(data: Path, variant: str, seconds: float, seed: int) -> dict[str, str]:
    """What both scripts share: TINY_CPU_ENV less its technique keys, at bench size."""
    layout = DataLayout(Path(data), variant)
    env = {k: v for k, v in TINY_CPU_ENV.items() if k not in TECHNIQUE_KEYS}
    env.update(BENCH_SIZE)
    env.update(
        DATA_PATH=str(layout.dataset_dir),
        TOKENIZER_PATH=str(layout.tokenizer_model),
        DATA_VARIANT=variant,  # helm's key (the script ignores it), kept truthful
        VOCAB_SIZE=str(pieces(variant)),
        MAX_WALLCLOCK_SECONDS=f"{seconds:g}",
        SEED=str(seed),
    )
    return env


def new_default_env(
    data: Path, variant: str, seconds: float, seed: int, rows: list[Technique] | None = None
) -> dict[str, str]:
    """The new default at bench scale: default-on techniques on (scaled), the rest off."""
    env = base_env(data, variant, seconds, seed)
    env.update(new_scale(int(env["NUM_LAYERS"])))
    for tech in rows if rows is not None else techniques(int(env["NUM_LAYERS"])):
        env.update(tech.on if tech.default_on else tech.off)
    return env


# The ablation's score: the exported model's sliding-window score, before TTT. TTT changes
# only the evaluation and costs most of a CPU run's evaluation time (~50 s of ~80 s under
# load), so only the baseline runs do it (they give the TTT row both of its scores) and the
# other rows run TTT=0, unless --ttt-everywhere compares final scores instead.
PRE_TTT = "_sliding_window_exact"


def ablation_jobs(
    data: Path,
    variant: str,
    seconds: float,
    seeds: list[int],
    rows: list[Technique],
    selected: list[Technique],
    ttt_everywhere: bool = False,
) -> list[Job]:
    """The baseline per seed (built from every row), then each selected row's own runs,
    a row's seeds adjacent so that they run at the same time, under the same load."""
    jobs = [
        Job("baseline", "on", s, SCRIPT, new_default_env(data, variant, seconds, s, rows))
        for s in seeds
    ]
    for tech in selected:
        if tech.eval_only:
            continue
        side = "off" if tech.default_on else "on"
        for s in seeds:
            env = new_default_env(data, variant, seconds, s, rows)
            env.update(tech.off if tech.default_on else tech.on)
            if not ttt_everywhere:
                env["TTT"] = "0"
            jobs.append(Job(tech.key, side, s, SCRIPT, env))
    return jobs


def ablation_table(
    results: list[Result], selected: list[Technique], ttt_everywhere: bool = False
) -> str:
    """Markdown: technique, switch, bpb on, bpb off (means over seeds), Δ, steps."""
    metric = None if ttt_everywhere else PRE_TTT
    base = [r for r in results if r.label == "baseline"]
    lines = [
        "| technique | switch (on → off) | bpb on | bpb off | Δ off − on | steps on | steps off |",
        "|---|---|---|---|---|---|---|",
        f"| new default, all on | (baseline; final score with TTT) | "
        f"{fmt(mean_of([r.bpb for r in base]))} | | | {steps_of(base)} | |",
    ]
    for tech in selected:
        if tech.eval_only:
            on, off = base, base
            bpb_on = mean_of([r.bpb for r in base])
            bpb_off = mean_of([score(r, tech.off_score) for r in base])
        else:
            own = [r for r in results if r.label == tech.key]
            on, off = (base, own) if tech.default_on else (own, base)
            bpb_on = mean_of([score(r, metric) for r in on])
            bpb_off = mean_of([score(r, metric) for r in off])
        delta = None if bpb_on is None or bpb_off is None else bpb_off - bpb_on
        note = " (same runs: score after vs before TTT)" if tech.eval_only else ""
        if not tech.default_on:
            note += " (off by default)"
        if not tech.in_script:
            note += " (not in this script: ignored)"
        lines.append(
            f"| {tech.name} | {tech.switch()}{note} | {fmt(bpb_on)} | {fmt(bpb_off)} | "
            f"{fmt(delta, '+.4f')} | {steps_of(on)} | {steps_of(off)} |"
        )
    return "\n".join(lines)


def compare_jobs(
    data: Path, variant: str, seconds: float, seeds: list[int], old: Path
) -> list[Job]:
    """New and old of one seed side by side (adjacent, so they run at the same time)."""
    jobs = []
    for s in seeds:
        jobs.append(Job("new", "new", s, SCRIPT, new_default_env(data, variant, seconds, s)))
        env = base_env(data, variant, seconds, s)
        env.update(old_scale(int(env["NUM_LAYERS"])))
        jobs.append(Job("old", "old", s, old, env))
    return jobs


def compare_table(results: list[Result]) -> str:
    lines = [
        "| script | bpb (mean) | per seed | steps | artifact bytes |",
        "|---|---|---|---|---|",
    ]
    for label, name in (("new", "new default (working tree)"), ("old", "old default")):
        rows = sorted((r for r in results if r.label == label), key=lambda r: r.seed)
        per_seed = ", ".join(fmt(r.bpb) for r in rows)
        sizes = "/".join(f"{r.total_bytes:,}" if r.total_bytes else "n/a" for r in rows)
        lines.append(
            f"| {name} | {fmt(mean_of([r.bpb for r in rows]))} | {per_seed} | {steps_of(rows)} | "
            f"{sizes} |"
        )
    return "\n".join(lines)


def render(record: dict) -> str:
    """The header line and table of a results.json."""
    results = [Result(**r) for r in record["results"]]
    a = record["args"]
    head = (
        f"{record['mode']}: {a['seconds']:g} s per run, seeds {a['seeds']}, "
        f"{a['parallel']} at a time, variant {a['variant']}, bench size "
        + " ".join(f"{k}={v}" for k, v in record["bench_size"].items())
        + f"; {record['machine']}; total {record['wall_s']:.0f} s"
    )
    if record["mode"] == "ablate":
        what = (
            "final scores, TTT in every run"
            if a.get("ttt_everywhere")
            else "rows: sliding-window score before TTT (TTT=0 outside the baseline)"
        )
        selected = [Technique(**row) for row in record["rows"]]
        table = ablation_table(results, selected, a.get("ttt_everywhere", False))
        return f"{head}; {what}\n\n{table}"
    return head + "\n\n" + compare_table(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--ablate", action="store_true", help="each technique on/off")
    mode.add_argument("--compare", action="store_true", help="new default vs the old script")
    mode.add_argument("--render", type=Path, help="re-print the table of a results.json")
    parser.add_argument("--seconds", type=float, default=90.0, help="MAX_WALLCLOCK_SECONDS")
    parser.add_argument("--seeds", default="1337,1338")
    parser.add_argument(
        "--techniques", default=None, help="comma-separated keys (default all; none: baseline)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the bench size for this invocation (e.g. TRAIN_BATCH_TOKENS=1024)",
    )
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (2 cores)")
    parser.add_argument("--variant", default="sp1024", help="tiny data variant (both scripts)")
    parser.add_argument("--data", type=Path, default=None, help="tiny data dir (built if absent)")
    parser.add_argument("--out", type=Path, default=None, help="run dirs and results.json")
    parser.add_argument("--old-script", type=Path, default=None, help="instead of git show")
    parser.add_argument("--old-ref", default="HEAD", help="git revision of the old script")
    parser.add_argument(
        "--ttt-everywhere", action="store_true", help="TTT in every run; compare final scores"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    args = parser.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    keys = [k.strip() for k in args.techniques.split(",")] if args.techniques else None
    if keys == ["none"]:
        keys = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in BENCH_SIZE:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY in {sorted(BENCH_SIZE)}")
        BENCH_SIZE[key] = value
    rows = techniques(int(BENCH_SIZE["NUM_LAYERS"]))
    known = {t.key for t in rows}
    if keys and not set(keys) <= known:
        parser.error(f"unknown technique(s) {sorted(set(keys) - known)}; known: {sorted(known)}")
    selected = [t for t in rows if keys is None or t.key in keys]
    out = args.out or Path(tempfile.mkdtemp(prefix="golf-ablate-"))
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or Path(tempfile.gettempdir()) / "helm-bench-tiny"
    if args.ablate:
        jobs = ablation_jobs(
            data, args.variant, args.seconds, seeds, rows, selected, args.ttt_everywhere
        )
    else:
        old = old_script(out, args.old_script, args.old_ref)
        jobs = compare_jobs(data, args.variant, args.seconds, seeds, old)
    estimate = expected_wall_s(len(jobs), args.seconds, args.parallel, overhead_s=35)
    print(
        f"{len(jobs)} runs, {args.parallel} at a time, {args.seconds:g} s each: "
        f"about {estimate / 60:.0f} min; run dirs under {out}",
        file=sys.stderr,
    )
    if args.dry_run:  # the first run's env in full, then what each other run changes
        ref = jobs[0].env
        for job in jobs:
            diff = {k: v for k, v in job.env.items() if job is jobs[0] or ref.get(k) != v}
            gone = sorted(set(ref) - set(job.env))
            print(
                f"{job.label} {job.side} seed {job.seed} {job.script.name}: {diff}"
                + (f" unset {gone}" if gone else "")
            )
        return 0
    make_tiny(data, variant=args.variant)
    t0 = time.perf_counter()
    # a run's own time is the cap plus start-up, export and evaluation; give it plenty
    results = run_jobs(jobs, out, args.parallel, timeout_s=args.seconds * 3 + 600)
    record = {
        "mode": "ablate" if args.ablate else "compare",
        "args": {
            "seconds": args.seconds,
            "seeds": seeds,
            "parallel": args.parallel,
            "variant": args.variant,
            "techniques": keys,
            "ttt_everywhere": args.ttt_everywhere,
        },
        "bench_size": BENCH_SIZE,
        "rows": [asdict(t) for t in selected],
        "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
        "wall_s": time.perf_counter() - t0,
        "results": [asdict(r) for r in results],
    }
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(render(record))
    failed = [r for r in results if r.bpb is None]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
