"""Issue 13: the parser never invents a score.

Each test reproduces one way the parser used to read a score that no run printed: a number
cut short by corrupt bytes, a non-finite value, an echoed script's docstring or a column-0
assignment taken for a score line, and a file with no training-log content at all reported
as a log. Inputs are real logs (the shared fixtures, our own script's source) with one
corruption each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from golf_task.logs import LogParser, parse_text

REPO = Path(__file__).resolve().parents[2]
EXACT = "final_int8_zlib_roundtrip_exact val_loss:2.07269931 "
ROUGH = "final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms\n"
RUN = (
    "model_params:17059912\n"
    "step:1/20000 train_loss:6.9357 train_time:244ms step_avg:243.51ms\n"
    "step:2/20000 train_loss:16.8366 train_time:289ms step_avg:144.48ms\n"
)


def _baseline(golf_fixtures: Path) -> bytes:
    return (golf_fixtures / "records/2026-03-17_NaiveBaseline/train.log").read_bytes()


# ---------------------------------------------------------------------------- whole tokens


@pytest.mark.parametrize(
    "value",
    [
        b"1.22" + b"\x00" * 8,  # NUL bytes where the digits were
        b"1.2\xff436570",  # an invalid UTF-8 byte inside the number
        b"1,2243",  # a decimal comma: not a number of this grammar
        b"1.22436570\x1b[0m",  # a control byte glued to the number
        b"1.2.3",
        b"1.2243657x",
    ],
)
def test_a_number_that_is_not_a_whole_token_is_no_score(value: bytes) -> None:
    s = parse_text(EXACT.encode() + b"val_bpb:" + value + b"\n")
    assert s.val_bpb is None and s.score_line is None
    assert s.score_rejected is not None  # the summary says a score line was refused


def test_a_corrupt_last_score_line_voids_the_score_instead_of_falling_back(
    golf_fixtures: Path,
) -> None:
    """The real baseline log with its last (exact) score line cut by NUL bytes: the rounded
    line above it is another line's figure, so the log has no readable score."""
    raw = _baseline(golf_fixtures)
    assert raw.rstrip().endswith(b"val_bpb:1.22436570")
    cut = raw.rstrip()[: -len(b"436570")] + b"\x00" * 6 + b"\n"
    s = parse_text(cut)
    assert s.val_bpb is None and s.score_line is None
    assert "control" in s.score_rejected
    assert s.bytes_total == 15863489  # the size lines before it are intact
    # a clean score line afterwards is read again
    again = parse_text(cut + (EXACT + "val_bpb:1.22436570\n").encode())
    assert again.val_bpb == 1.2243657 and again.score_rejected is None


def test_control_bytes_anywhere_in_a_score_line_reject_it() -> None:
    line = "final_int8_zlib_roundtrip_exact val_loss:2.07\x0069931 val_bpb:1.22436570\n"
    s = parse_text(ROUGH + line)
    assert s.val_bpb is None and s.val_loss is None
    assert parse_text(ROUGH + line.replace("\x00", "")).val_bpb == 1.2243657


@pytest.mark.parametrize(
    "values",
    [
        "val_loss:2.0 val_bpb:nan",
        "val_loss:2.0 val_bpb:inf",
        "val_loss:2.0 val_bpb:1e999",  # overflows to infinity
        "val_loss:nan val_bpb:1.2",  # a NaN loss makes the whole line untrustworthy
        "val_loss:-inf val_bpb:1.2",
    ],
)
def test_non_finite_values_reject_the_score_line(values: str) -> None:
    s = parse_text(f"{ROUGH}final_int8_zlib_roundtrip_exact {values}\n")
    assert s.val_bpb is None and s.val_loss is None and s.score_rejected


def test_whole_tokens_at_the_end_of_a_line_or_before_a_space_still_count() -> None:
    s = parse_text(
        "final_sliding val_loss:2.9869 val_bpb:1.1565 (stride=16, T=0.90) eval_time:429311ms\n"
        "ttt_sliding:done val_loss=1.891102 val_bpb=1.120020 elapsed=407.5s\n"
    )
    assert (s.score_line, s.val_bpb, s.val_loss) == ("final_sliding", 1.1565, 2.9869)
    assert (s.val_bpb_text, s.val_loss_text) == ("1.1565", "2.9869")


# ---------------------------------------------------------------------------- echoed source


def _script_with(head: str, doc_extra: str = "") -> str:
    """Our own training script as a record's log echoes it, with a different first lines."""
    source = (REPO / "golf_task/train_gpt.py").read_text()
    assert source.startswith('"""')
    first_end = source.index("\n") + 1
    return head + source[:first_end] + doc_extra + source[first_end:]


DOC_EXAMPLE = (
    "\nExample of the end of a log:\n\n"
    + "=" * 40
    + "\nfinal_int8_zlib_roundtrip_exact val_loss:1.90000000 val_bpb:0.90000000\n"
    "Total submission size int8+zlib: 1234 bytes\n" + "=" * 100 + "\n\n"
)


def _log_after(echo: str, golf_fixtures: Path, *, crashed: bool) -> str:
    """The cpu-smoke log whose echo was stripped, with an echo put back in its place."""
    text = (golf_fixtures / "cpu_smoke/logs_cpu_smoke_compile.txt").read_text()
    first, rest = text.split("\n", 1)
    assert first.startswith("[source code echo of")
    if crashed:  # the run died after its first steps: no size, no score
        rest = rest[: rest.index("step:3/")]
    return echo + rest


def test_a_row_of_equals_in_a_docstring_does_not_end_the_echo(golf_fixtures: Path) -> None:
    echo = _script_with("", DOC_EXAMPLE)
    s = parse_text(_log_after(echo, golf_fixtures, crashed=True))
    assert s.val_bpb is None and s.score_line is None and s.bytes_total is None
    assert s.step == 2 and s.hyperparameters.get("seed") == "1337"
    full = parse_text(_log_after(echo, golf_fixtures, crashed=False))
    reference = parse_text((golf_fixtures / "cpu_smoke/logs_cpu_smoke_compile.txt").read_text())
    assert full == reference  # the echo changes nothing about the run it precedes
    from golf_task.log_echo import echoed_source

    assert echoed_source(_log_after(echo, golf_fixtures, crashed=True)) == echo


def test_an_echo_that_starts_with_a_comment_is_recognised(golf_fixtures: Path) -> None:
    echo = _script_with("# helm's copy of the script\n# second comment line\n\n", DOC_EXAMPLE)
    s = parse_text(_log_after(echo, golf_fixtures, crashed=True))
    assert s.val_bpb is None and s.bytes_total is None and s.step == 2
    from golf_task.log_echo import echoed_source

    assert echoed_source(_log_after(echo, golf_fixtures, crashed=True)) == echo


def test_score_lines_in_any_string_of_the_echo_are_skipped() -> None:
    echo = (
        "# a script\n"
        "import os\n"
        "EXAMPLE = '''\n"
        + "="
        * 100
        + "\nfinal_int8_zlib_roundtrip_exact val_loss:1.9 val_bpb:0.9\n'''\n"
        'NOTE = "don\'t \\" stop"  # a comment with a quote: "\n'
        'OTHER = r"""raw \\""" still open\n'
        "final_int8_zlib_roundtrip_exact val_loss:1.8 val_bpb:0.8\n"
        '"""\n'
    )
    s = parse_text(echo + "=" * 100 + "\n" + RUN)
    assert s.val_bpb is None and s.step == 2


def test_a_column0_assignment_holding_a_score_line_is_not_a_score() -> None:
    for line in (
        'final_score = "final_int8_zlib_roundtrip_exact val_loss:1.9 val_bpb:0.9"',
        "final_score=0.9  # val_bpb:0.9",
        'final_score: str = "x val_bpb:0.9"',
        "quantized_result == 'val_bpb:0.9'",
        "final_msg = f'val_bpb:{bpb}' if bpb else 'final val_bpb:0.9'",
    ):
        s = parse_text(RUN + line + "\n")
        assert s.val_bpb is None and s.score_line is None, line


def test_an_echo_of_a_second_run_in_the_same_file_is_skipped(golf_fixtures: Path) -> None:
    """Logs appended to by two runs: the second run's echo (with an example score in its
    docstring) comes after the first run's score, and the second run crashes."""
    first = _log_after(_script_with(""), golf_fixtures, crashed=False)
    second = _log_after(_script_with("", DOC_EXAMPLE), golf_fixtures, crashed=True)
    one = parse_text(first)
    both = parse_text(first + second)
    assert both.val_bpb == one.val_bpb and both.score_line == one.score_line  # not 0.9
    assert both.bytes_total == one.bytes_total  # not the docstring's 1234
    assert both.step == 2 and not both.wallclock_stopped  # progress is the second run's


def test_a_log_that_merely_starts_with_a_comment_is_still_read() -> None:
    """A console capture whose first line is a '#' note is not source: its first training
    line (which no Python file can hold outside a string) ends the 'echo'."""
    text = "# job 12 on box a\n" + RUN + EXACT + "val_bpb:1.22436570\n"
    s = parse_text(text)
    assert s.val_bpb == 1.2243657 and s.step == 2


def test_echo_detection_does_not_depend_on_chunking(golf_fixtures: Path) -> None:
    raw = _log_after(_script_with("# c\n", DOC_EXAMPLE), golf_fixtures, crashed=False).encode()
    whole = parse_text(raw)
    for size in (1, 7, 4096):
        parser = LogParser()
        for i in range(0, len(raw), size):
            parser.feed(raw[i : i + size])
        assert parser.finish() == whole, size


# ---------------------------------------------------------------------------- not a log


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "golf_task.logs", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_a_file_without_training_log_content_exits_nonzero(
    golf_fixtures: Path, tmp_path: Path
) -> None:
    readme = REPO / "README.md"
    r = _cli(str(readme))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "not a training log" in r.stderr
    assert str(readme) in r.stderr
    # with real logs beside it, those are still reported, and the status is still 1
    log = golf_fixtures / "records/2026-03-17_NaiveBaseline/train.log"
    r = _cli("--json", str(log), str(readme))
    assert r.returncode == 1 and str(log) in r.stdout and str(readme) not in r.stdout
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert _cli(str(empty)).returncode == 1


def test_a_crashed_log_still_exits_zero(golf_fixtures: Path, tmp_path: Path) -> None:
    """Header and steps but no score: a training log of a run that died, exit 0 as before."""
    text = (golf_fixtures / "cpu_smoke/stdout_1proc.log").read_text()
    crashed = tmp_path / "crashed.log"
    crashed.write_text(text[: text.index("step:5/")])
    r = _cli(str(crashed))
    assert r.returncode == 0, r.stderr
    assert "val_bpb=-" in r.stdout and "step=4/20" in r.stdout
    header_only = tmp_path / "header.log"
    header_only.write_text(text[: text.index("warmup_step")])
    assert _cli(str(header_only)).returncode == 0
    s = parse_text(header_only.read_text())
    assert s.is_training_log and not s.has_score


def test_the_api_still_parses_any_text() -> None:
    """helm calls the parser, not the CLI: a non-log gives an empty summary, never an error."""
    s = parse_text((REPO / "README.md").read_bytes())
    assert not s.is_training_log and s.val_bpb is None and s.step is None


def test_a_comment_line_between_steps_loses_nothing() -> None:
    """A '#' line at column 0 mid-run could start a later run's echo: it is skipped as one
    until the next step line, which no script holds, and nothing else changes."""
    head = "model_params:1\nseed:7\n"
    steps = "".join(
        f"step:{i}/100 train_loss:{3 - i / 100:.2f} train_time:{i * 10}ms step_avg:10.00ms\n"
        for i in range(1, 60)
    )
    cut = steps.index("step:50/")
    plain = parse_text(head + steps + EXACT + "val_bpb:1.5\n")
    noted = parse_text(
        head + steps[:cut] + "# checkpoint saved\n" + steps[cut:] + EXACT + "val_bpb:1.5\n"
    )
    assert noted == plain and noted.step == 59 and noted.val_bpb == 1.5


@pytest.mark.parametrize(
    "module", ["argparse", "inspect", "typing", "dataclasses", "golf_task/train_gpt.py"]
)
def test_the_echo_lexer_agrees_with_pythons_tokenizer(module: str) -> None:
    """At every line start, "inside a string literal" is what Python's own tokenizer says."""
    import importlib
    import io
    import tokenize

    from golf_task.log_echo import EchoScanner

    if module.endswith(".py"):
        source = (REPO / module).read_text()
    else:
        source = Path(importlib.import_module(module).__file__).read_text()
    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    assert inside, module  # the module has multi-line strings to get right
    scanner = EchoScanner()
    for number, line in enumerate(source.split("\n"), start=1):
        assert (scanner.quote is not None) == (number in inside), (module, number, line)
        assert scanner.feed(line) == 0, (module, number, line)  # source never ends an echo
