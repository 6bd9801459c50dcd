"""The phase after the last training step, read from real logs as they stream.

Issue 16: a job's bar sat at ``100% … 0s`` for 30-70 s while evaluation, quantization and
the round trip ran. The parser now says which phase runs; these tests stream a real tiny run
of our train_gpt.py and the records' logs line by line and check each phase starts at the
line that announces it.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from golf_task.log_lines import strip_ts
from golf_task.log_phase import after_score
from golf_task.logs import LogParser, parse_text

RECORDS = "records"


def transitions(raw: bytes) -> list[tuple[str | None, str]]:
    """(phase, the line that started it) each time the streamed summary's phase changes."""
    parser, out, last = LogParser(), [], None
    for line in raw.splitlines(keepends=True):
        parser.feed(line)
        phase = parser.summary.phase
        if phase != last:
            out.append((phase, line.decode().strip()))
            last = phase
    return out


def starts(raw: bytes) -> list[tuple[str | None, str]]:
    """Like ``transitions``, each line cut to its first token (what names the line), after
    its timestamp when the log stamps its lines."""
    return [(p, strip_ts(line).split(" ")[0]) for p, line in transitions(raw)]


def test_the_tiny_runs_phases_in_the_order_train_gpt_prints_them(tiny_run) -> None:
    raw = tiny_run.stdout_path.read_bytes()
    total = parse_text(raw).total_steps
    assert total and parse_text(raw).hyperparameters["eval_stride"] != "0"
    assert starts(raw) == [
        ("eval", f"step:{total}/{total}"),  # the last step's train line: the final eval
        ("quantize", f"step:{total}/{total}"),  # its val line: EMA, GPTQ, export
        ("round trip", "Serialized"),  # the quantized artifact's size: reload, score
        ("sliding", "final_int6_zstd_roundtrip"),
        ("ttt", "final_int6_zstd_sliding_window"),
        ("done", "legal_ttt"),
    ]
    lines = dict(transitions(raw))
    assert "train_loss" in lines["eval"] and "val_loss" in lines["quantize"]
    assert lines["round trip"].startswith("Serialized model int6+zstd:")


def test_the_run_file_with_its_echoed_source_reads_the_same(tiny_run) -> None:
    """logs/<RUN_ID>.txt starts with the script's own source (score lines in strings)."""
    assert starts(tiny_run.log_path.read_bytes()) == starts(tiny_run.stdout_path.read_bytes())


def test_every_cut_of_the_tiny_log_any_chunking_gives_the_same_phase(tiny_run) -> None:
    raw = tiny_run.stdout_path.read_bytes()
    rng = random.Random(16)
    ends = [i + 1 for i, b in enumerate(raw) if b == 0x0A]
    for end in ends[::3] + [len(raw)]:
        parser = LogParser()
        pos = 0
        while pos < end:
            n = rng.choice((1, 7, 64, 333, 4096))
            parser.feed(raw[pos : min(end, pos + n)])
            pos += n
        assert parser.summary.phase == parse_text(raw[:end]).phase, raw[:end][-120:]


def _variant(raw: bytes, **hp: str) -> bytes:
    """The tiny run's log as a run with other switches would print it (header and scores)."""
    text = raw.decode()
    for name, value in hp.items():
        old = next(ln for ln in text.splitlines() if ln.startswith(f"  {name}: "))
        text = text.replace(old + "\n", f"  {name}: {value}\n", 1)
    keep = []
    for line in text.splitlines(keepends=True):
        if hp.get("eval_stride") == "0" and "_sliding_window" in line:
            continue
        if hp.get("ttt") == "False" and line.startswith(("ttt:", "legal_ttt")):
            continue
        keep.append(line)
    return "".join(keep).encode()


@pytest.mark.parametrize(
    ("switches", "after_round_trip"),
    [
        ({"eval_stride": "0"}, [("ttt", "final_int6_zstd_roundtrip"), ("done", "legal_ttt")]),
        (
            {"ttt": "False"},
            [("sliding", "final_int6_zstd_roundtrip"), ("done", "final_int6_zstd_sliding_window")],
        ),
        ({"eval_stride": "0", "ttt": "False"}, [("done", "final_int6_zstd_roundtrip")]),
    ],
)
def test_the_header_says_which_score_comes_next(tiny_run, switches, after_round_trip) -> None:
    raw = _variant(tiny_run.stdout_path.read_bytes(), **switches)
    got = starts(raw)
    assert [p for p, _ in got[:3]] == ["eval", "quantize", "round trip"]
    assert got[3:] == after_round_trip


def record(golf_fixtures: Path, rel: str) -> bytes:
    return (golf_fixtures / RECORDS / rel).read_bytes()


def test_a_wallclock_stop_starts_the_export_and_a_foreign_header_says_eval(golf_fixtures: Path):
    """The baseline stops on the wallclock cap; its header has neither ``eval_stride`` nor
    ``ttt``, so after its round trip the phase is ``eval``: it does not say what follows."""
    got = starts(record(golf_fixtures, "2026-03-17_NaiveBaseline/train.log"))
    assert got == [
        ("quantize", "stopping_early:"),
        ("round trip", "Serialized"),
        ("eval", "final_int8_zlib_roundtrip"),
    ]


def test_the_records_formats(golf_fixtures: Path) -> None:
    """Timestamped lines, the ``budget:`` size line, the round trip scored on its own line
    before TTT, and a last TTT score: each moves the phase on."""
    stamped = starts(record(golf_fixtures, "2026-04-13_VarLenAttn_PhasingTTT2000/logs/train0.txt"))
    assert [p for p, _ in stamped] == ["quantize", "round trip", "eval", "done"]
    assert stamped[2][1] == "diagnostic" and stamped[3][1] == "quantized_ttt_phased"
    ternary = "2026-03-24_74M_Ternary_UNet_FP8_10L_8192BPE_YaRN_NeoMuon/ternary_log_42.txt"
    assert starts(record(golf_fixtures, ternary))[1] == ("round trip", "budget:15993853/16000000")
    ttt = starts(
        record(golf_fixtures, "2026-03-23_LeakyReLU_LegalTTT_ParallelMuon/train_seed42.log")
    )
    assert ttt[-1] == ("done", "legal_ttt")


def test_a_new_run_in_the_same_file_is_training_again(golf_fixtures: Path) -> None:
    """The mixed-quant log holds three runs: each header puts the phase back to None."""
    got = [
        p
        for p, _ in starts(
            record(golf_fixtures, "2026-03-19_MixedQuant_Int6Int8_SlidingWindow/train.log")
        )
    ]
    assert got == ["quantize", "round trip", "eval", None] * 2 + ["quantize", "round trip", "eval"]


def test_training_and_an_unscored_log_have_no_phase(tiny_run) -> None:
    raw = tiny_run.stdout_path.read_bytes()
    mid = raw[: raw.index(b"step:20/")]
    assert parse_text(mid).step is not None and parse_text(mid).phase is None
    assert parse_text(b"").phase is None


def test_after_score_needs_our_switches() -> None:
    ours = {"eval_stride": "64", "ttt": "True"}
    assert after_score("final_int6_zstd_roundtrip", ours) == "sliding"
    assert after_score("final_int6_zstd_sliding_window_exact", ours) == "ttt"
    assert after_score("legal_ttt", ours) == "done"
    assert after_score("final_int6_roundtrip", {"sliding_window_enabled": "True"}) == "eval"
