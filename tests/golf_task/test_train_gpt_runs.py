"""train_gpt.py end to end: the tiny CPU run, a 2-process gloo run, the full-config size."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import torch

from golf_task.presets import tiny_env

# The competition baseline's line shapes (see the brief and golf_fixtures/cpu_smoke).
LINE_KINDS = {
    "train": re.compile(
        r"step:\d+/\d+ train_loss:\d+\.\d{4} train_time:\d+ms step_avg:\d+\.\d{2}ms"
    ),
    "val": re.compile(
        r"step:\d+/\d+ val_loss:\d+\.\d{4} val_bpb:\d+\.\d{4} train_time:\d+ms step_avg:\d+\.\d{2}ms"
    ),
    "stop": re.compile(r"stopping_early: wallclock_cap train_time:\d+ms step:\d+/\d+"),
    "peak": re.compile(r"peak memory allocated: \d+ MiB reserved: \d+ MiB"),
    "raw_size": re.compile(r"Serialized model: \d+ bytes"),
    "code": re.compile(r"Code size: \d+ bytes"),
    "size": re.compile(r"Serialized model \S+: \d+ bytes"),
    "total": re.compile(r"Total submission size \S+: \d+ bytes"),
    "roundtrip": re.compile(r"final_\S+_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:\d+ms"),
    "roundtrip_exact": re.compile(
        r"final_\S+_roundtrip_exact val_loss:\d+\.\d{8} val_bpb:\d+\.\d{8}"
    ),
    "sliding": re.compile(
        r"final_\S+_sliding_window val_loss:\S+ val_bpb:\S+ stride:64 eval_time:\d+ms"
    ),
    "sliding_exact": re.compile(
        r"final_\S+_sliding_window_exact val_loss:\d+\.\d{8} val_bpb:\d+\.\d{8}"
    ),
    "hparams": re.compile(r"Hyperparameters:"),
    "world": re.compile(r"world_size:\d+ grad_accum_steps:\d+"),
    "params": re.compile(r"model_params:\d+"),
    "ema": re.compile(r"ema:applying EMA weights"),
    "prequant": re.compile(r"pre-quantization post-ema val_loss:\S+ val_bpb:\S+ eval_time:\d+ms"),
    "gptq": re.compile(r"gptq:calibrated batches:\d+ hessians:\d+ time:\d+ms \S+"),
    "fits": re.compile(r"artifact:fits total:\d+ cap:16000000"),
    "ttt": re.compile(r"legal_ttt val_loss:\S+ val_bpb:\S+ eval_time:\d+ms"),
    "ttt_exact": re.compile(r"legal_ttt_exact val_loss:\d+\.\d{8} val_bpb:\d+\.\d{8}"),
}
REQUIRED = [
    "hparams", "params", "world", "train", "val", "stop", "peak", "ema", "prequant", "gptq",
    "raw_size", "code", "fits", "size", "total", "roundtrip", "roundtrip_exact", "sliding",
    "sliding_exact", "ttt", "ttt_exact",
]  # fmt: skip


def kinds(lines: list[str]) -> list[str]:
    """The required line kinds in order of first appearance."""
    seen: list[str] = []
    for line in lines:
        for kind, pattern in LINE_KINDS.items():
            if pattern.fullmatch(line) and kind not in seen:
                seen.append(kind)
    return [k for k in seen if k in REQUIRED]


def number(text: str, pattern: str) -> float:
    matches = re.findall(pattern, text, flags=re.MULTILINE)
    assert matches, pattern
    return float(matches[-1])


def test_tiny_run_prints_every_expected_line(tiny_run) -> None:
    """The preset stops on ITERATIONS, so only the wall-clock stop line is absent here (the
    gloo run below is stopped by the cap and shows it)."""
    lines = tiny_run.stdout.splitlines()
    assert lines[0] == f"logs/{tiny_run.run_id}.txt"
    assert kinds(lines) == [k for k in REQUIRED if k != "stop"]
    last_step = f"step:{tiny_run.env['ITERATIONS']}/{tiny_run.env['ITERATIONS']} val_loss:"
    assert any(line.startswith(last_step) for line in lines)
    counts = Counter(k for line in lines for k, p in LINE_KINDS.items() if p.fullmatch(line))
    for once in ("peak", "code", "size", "total", "roundtrip_exact", "sliding_exact", "ttt_exact"):
        assert counts[once] == 1, once
    assert counts["train"] >= 5
    # the last score line (the one parsers keep) is the score-first TTT one
    scores = [ln for ln in lines if ln.startswith(("final_", "legal_ttt"))]
    assert scores[-1].startswith("legal_ttt_exact ")
    from golf_task.logs import parse_file

    summary = parse_file(tiny_run.log_path)
    assert summary.val_bpb == number(
        tiny_run.stdout, r"^legal_ttt_exact val_loss:\S+ val_bpb:(\S+)$"
    )
    # TTT adapted on every chunk but the last (each is scored first), inside its time budget
    ttt = re.search(r"^ttt:adapted_chunks:(\d+)/(\d+) max_seconds:400$", tiny_run.stdout, re.M)
    assert ttt and int(ttt.group(1)) == int(ttt.group(2)) - 1 >= 4
    # the preset turns depth recurrence on part-way (a fixed step count: 36% of 50 steps)
    loop = [ln for ln in lines if ln.startswith("layer_loop:enabled")]
    assert loop == ["layer_loop:enabled step:18 frac:0.360 order:[0, 1, 2, 1, 2, 3]"]


def test_tiny_run_log_file_mirrors_stdout_after_the_code(tiny_run) -> None:
    code = tiny_run.script_path.read_text(encoding="utf-8")
    log = tiny_run.log_text
    assert log.startswith(code), "the log starts with the exact source that ran"
    console = tiny_run.stdout.splitlines()[1:]  # the first stdout line is the log path
    log_lines = log[len(code) :].splitlines()
    assert [ln for ln in log_lines if ln in set(console)] == console


def test_tiny_run_scores_are_finite_and_learned_something(tiny_run) -> None:
    out = tiny_run.stdout
    final = r"^final_\S+_roundtrip_exact val_loss:(\S+) val_bpb:\S+$"
    loss = number(out, final)
    bpb = number(out, r"^final_\S+_roundtrip_exact val_loss:\S+ val_bpb:(\S+)$")
    sliding = number(out, r"^final_\S+_sliding_window_exact val_loss:\S+ val_bpb:(\S+)$")
    prequant = number(out, r"^pre-quantization post-ema val_loss:\S+ val_bpb:(\S+) ")
    assert all(math.isfinite(v) for v in (loss, bpb, sliding, prequant))
    assert loss < math.log(1024) - 1.0, "well below a uniform guess over 1,024 pieces"
    assert abs(bpb - prequant) < 0.1, "the int6/int5 round trip costs little"
    assert abs(sliding - bpb) < 0.1


def test_tiny_run_sizes_add_up_and_the_artifact_is_what_was_scored(
    tiny_run, train_gpt: ModuleType
) -> None:
    out = tiny_run.stdout
    code = number(out, r"^Code size: (\d+) bytes$")
    model = number(out, r"^Serialized model \S+: (\d+) bytes$")
    total = number(out, r"^Total submission size \S+: (\d+) bytes$")
    # the code counted is the self-extracting form a submission ships (PACK_CODE=1)
    packed = train_gpt.pack_source(tiny_run.script_path.read_text(encoding="utf-8"))
    assert code == len(packed.encode("utf-8")) < tiny_run.script_path.stat().st_size / 2
    assert model == tiny_run.ptz_path.stat().st_size
    assert total == code + model
    # Reload the .ptz ourselves and re-score it: the logged round-trip score is this one.
    env = {**tiny_run.env, "RUN_ID": "x"}
    args = train_gpt.Hyperparameters.from_env(env)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=env["TOKENIZER_PATH"])
    args.bos_id = sp.bos_id()  # BOS_ID=-1: the tokenizer's, as the script resolves it
    model_ = train_gpt.GPT(args)
    blob = tiny_run.ptz_path.read_bytes()
    model_.load_state_dict(train_gpt.load_export(blob), strict=True)
    assert train_gpt.export_header(blob)["meta"] == {"looped": True}, "trained with the loop on"
    model_.looped = True
    model_.eval()
    luts = train_gpt.build_byte_luts(sp, args.vocab_size)
    val = train_gpt.load_val_tokens(os.path.join(env["DATA_PATH"], "fineweb_val_*.bin"))
    torch.set_num_threads(1)
    loss, bpb = train_gpt.evaluate(model_.logits, val, luts, args, 0, 1, torch.device("cpu"))
    logged = number(out, r"^final_\S+_roundtrip_exact val_loss:\S+ val_bpb:(\S+)$")
    assert bpb == pytest.approx(logged, abs=2e-6)


def test_two_process_gloo_run_without_run_id_scores_and_writes_one_artifact(
    tiny_run, tiny_data_dir, tmp_path
) -> None:
    """The README's plain torchrun command, no RUN_ID: every rank must agree on one run id
    (each drawing its own uuid made rank 1 read a .ptz nobody wrote, and die unscored)."""
    script = tmp_path / "train_gpt.py"
    script.write_bytes(tiny_run.script_path.read_bytes())
    env = tiny_env(tiny_data_dir, MAX_WALLCLOCK_SECONDS="2", TRAIN_LOG_EVERY="5")
    assert "RUN_ID" not in env
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    base = {k: v for k, v in os.environ.items() if k != "RUN_ID"}
    proc = subprocess.run(
        [*cmd, str(script)],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    # where each rank was when one died (a rank's SIGABRT was seen once on a loaded CI box)
    logs = "".join(
        f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
        for p in tmp_path.glob("logs/*.txt")
    )
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{proc.stdout[-1500:]}{logs}"
    lines = proc.stdout.splitlines()
    assert kinds(lines) == REQUIRED, "stopped by the wall-clock cap, hence a stop line"
    assert [k for k in kinds(lines) if k != "stop"] == kinds(tiny_run.stdout.splitlines())
    assert "world_size:2 grad_accum_steps:1" in lines
    assert sum(ln.startswith("Total submission size") for ln in lines) == 1, "rank 0 only"
    bpb = number(proc.stdout, r"^legal_ttt_exact val_loss:\S+ val_bpb:(\S+)$")
    assert math.isfinite(bpb) and bpb < 5
    run_id = Path(lines[0]).stem
    assert len(run_id) == 36, "a fresh uuid"
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == [f"{run_id}.ptz", f"{run_id}.txt"], "one log and one artifact, one run id"


def _run_script(script: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _capped_run(tiny_data_dir: Path, tmp_path: Path, script: Path, cap: int):
    env = tiny_env(tiny_data_dir, RUN_ID="cap", ITERATIONS="5", ARTIFACT_CAP=str(cap))
    env.update(PREQUANT_EVAL="0", EVAL_STRIDE="0", TTT="0", TRAIN_LOG_EVERY="0")
    return _run_script(script, tmp_path, env)


def test_an_artifact_over_the_cap_is_pruned_to_fit_or_gets_no_score(
    tiny_run, tiny_data_dir, tmp_path
) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_bytes(tiny_run.script_path.read_bytes())
    # a cap nothing can meet: said in the log, no score line, exit status 3
    refused = _capped_run(tiny_data_dir, tmp_path, script, 1000)
    assert refused.returncode == 3, refused.stderr[-3000:]
    out = refused.stdout
    assert re.search(r"^artifact:over_cap total:\d+ cap:1000 pruning", out, re.M)
    assert re.search(r"^artifact:over_cap total:\d+ cap:1000 does not fit", out, re.M)
    assert not re.search(r"^(final_|legal_ttt|Total submission size)", out, re.M)
    # a cap 2% of the model under its natural size: +-1 codes pruned until it fits
    total = int(number(out, r"^artifact:over_cap total:(\d+) cap:1000 pruning"))
    code = int(number(out, r"^Code size: (\d+) bytes$"))
    cap = total - (total - code) // 50
    fitted = _capped_run(tiny_data_dir, tmp_path, script, cap)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    out = fitted.stdout
    pruned = re.search(
        rf"^artifact:pruned codes:(\d+) fraction:\S+ total:(\d+) cap:{cap}$", out, re.M
    )
    assert pruned and int(pruned.group(1)) > 0
    logged_total = int(number(out, r"^Total submission size \S+: (\d+) bytes$"))
    assert logged_total == int(pruned.group(2)) <= cap
    assert logged_total == code + (tmp_path / "logs" / "cap.ptz").stat().st_size
    assert re.search(r"^final_\S+_roundtrip_exact val_loss:\S+ val_bpb:\S+$", out, re.M)


def test_a_run_without_its_diagnostic_scores_scores_only_its_export(
    tiny_run, tiny_data_dir, tmp_path
) -> None:
    """``FINAL_VAL=0 PREQUANT_EVAL=0`` (what helm's screens set): one pass over the
    validation set, the exported model's, and the last step's training time still counted."""
    env = tiny_env(tiny_data_dir, RUN_ID="one", ITERATIONS="4", TRAIN_LOG_EVERY="1")
    env.update(FINAL_VAL="0", PREQUANT_EVAL="0", EVAL_STRIDE="0", TTT="0")
    r = _run_script(tiny_run.script_path, tmp_path, env)
    assert r.returncode == 0, r.stderr[-3000:]
    scored = [line.split()[0] for line in r.stdout.splitlines() if "val_loss:" in line]
    assert scored == ["final_int6_zstd_roundtrip", "final_int6_zstd_roundtrip_exact"]
    last_train_ms = number(r.stdout, r"^step:4/4 train_loss:\S+ train_time:(\d+)ms")
    calib_ms = number(r.stdout, r"^gptq:calibrated .* time:(\d+)ms ")
    total_ms = number(r.stdout, r"^gptq:calibrated .* train_plus_calibration:(\d+)ms$")
    assert total_ms - calib_ms >= last_train_ms - 1  # the last stretch of training counted


@pytest.mark.slow
def test_full_default_artifact_fits_16mb(train_gpt: ModuleType) -> None:
    """The full default configuration's artifact (packed code + compressed model) measured.

    The weights are the default initialisation, not trained ones (no H100 here): orthogonal
    matrices, whose entries are close to Gaussian, quantized with the default clip of k row
    standard deviations. With that clip the bytes per code depend on the shape of the weight
    distribution, not its scale; trained weights are heavier-tailed, which puts more codes
    near zero and compresses better, so this is an upper estimate (golf_task/README.md).
    Round-to-nearest stands in for GPTQ (no calibration data): GPTQ moves codes, not scales.
    """
    args = train_gpt.Hyperparameters.from_env({"VOCAB_SIZE": "8192"})  # the sp8192 default
    torch.manual_seed(0)
    state = train_gpt.GPT(args).state_dict()
    n_params = sum(t.numel() for t in state.values())
    quantized = sum(t.numel() for n, t in state.items() if train_gpt.quant_bits_for(n, t, args))
    assert 30_000_000 < n_params < 40_000_000, "the default is a full-size model"
    assert quantized > 0.99 * n_params
    source = Path(train_gpt.__file__).read_text(encoding="utf-8")
    code_bytes = len(train_gpt.pack_source(source).encode("utf-8"))
    assert code_bytes < 30_000
    blob, raw = train_gpt.export_model(state, args)
    total = code_bytes + len(blob)
    assert total < 16_000_000, f"{total:,} bytes"
    assert raw >= quantized, "one byte per code before compression"
    assert len(blob) < 0.5 * raw, "the SD clip makes codes cheap: under 4 bits each"
    back = train_gpt.load_export(blob)
    assert back.keys() == state.keys()
