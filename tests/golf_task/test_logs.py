"""The log parser against the real records' logs and the format variants they exhibit."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from golf_task.logs import BUDGET_LABEL, LogParser, main, parse_file, parse_text

EXPECTED_KEYS = (
    "val_bpb",
    "val_loss",
    "score_line",
    "bytes_total",
    "total_label",
    "bytes_code",
    "bytes_model",
    "stop_step",
    "train_time_ms",
)
REPO = Path(__file__).resolve().parents[2]


def _fixture_path(golf_fixtures: Path, fixture_log: tuple) -> Path:
    rec, log, _ = fixture_log
    return golf_fixtures / "records" / rec / log


def _restricted(summary_json: dict) -> dict:
    return {k: summary_json[k] for k in EXPECTED_KEYS if k in summary_json}


def test_fixture_log_parses_to_expected(golf_fixtures: Path, fixture_log: tuple) -> None:
    """Every expected field equal, and no expected-named field the reference lacks."""
    got = _restricted(parse_file(_fixture_path(golf_fixtures, fixture_log)).to_json())
    assert got == fixture_log[2]


def test_fixture_log_streamed_in_random_chunks_matches_whole(
    golf_fixtures: Path, fixture_log: tuple
) -> None:
    """Chunks cut anywhere (mid-line, mid-UTF-8) give exactly the whole-file summary."""
    raw = _fixture_path(golf_fixtures, fixture_log).read_bytes()
    rng = random.Random(len(raw))
    parser = LogParser()
    pos = 0
    while pos < len(raw):
        n = rng.choice((1, 2, 3, 7, 64, 333, 4096, 65536))
        parser.feed(raw[pos : pos + n])
        pos += n
    assert parser.finish() == parse_text(raw)


def test_cli_json_matches_expected(
    golf_fixtures: Path, expected: dict, capsys: pytest.CaptureFixture
) -> None:
    paths = {
        str(golf_fixtures / "records" / rec / log): fields
        for rec, entry in expected["records"].items()
        for log, fields in entry["logs"].items()
    }
    assert main([*paths, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == set(paths)
    for path, fields in paths.items():
        assert _restricted(out[path]) == fields, path


def test_cli_runs_as_module_and_reports_unreadable_files(golf_fixtures: Path) -> None:
    log = golf_fixtures / "records" / "2026-03-17_NaiveBaseline" / "train.log"
    ok = subprocess.run(
        [sys.executable, "-m", "golf_task.logs", str(log)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert ok.returncode == 0
    assert "final_int8_zlib_roundtrip_exact" in ok.stdout and "1.2243657" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "golf_task.logs", "--json", str(log) + ".missing"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "cannot read" in bad.stderr


def test_import_stays_light() -> None:
    """helm imports the parser on every CLI call: no torch, numpy or scipy behind it."""
    code = (
        "import sys, golf_task.logs; "
        "print(sorted(m for m in ('torch', 'numpy', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- cpu smoke logs


@pytest.mark.parametrize(
    "name",
    ["logs_cpu_smoke_compile.txt", "stdout_1proc.log", "stdout_torchrun2_gloo.log"],
)
def test_cpu_smoke_logs_of_the_baseline_format(golf_fixtures: Path, name: str) -> None:
    text = (golf_fixtures / "cpu_smoke" / name).read_text()
    s = parse_text(text)
    last_exact = [
        ln for ln in text.splitlines() if ln.startswith("final_int8_zlib_roundtrip_exact")
    ]
    assert s.score_line == "final_int8_zlib_roundtrip_exact"
    assert s.val_bpb == float(last_exact[-1].split("val_bpb:")[1])
    assert s.total_label == "int8+zlib" and s.bytes_total == s.bytes_code + s.bytes_model
    # the run finished its iterations: no wallclock stop, stop step is the last step
    assert not s.wallclock_stopped
    assert s.stop_step == s.step == s.total_steps == 20
    assert s.eta_s == 0.0
    assert s.hyperparameters["seed"] == "1337" and s.seed == 1337


def test_progress_while_streaming_a_wallclock_stop(golf_fixtures: Path) -> None:
    lines = (golf_fixtures / "cpu_smoke" / "stdout_wallclock_stop.log").read_text().splitlines()
    parser = LogParser()
    seen_steps = []
    for line in lines:
        parser.feed(line + "\n")
        s = parser.summary
        if line.startswith("step:50/"):
            assert (s.step, s.total_steps, s.train_loss) == (50, 100000, 5.6220)
            assert (s.train_time_ms, s.step_avg_ms) == (1754, 35.09)
            # the wallclock (3 s) ends it long before 100000 steps
            assert s.eta_s == pytest.approx(3.0 - 1.754)
            assert not s.wallclock_stopped and s.val_bpb is None
        if line.startswith("step:85/") and "val_bpb" in line:
            assert (s.last_val_loss, s.last_val_bpb) == (5.2671, 3.3594)
        if s.step is not None:
            seen_steps.append(s.step)
    s = parser.finish()
    assert seen_steps == sorted(seen_steps)
    assert s.wallclock_stopped and s.eta_s == 0.0
    assert (s.stop_step, s.train_time_ms) == (85, 3008)
    assert s.val_bpb == 3.35943777 and s.eval_time_ms == 115


def test_new_family_progress_in_minutes(golf_fixtures: Path) -> None:
    """`S/N train_loss: x train_time: 2.4m tok/s: N` lines feed the live progress too."""
    path = golf_fixtures / "records/2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2"
    text = (path / "train_seed42.log").read_text()
    start = text.index("\n1500/20000 train_loss") + 1
    head = text[: text.index("\n", start) + 1]
    s = parse_text(head)
    line = next(ln for ln in head.splitlines() if ln.startswith("1500/20000"))
    minutes = float(line.split("train_time:")[1].split("m")[0])
    assert (s.step, s.total_steps) == (1500, 20000)
    assert s.train_time_ms == pytest.approx(minutes * 60000)
    assert s.step_avg_ms == pytest.approx(minutes * 60000 / 1500)
    assert s.hyperparameters["seed"] == "42" and s.hyperparameters["max_wallclock_seconds"]
    assert s.eta_s is not None and 0 < s.eta_s <= 600 - minutes * 60
    assert s.val_bpb is None and s.bytes_total is None


def test_timestamp_prefixes_change_nothing(golf_fixtures: Path) -> None:
    raw = (
        golf_fixtures / "records/2026-04-13_VarLenAttn_PhasingTTT2000/logs/train0.txt"
    ).read_text()
    assert all(ln.split(" ", 1)[0].replace(".", "").isdigit() for ln in raw.splitlines() if ln)
    stripped = "\n".join(ln.split(" ", 1)[1] if " " in ln else "" for ln in raw.splitlines())
    with_ts, without = parse_text(raw), parse_text(stripped + "\n")
    assert with_ts == without
    assert with_ts.hyperparameters["seed"] == "0"
    assert with_ts.eval_time_ms == 500100  # total_eval_time:500.1s
    assert with_ts.bytes_code == 28599 and with_ts.bytes_code_raw == 139831


def test_concatenated_runs_reset_progress_but_keep_last_score(golf_fixtures: Path) -> None:
    first = (golf_fixtures / "cpu_smoke" / "stdout_wallclock_stop.log").read_text()
    second = (golf_fixtures / "cpu_smoke" / "stdout_1proc.log").read_text()
    header_and_steps = second[: second.index("step:3/20")]
    s = parse_text(first + header_and_steps)
    assert s.val_bpb == 3.35943777  # the first run's score is still the last score line
    assert not s.wallclock_stopped and s.step == 2 and s.total_steps == 20
    assert s.eval_time_ms is None  # eval time belongs to the run in progress
    s = parse_text(first + second)
    assert s.val_bpb == 4.00887793 and s.stop_step == 20 and s.eval_time_ms == 114


def test_mixedquant_three_runs_eval_time_is_the_last_runs(golf_fixtures: Path) -> None:
    path = golf_fixtures / "records/2026-03-19_MixedQuant_Int6Int8_SlidingWindow/train.log"
    text = path.read_text()
    last_run = text[text.rindex("stopping_early") :]
    evals = [int(x.split("ms")[0]) for x in last_run.split("eval_time:")[1:]]
    assert parse_file(path).eval_time_ms == sum(evals)


# ---------------------------------------------------------------------------- variants


def test_last_score_line_of_any_family_wins() -> None:
    text = (
        "final_int8_zlib_roundtrip_exact val_loss:2.07000000 val_bpb:1.22000000\n"
        "legal_ttt val_loss:1.9 val_bpb:1.12 eval_time:400000ms\n"
        "ttt_sliding:done val_loss=1.0 val_bpb=0.5 elapsed=1s\n"
        "quantized_sliding_window val_loss=2.8 val_bpb=1.085 eval_time:84115ms\n"
        "final_eval_mode val_bpb:0.1\n"
        "diagnostic quantized val_loss:2.7 val_bpb:1.0\n"
    )
    s = parse_text(text)
    assert (s.score_line, s.val_loss, s.val_bpb) == ("quantized_sliding_window", 2.8, 1.085)
    assert s.eval_time_ms == 400000 + 84115


def test_echoed_source_is_never_a_score() -> None:
    """A script echoing itself into its log mentions every metric name, in f-strings."""
    echo = (
        '"""a training script"""\n'
        "import os\n"
        'log(f"final_{label}_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")\n'
        "final_echo val_loss:{x} val_bpb:{y}\n"
        "Total submission size int8: 17 bytes\n"
    ) + ("=" * 100 + "\n")
    run = (
        "step:1/2 train_loss:3.0 train_time:5ms step_avg:5.00ms\n"
        "final_int8_zlib_roundtrip_exact val_loss:2.50000000 val_bpb:1.50000000\n"
    )
    assert parse_text(echo.replace("=" * 100 + "\n", "")).val_bpb is None
    assert parse_text(echo).bytes_total is None
    s = parse_text(echo + run)
    assert (s.val_bpb, s.step, s.bytes_total) == (1.5, 1, None)
    # even without the echo heuristic (no docstring first), f-string lines never score
    body = "\n".join(echo.splitlines()[2:4]) + "\n"
    assert parse_text(body).val_bpb is None


def test_our_own_script_source_parses_to_nothing() -> None:
    script = REPO / "golf_task" / "train_gpt.py"
    assert script.is_file(), "golf_task/train_gpt.py is the script whose logs we parse"
    source = script.read_text()
    s = parse_text(source)
    assert (s.val_bpb, s.bytes_total, s.bytes_model, s.step) == (None, None, None, None)


def test_unlabeled_totals_are_raw_sizes_not_the_artifact() -> None:
    s = parse_text("Serialized model: 67224983 bytes\nTotal submission size: 67272625 bytes\n")
    assert (s.bytes_total, s.total_label, s.bytes_model) == (None, None, None)
    s = parse_text(
        "Total submission size: 9 bytes\nTotal submission size int6+zstd: 7 bytes\n"
        "budget:15993853/16000000 (15.99/16.00MB) FITS\n"
    )
    assert (s.bytes_total, s.total_label) == (15993853, BUDGET_LABEL)


def test_code_size_prefers_compressed() -> None:
    s = parse_text("Code size (compressed): 31999 bytes\nCode size: 157868 bytes\n")
    assert s.bytes_code == 31999
    s = parse_text("Code size (uncompressed): 157868 bytes\n")
    assert (s.bytes_code, s.bytes_code_raw) == (None, 157868)


def test_stopping_early_with_spaces_and_progress_lines_that_are_not_scores() -> None:
    s = parse_text(
        "1/20000 train_loss: 9.0089 train_time: 0.0m tok/s: 16371725\n"
        "  ttt_chunk [1/1893] bpb=1.161909 time=0.5s\n"
        "ttp: b778/782 bl:2.7852 bb:1.1142 rl:2.7852 rb:1.1142 dl:7961-8997 gd:0\n"
        "warmup_step: 20/20\n"
        "stopping_early: wallclock_cap train_time: 588136ms step: 4986/20000\n"
    )
    assert (s.stop_step, s.train_time_ms, s.total_steps) == (4986, 588136, 20000)
    assert s.wallclock_stopped and s.val_bpb is None


def test_partial_lines_are_not_read_until_complete() -> None:
    parser = LogParser()
    parser.feed(b"final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.2")
    assert parser.summary.val_bpb is None
    parser.feed(b"2436570\nstep:7/9 train_lo")
    assert parser.summary.val_bpb == 1.2243657 and parser.summary.step is None
    parser.feed("ss:2.5 train_time:70ms step_avg:10.00ms")
    assert parser.summary.step is None
    s = parser.finish()  # a progress line cut at the end still counts
    assert (s.step, s.train_loss) == (7, 2.5)


def test_a_score_line_cut_at_the_end_of_the_stream_is_not_a_score() -> None:
    s = parse_text("final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.2")
    assert s.val_bpb is None
    s = parse_text(b"Total submission size int8+zlib: 158")
    assert s.bytes_total is None


def test_utf8_split_inside_a_character_and_garbage() -> None:
    line = "final_x_exact val_loss:2.0 val_bpb:1.5 note:\u00e9\u2713\n".encode()
    parser = LogParser()
    for i in range(len(line)):
        parser.feed(line[i : i + 1])
    assert parser.finish().val_bpb == 1.5
    junk = b"\xff\xfe\x00\x80" * 1000 + b"\r\nfinal_y val_loss:3.0 val_bpb:2.0\r\n" + b"\x00" * 10
    assert parse_text(junk).val_bpb == 2.0
    huge = b"x" * (2 << 20) + b" val_bpb:0.1\nfinal_z val_loss:1.0 val_bpb:0.9\n"
    assert parse_text(huge).val_bpb == 0.9


def test_non_finite_scores_are_ignored_and_json_stays_valid() -> None:
    s = parse_text("step:3/9 train_loss:nan train_time:3ms step_avg:1.00ms\nfinal_a val_bpb:nan\n")
    assert s.val_bpb is None and s.step == 3
    json.dumps(s.to_json(), allow_nan=False)


def test_lines_run_together_do_not_make_a_score() -> None:
    """Two writers on one stream: a number glued to the next line's text is not a value."""
    glued = "final_x_exact val_loss:2.0 val_bpb:1.22step:5/9 train_loss:3.1 train_time:5ms\n"
    assert parse_text(glued).val_bpb is None
    assert parse_text(glued.replace("1.22step", "1.22 step")).val_bpb == 1.22


def test_hyperparameter_block_ends_at_the_first_unindented_line() -> None:
    """Our script prints an indented `Hyperparameters:` block, then baseline `k:v` lines."""
    s = parse_text(
        "Hyperparameters:\n  seed: 7\n  max_wallclock_seconds: 10.0\n"
        "model_params:862608\nattention_mode:gqa num_heads:4 num_kv_heads:2\n"
        "1700000000.5   beta1: 0.9\n"
    )
    hp = s.hyperparameters
    assert (hp["seed"], hp["max_wallclock_seconds"], hp["model_params"]) == ("7", "10.0", "862608")
    assert (hp["attention_mode"], hp["num_heads"]) == ("gqa", "4")
    assert "beta1" not in hp  # an indented line after the block has ended is not a parameter
