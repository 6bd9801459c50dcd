"""The golf benchmarks: bench/gpu_check.sh (+ gpu_summary.py) and bench/golf_ablate.py.

The GPU check cannot run here, so what is tested is everything that does not need CUDA:
the script's syntax, the exact commands its dry run prints, the early failure without
CUDA, the stamping supervisor's hard timeout, the log summary read from a real tiny CPU
run, and (slow) the whole pipeline on CPU through its test hook. The ablation harness is
tested on its tables of switches against the real script's fields and defaults, and on its
job lists; its scheduler runs a stand-in script (said so below), because a real training
run per job would cost minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
GPU_CHECK = BENCH / "gpu_check.sh"
sys.path.insert(0, str(BENCH))

import golf_ablate as ga  # noqa: E402
import gpu_summary as gs  # noqa: E402

from golf_task.logs import parse_text  # noqa: E402
from golf_task.presets import TINY_CPU_ENV  # noqa: E402
from golf_task.shards import DataLayout  # noqa: E402

# The overrides the brief allows the check to make to the script's defaults, and no others.
ALLOWED = {
    "DATA_PATH",
    "TOKENIZER_PATH",
    "ITERATIONS",
    "MAX_WALLCLOCK_SECONDS",
    "VAL_LOSS_EVERY",
    "RUN_ID",
    "GRAD_ACCUM_STEPS",
}


def run_check(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(GPU_CHECK), *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------------- gpu_check.sh


def test_gpu_check_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(GPU_CHECK)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_prints_the_exact_commands_and_runs_nothing(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_check("--dry-run", env={"OUT": str(out), "GPU_CHECK_WORK": str(work)})
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert not out.exists() and not work.exists(), "a dry run must not write anything"

    data_line = next(line for line in text.splitlines() if "-m golf_task.data tiny" in line)
    assert f"--out {work / 'data'} --variant sp8192" in data_line
    train_line = next(line for line in text.splitlines() if "--nproc_per_node=1" in line)
    assert re.search(
        r"(torchrun|torch\.distributed\.run) --standalone --nproc_per_node=1 ", train_line
    )
    assert train_line.rstrip().endswith("golf_task/train_gpt.py")
    assert text.index(data_line) < text.index(train_line), "data is built before training"

    # the env the training command gets: the allowed overrides and PYTHONUNBUFFERED only
    words = train_line.split()
    assignments = dict(w.split("=", 1) for w in words[1 : words.index("PYTHONUNBUFFERED=1")])
    assert set(assignments) == ALLOWED
    assert assignments["GRAD_ACCUM_STEPS"] == "8"
    assert assignments["VAL_LOSS_EVERY"] == "0"
    assert 100 <= int(assignments["ITERATIONS"]) <= 1000  # "a few hundred"
    assert 0 < float(assignments["MAX_WALLCLOCK_SECONDS"]) <= 300
    # DATA_PATH/TOKENIZER_PATH are where the data maker puts the sp8192 variant
    layout = DataLayout(work / "data", "sp8192")
    assert assignments["DATA_PATH"] == str(layout.dataset_dir)
    assert assignments["TOKENIZER_PATH"] == str(layout.tokenizer_model)
    # the supervisor's hard timeout wraps both commands; the summary reads what it writes
    assert f"run --timeout <left-20> --log {out / 'train_console.log'} --" in train_line
    assert f"summary --log {out / 'train_console.log'}" in text


def test_dry_run_defaults_out_to_bench_out(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(
        ["bash", str(GPU_CHECK), "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert f"out: {BENCH / 'out'} " in proc.stdout


def test_unknown_argument_is_refused() -> None:
    proc = run_check("--bogus", env={})
    assert proc.returncode == 64
    assert "unknown argument" in proc.stderr


def test_without_cuda_it_fails_early_and_names_what_is_missing(tmp_path: Path) -> None:
    """This box's torch is a CPU build: the real check must stop at once with exit 2."""
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = run_check(
        env={
            "OUT": str(out),
            "GPU_CHECK_WORK": str(tmp_path / "work"),
            "PYTHON": sys.executable,
        }
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.perf_counter() - t0 < 60
    assert "FAIL: no interpreter with torch that sees CUDA" in proc.stdout
    assert "missing: CUDA (torch.cuda.is_available() is False)" in proc.stdout
    assert (out / "env.txt").is_file()
    assert not (tmp_path / "work" / "data").exists(), "no data is built without a GPU"


# ------------------------------------------------------------------------ the supervisor


def test_supervisor_stamps_lines_and_kills_the_whole_tree_at_the_timeout(tmp_path: Path) -> None:
    """The child starts a grandchild in its own session, as torchrun does with its workers."""
    log = tmp_path / "console.log"
    marker = f"sleep-{os.getpid()}-{time.time_ns()}"
    # the grandchild's argv[0] is the marker, so that the test can look for it afterwards
    script = f"echo first; setsid bash -c 'exec -a {marker} sleep 300' & echo second; sleep 300"
    t0 = time.perf_counter()
    rc = gs.supervise(["bash", "-c", script], timeout_s=1.0, log=log, grace_s=2.0)
    assert rc == 124
    assert time.perf_counter() - t0 < 10
    lines = log.read_text().splitlines()
    stamps = [float(gs.STAMP.match(line).group(1)) for line in lines]
    assert stamps == sorted(stamps)
    assert [gs.split_stamp(line)[1] for line in lines][:2] == ["first", "second"]
    assert lines[-1].endswith("gpu_check: exit status 124")
    time.sleep(0.2)
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    assert alive.strip() == "", f"left running: {alive}"


def test_supervisor_passes_the_exit_status_through(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    assert gs.supervise(["bash", "-c", "echo x; exit 3"], timeout_s=30, log=log) == 3
    assert gs.split_stamp(log.read_text().splitlines()[0])[1] == "x"


# ------------------------------------------------------------------------ the log summary


def last(pattern: str, text: str) -> str:
    found = re.findall(pattern, text, flags=re.M)
    assert found, pattern
    return found[-1]


def test_summary_of_a_real_tiny_run(tiny_run) -> None:
    """Each figure equals what the log says, read independently (regexes and golf_task.logs)."""
    text = tiny_run.stdout
    s = gs.summarise(text)
    ref = parse_text(text)
    assert not s.stamped and s.first_train_step_s is None and s.export_s is None
    assert s.world_size == 1 and s.grad_accum_steps == int(tiny_run.env["GRAD_ACCUM_STEPS"])
    assert s.steps == s.iterations == int(tiny_run.env["ITERATIONS"])
    assert s.step_avg_ms == float(last(r"^step:\d+/\d+ train_loss:\S+ \S+ step_avg:(\S+)ms$", text))
    assert s.train_batch_tokens == int(tiny_run.env["TRAIN_BATCH_TOKENS"])
    assert s.tokens_per_s == pytest.approx(s.train_batch_tokens / (s.step_avg_ms / 1000))
    assert s.peak_alloc_mib == int(last(r"^peak memory allocated: (\d+) MiB", text))
    assert s.total_bytes == ref.bytes_total
    assert s.code_bytes == ref.bytes_code and s.model_bytes == ref.bytes_model
    assert s.final_score == last(r"^(\S+_exact val_loss:\S+ val_bpb:\S+)$", text)
    for name, ms in s.eval_times_ms.items():
        assert re.search(rf"^{re.escape(name)} val_loss:.* eval_time:{ms}ms$", text, re.M)
    assert len(s.eval_times_ms) >= 2  # roundtrip and sliding window at least
    block = gs.render(s, {"torch": "2.x"}, 0)
    assert block.startswith("==== gpu_check summary ====")
    assert f"Total submission size {s.artifact_label}): {s.total_bytes:,}" in block
    assert block.rstrip().endswith(f"final score: {s.final_score}")


def test_summary_of_a_run_cut_off_mid_training(tiny_run) -> None:
    """A run the timeout killed: the figures seen so far, None for the rest, no crash."""
    lines = tiny_run.stdout.splitlines()
    cut = max(i for i, line in enumerate(lines) if gs.TRAIN.match(line) and "step:20/" in line)
    stamped = "\n".join(f"[t+{10 + i * 0.5:.3f}] {line}" for i, line in enumerate(lines[: cut + 1]))
    s = gs.summarise(stamped)
    assert s.stamped and s.steps == 20 and s.step_avg_ms is not None
    assert s.first_train_step_s is not None and s.first_train_step_s > 10
    assert s.total_bytes is None and s.final_score is None and s.peak_alloc_mib is None
    block = gs.render(s, {}, 124)
    assert "killed by the check's timeout" in block and "final score: (none)" in block


def test_summary_reads_the_new_export_and_ttt_lines() -> None:
    """Lines in the formats COMMON14 fixes for the new script (written out here, since the
    tiny run above may predate them): TTT's score is the final one, artifact lines quoted."""
    text = "\n".join(
        [
            "[t+1.000] world_size:1 grad_accum_steps:8",
            "[t+2.000] train_batch_tokens:786432 train_seq_len:2048 iterations:300",
            "[t+3.000] warmup_step:1/20",
            "[t+40.000] step:1/300 train_loss:9.0000 train_time:650ms step_avg:650.00ms",
            "[t+100.000] step:100/300 train_loss:5.0000 train_time:65000ms step_avg:650.00ms",
            "[t+150.000] step:170/300 train_loss:4.0000 train_time:110600ms step_avg:650.59ms",
            "[t+151.000] peak memory allocated: 70000 MiB reserved: 72000 MiB",
            "[t+160.000] gptq:calibrated batches:16 hessians:66 time:2000ms",
            "[t+170.000] artifact:pruned codes:12 total:15999000 cap:16000000",
            "[t+170.500] Total submission size int6_int7+zstd: 15999000 bytes",
            "[t+180.000] final_x_sliding_window_exact val_loss:2.00000000 val_bpb:1.10000000",
            "[t+200.000] legal_ttt val_loss:1.9000 val_bpb:1.0900 eval_time:20000ms",
            "[t+200.000] legal_ttt_exact val_loss:1.90000000 val_bpb:1.09000000",
        ]
    )
    s = gs.summarise(text)
    assert s.first_warmup_s == 3.0 and s.first_train_step_s == 40.0
    assert s.last_interval_ms == pytest.approx((110600 - 65000) / 70)
    assert s.tokens_per_s == pytest.approx(786432 / 0.65059)
    assert s.export_s == pytest.approx(19.5)
    assert s.final_score == "legal_ttt_exact val_loss:1.90000000 val_bpb:1.09000000"
    assert s.eval_times_ms == {"legal_ttt": 20000}
    assert any(n.startswith("artifact:pruned") for n in s.notes)
    assert any(n.startswith("gptq:calibrated") for n in s.notes)


@pytest.mark.slow
def test_the_whole_check_runs_on_cpu_through_its_test_hook(tmp_path: Path) -> None:
    """Data build (sp8192), torchrun with 1 process and 8-way accumulation, summary: the
    real pipeline, with the tiny preset added by GPU_CHECK_EXTRA_ENV (the hook's only use)."""
    own = ALLOWED | {"VOCAB_SIZE", "EVAL_STRIDE", "DATA_VARIANT"}
    extra = {k: v for k, v in TINY_CPU_ENV.items() if k not in own}
    extra.update(VOCAB_SIZE="0", EVAL_STRIDE="0", TTT_CHUNK_TOKENS="8192")
    out = tmp_path / "out"
    proc = run_check(
        env={
            "OUT": str(out),
            "GPU_CHECK_WORK": str(tmp_path / "work"),
            # relative to the repo (the check's cwd): training runs elsewhere, so the check
            # must make it absolute
            "PYTHON": os.path.relpath(sys.executable, REPO),
            "GPU_CHECK_CPU": "1",
            "GPU_CHECK_ITERATIONS": "4",
            "GPU_CHECK_EXTRA_ENV": " ".join(f"{k}={v}" for k, v in extra.items()),
        },
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    log = (out / "train_log.txt").read_text()
    assert summary["world_size"] == 1 and summary["grad_accum_steps"] == 8
    assert summary["steps"] == 4 and summary["step_avg_ms"] > 0
    assert summary["first_train_step_s"] > 0 and summary["export_s"] is not None
    assert summary["total_bytes"] == int(last(r"^Total submission size \S+: (\d+) bytes$", log))
    assert summary["final_score"] == last(r"^(\S+_exact val_loss:\S+ val_bpb:\S+)$", log)
    assert summary["env"]["torch"].startswith("2.")
    assert "fa3" in summary["env"] and "data_build_s" in summary["env"]
    assert "TEST MODE" in proc.stdout
    printed = (out / "summary.txt").read_text()
    assert printed in proc.stdout and "ms/step (step_avg of the last train line): " in printed
    layout = DataLayout(tmp_path / "work" / "data", "sp8192")
    assert f"tokenizer_path={layout.tokenizer_model}" in log


# ------------------------------------------------------------------- the ablation harness

# The switches COMMON14 names; each must be a row of the ablation.
COMMON14_SWITCHES = {
    "LEAKY_SLOPE", "LN_SCALE", "ORTHO_INIT", "VE_LAYERS", "XSA_LAST_N", "SMEAR_BOS",
    "PARALLEL_FROM", "LOOP_END", "POLAR_NS", "MIN_LR", "GPTQ", "CLIP_SDS_ATTN",
    "CLIP_SDS_MLP", "CLIP_SDS_EMBED", "TTT", "QK_GAIN_INIT",
}  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> list[ga.Technique]:
    return ga.techniques(int(ga.BENCH_SIZE["NUM_LAYERS"]))


def test_script_defaults_read_from_source_equal_the_dataclass(train_gpt: ModuleType) -> None:
    from dataclasses import fields

    defaults = ga.script_defaults(ga.SCRIPT)
    hp = train_gpt.Hyperparameters()
    assert {f.name.upper() for f in fields(hp)} == set(defaults)
    for f in fields(hp):
        assert defaults[f.name.upper()] == ga.env_value(getattr(hp, f.name)), f.name


def test_every_common14_switch_is_ablated_and_known_to_the_script(
    rows: list[ga.Technique], train_gpt: ModuleType
) -> None:
    switched = {k for t in rows for k in t.off}
    assert switched >= COMMON14_SWITCHES
    fields = {name.upper() for name in train_gpt.Hyperparameters.__dataclass_fields__}
    missing = {k for t in rows for k in {**t.on, **t.off} if k not in fields}
    assert not missing, f"switches the script does not read: {missing}"
    assert all(t.in_script for t in rows)


def test_bench_envs_are_valid_configurations(
    rows: list[ga.Technique], train_gpt: ModuleType, tmp_path: Path
) -> None:
    """The baseline and every row's runs parse, and their layer indices fit the bench depth."""
    jobs = ga.ablation_jobs(tmp_path, "sp1024", 30, [1, 2], rows, rows)
    layers = int(ga.BENCH_SIZE["NUM_LAYERS"])
    for job in jobs:
        hp = train_gpt.Hyperparameters.from_env(job.env)
        assert hp.num_layers == layers and hp.max_wallclock_seconds == 30
        assert all(0 <= i < layers for i in hp.layers_of(hp.ve_layers))
        assert hp.xsa_last_n <= layers and hp.parallel_from < layers
        assert hp.loop_end == -1 or 0 <= hp.loop_start <= hp.loop_end < layers
    base = train_gpt.Hyperparameters.from_env(jobs[0].env)
    assert base.ttt and base.xsa_last_n == layers and base.loop_end >= 0
    assert base.parallel_from >= 0 and base.gptq


def test_on_values_are_the_scripts_defaults_where_depth_does_not_matter(
    rows: list[ga.Technique],
) -> None:
    defaults = ga.script_defaults(ga.SCRIPT)
    depth = {"VE_LAYERS", "XSA_LAST_N", "PARALLEL_FROM", "LOOP_END", "LOOP_START"}
    for tech in rows:
        assert tech.default_on == any(not ga.same(defaults[k], v) for k, v in tech.off.items())
        for k, v in tech.on.items():
            if tech.default_on and k not in depth:
                assert ga.same(defaults[k], v), (tech.key, k)
        assert any(not ga.same(tech.on.get(k), v) for k, v in tech.off.items()), tech.key


def test_each_row_changes_only_its_own_switches(rows: list[ga.Technique], tmp_path: Path) -> None:
    jobs = ga.ablation_jobs(tmp_path, "sp1024", 30, [7], rows, rows)
    base = jobs[0].env
    assert [j.label for j in jobs] == ["baseline"] + [t.key for t in rows if not t.eval_only]
    for job, tech in zip(jobs[1:], [t for t in rows if not t.eval_only], strict=True):
        changed = {k for k in base.keys() | job.env.keys() if base.get(k) != job.env.get(k)}
        assert changed <= set(tech.off) | set(tech.on) | {"TTT"}, (tech.key, changed)
        assert job.env["TTT"] == "0" and job.env["SEED"] == "7"
        assert job.side == ("off" if tech.default_on else "on")
    # --ttt-everywhere keeps TTT on in every run
    every = ga.ablation_jobs(tmp_path, "sp1024", 30, [7], rows, rows, ttt_everywhere=True)
    assert {j.env["TTT"] for j in every} == {"1"}


def test_compare_runs_both_scripts_at_the_same_size_and_data(tmp_path: Path) -> None:
    old = tmp_path / "old.py"
    jobs = ga.compare_jobs(tmp_path, "sp1024", 45, [1, 2], old)
    assert [(j.label, j.seed) for j in jobs] == [("new", 1), ("old", 1), ("new", 2), ("old", 2)]
    new_env, old_env = jobs[0].env, jobs[1].env
    shared = ga.base_env(tmp_path, "sp1024", 45, 1)
    for key, value in shared.items():
        if key not in ga.old_scale(6):
            assert new_env[key] == old_env[key] == value, key
    assert jobs[1].script == old and jobs[0].script == ga.SCRIPT
    assert "TTT" not in old_env and "LEAKY_SLOPE" not in old_env  # old keeps its own defaults


def test_table_means_deltas_and_the_ttt_row(rows: list[ga.Technique]) -> None:
    """The table arithmetic, on results written out here (no training)."""
    pre = "final_int6_zstd_sliding_window_exact"

    def res(label: str, side: str, seed: int, final: float, sliding: float) -> ga.Result:
        return ga.Result(label, side, seed, 0, 1.0, steps=100 + seed, bpb=final,
                         scores={pre: sliding, "legal_ttt_exact": final})  # fmt: skip

    leaky = next(t for t in rows if t.key == "LEAKY_SLOPE")
    ttt = next(t for t in rows if t.key == "TTT")
    results = [
        res("baseline", "on", 1, 2.00, 2.10),
        res("baseline", "on", 2, 2.02, 2.12),
        res("LEAKY_SLOPE", "off", 1, 9.9, 2.20),
        res("LEAKY_SLOPE", "off", 2, 9.9, 2.24),
    ]
    table = ga.ablation_table(results, [leaky, ttt]).splitlines()
    leaky_row = next(r for r in table if r.startswith(f"| {leaky.name} "))
    cells = [c.strip() for c in leaky_row.strip("|").split("|")]
    assert cells[2:] == ["2.1100", "2.2200", "+0.1100", "101/102", "101/102"]
    ttt_row = next(r for r in table if r.startswith(f"| {ttt.name} "))
    cells = [c.strip() for c in ttt_row.strip("|").split("|")]
    assert cells[2:5] == ["2.0100", "2.1100", "+0.1000"]
    final = ga.ablation_table(results, [leaky], ttt_everywhere=True)
    assert "| 2.0100 | 9.9000 | +7.8900 |" in final


def test_scheduler_runs_two_at_a_time_in_order_and_kills_overruns(tmp_path: Path) -> None:
    """A stand-in script (not train_gpt.py: a real run per job would take minutes) that
    prints the script's score line and records when it ran."""
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(
        "import os, sys, time\n"
        "t0 = time.time(); time.sleep(float(os.environ['NAP']))\n"
        "print('step:5/9 val_loss:1.0 val_bpb:2.0 train_time:10ms step_avg:2.00ms')\n"
        "print(f\"final_x_sliding_window_exact val_loss:1.0 val_bpb:{os.environ['BPB']}\")\n"
        "open('span', 'w').write(f'{t0} {time.time()}')\n"
    )
    naps = {"a": "0.5", "b": "0.5", "c": "0.5", "slow": "30"}
    jobs = [ga.Job(k, "on", 1, stand_in, {"NAP": v, "BPB": "1.25"}) for k, v in naps.items()]
    results = ga.run_jobs(jobs, tmp_path / "runs", parallel=2, timeout_s=3)
    by = {r.label: r for r in results}
    assert by["a"].bpb == 1.25 and by["a"].steps == 5 and by["a"].rc == 0
    assert by["slow"].bpb is None and by["slow"].rc != 0 and by["slow"].wall_s < 10
    spans = sorted(
        tuple(map(float, (d / "span").read_text().split()))
        for d in (tmp_path / "runs").iterdir()
        if (d / "span").exists()
    )
    for i, (start, _) in enumerate(spans):  # never three at once
        assert sum(1 for s, e in spans if s <= start < e) <= 2, i


def test_ablate_cli_dry_run_lists_every_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "golf_cpu.py"), "--ablate", "--dry-run",
         "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    n_rows = sum(1 for t in ga.techniques(6) if not t.eval_only)
    assert len(proc.stdout.splitlines()) == 2 * (1 + n_rows)
    assert f"{2 * (1 + n_rows)} runs, 2 at a time, 90 s each" in proc.stderr
    assert not (tmp_path / "d").exists(), "a dry run builds no data"
