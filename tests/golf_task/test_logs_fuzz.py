"""Property tests: the parser never raises, never depends on chunking, never invents a score."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golf_task.logs import LogParser, parse_text

SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Real lines of every family (taken from the fixtures' formats) plus look-alikes.
POOL = [
    "step:200/20000 train_loss:2.3 train_time:8699ms step_avg:43.49ms",
    "step:400/20000 val_loss:2.5687 val_bpb:1.5174 train_time:17382ms step_avg:43.45ms",
    "1/20000 train_loss: 9.0089 train_time: 0.0m tok/s: 16371725",
    "4945/20000 val_loss: 2.3539 val_bpb: 1.0756",
    "step:1000/10000 loss:3.3120 t:91478ms avg:91.5ms",
    "stopping_early: wallclock_cap train_time:600038ms step:13780/20000",
    "stopping_early: wallclock_cap train_time: 588136ms step: 4986/20000",
    "Serialized model: 67224983 bytes",
    "Serialized model int8+zlib: 15815847 bytes (payload:17178912 raw_torch:17224025)",
    "Code size: 47642 bytes",
    "Code size (compressed): 28599 bytes",
    "Total submission size: 67272625 bytes",
    "Total submission size int8+zlib: 15863489 bytes",
    "budget:15993853/16000000 (15.99/16.00MB) FITS",
    "final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms",
    "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570",
    "final_sliding_window_eval_exact stride:64 val_loss:1.96369923 val_bpb:1.16301431",
    "legal_ttt_exact val_loss:1.89110239 val_bpb:1.12002032",
    "ttt_sliding:done val_loss=1.891102 val_bpb=1.120020 elapsed=407.5s",
    "quantized_ttt_phased val_loss:2.76951521 val_bpb:1.07216564 eval_time:500104ms",
    "final_sliding val_loss:2.9869 val_bpb:1.1565 (stride=16, T=0.90) eval_time:429311ms",
    "final_eval_mode val_bpb:0.5",
    "DIAGNOSTIC post_ema val_loss:1.9208 val_bpb:1.1376 eval_time:1977ms",
    'log0(f"final_int8_zlib_roundtrip_exact val_loss:{q_val_loss:.8f} val_bpb:{q_bpb:.8f}")',
    "total_eval_time:500.1s",
    "peak memory allocated: 10184 MiB reserved: 10200 MiB",
    "Hyperparameters:",
    "  seed: 42",
    "seed:1337",
    "model_params:17059912",
    "=" * 100,
    "  ttt_chunk [1/1893] bpb=1.161909 time=0.5s",
    # echoed source: where an echo starts, strings that hold log lines, and look-alikes
    '"""helm\'s training script',
    '"""',
    "# a comment",
    "import os",
    "from pathlib import Path",
    "EXAMPLE = '''final_x val_loss:1.0 val_bpb:0.5",
    "'''",
    'final_score = "final_x val_loss:1.0 val_bpb:0.5"',
    'msg = "a \\',
    "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22\x00\x00",
    "",
]
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def _line_variant(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(POOL))
    kind = draw(st.integers(0, 5))
    if kind == 1 and line:  # cut anywhere
        line = line[: draw(st.integers(0, len(line)))]
    elif kind == 2:  # two writers run together
        line = line + draw(st.sampled_from(POOL))
    elif kind == 3:
        line = f"{draw(st.integers(10**9, 2 * 10**9))}.{draw(st.integers(0, 999)):03d} {line}"
    elif kind == 4:
        line = draw(st.text(max_size=40))
    return line


@st.composite
def log_texts(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 40))
    return "\n".join(_line_variant(draw) for _ in range(n)) + draw(st.sampled_from(["", "\n"]))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _complete_lines(text: str) -> list[str]:
    """Lines a careful reader would trust: newline-terminated ones."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")[:-1]


@SETTINGS
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4000), max_size=12))
def test_random_bytes_never_raise_nor_score(data: bytes, cuts: list[int]) -> None:
    parser = LogParser()
    for chunk in _chunks(data, cuts):
        parser.feed(chunk)
        _ = parser.summary
    s = parser.finish()
    assert s.val_bpb is None and s.bytes_total is None and s.score_line is None


def _score_claims(lines: list[str]) -> set[tuple[str, float]]:
    """(first token, val_bpb) of every line that prints a val_bpb, timestamp dropped."""
    claims = set()
    for ln in lines:
        ln = re.sub(r"^\d{9,12}(?:\.\d+)? ", "", ln)
        name = re.match(r"[\w.+\-]*", ln).group(0)
        claims |= {(name, float(v)) for v in re.findall(rf"val_bpb[:=]\s*({_NUM})", ln)}
    return claims


@SETTINGS
@given(log_texts(), st.lists(st.integers(0, 10_000), max_size=16))
def test_scores_only_come_from_complete_score_lines(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    parser = LogParser()
    for chunk in _chunks(data, cuts):
        parser.feed(chunk)
    s = parser.finish()
    assert s == parse_text(data)  # chunking never matters
    lines = _complete_lines(data.decode("utf-8", "replace"))
    if s.val_bpb is not None:
        assert (s.score_line, s.val_bpb) in _score_claims(lines)
        assert s.score_line.startswith(("final_", "legal_ttt", "quantized"))
        assert s.score_line != "final_eval_mode"
    if s.bytes_total is not None:
        sizes = {int(n) for ln in lines for n in re.findall(r"(?:size [^:]+: |budget:)(\d+)", ln)}
        assert s.bytes_total in sizes


@SETTINGS
@given(cut=st.integers(0, 10**6), which=st.sampled_from([0, 1, 2]))
def test_truncated_real_log_never_reports_a_cut_score(
    golf_fixtures: Path, cut: int, which: int
) -> None:
    """A real log cut anywhere: no score, or one printed in full before the cut."""
    rel = [
        "2026-03-17_NaiveBaseline/train.log",
        "2026-03-17_LoRA_TTT/train_v0.txt",
        "2026-04-13_VarLenAttn_PhasingTTT2000/logs/train1.txt",
    ][which]
    raw = (golf_fixtures / "records" / rel).read_bytes()
    head = raw[: cut % (len(raw) + 1)]
    s = parse_text(head)
    if s.val_bpb is not None:
        assert (s.score_line, s.val_bpb) in _score_claims(_complete_lines(head.decode()))
    full = parse_text(raw)
    if head == raw:
        assert s == full
