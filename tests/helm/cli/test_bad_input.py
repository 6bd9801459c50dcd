"""Bad input from the command line (issue 13): every mistake is one line on stderr and a
non-zero exit, never a traceback, a hang or a silent wrong answer.

Covers: a wait on a run that does not exist, a job for a host that does not exist (or can
never fit it), integers past what the store or numpy can hold, invalid UTF-8, unknown
statuses, and text too long for the command line (given from a file or stdin instead).
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helm.cli import build_parser
from helm.workspace import Workspace

HUGE = str(2**63)  # one past SQLite's and PostgreSQL's largest integer
BAD_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of argv bytes


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    d = tmp_path / "exp"
    d.mkdir()
    (d / "train_gpt.py").write_text("print('hi')\n")
    return d


# Waits and placements that could never end ---------------------------------------------------
@pytest.mark.timeout(60)
def test_exp_wait_on_an_unknown_run_fails_at_once(helm, ws: Workspace) -> None:
    res = helm("exp", "wait", "99999")
    assert res.code == 1 and _one_line(res.err) == "helm: no run 99999"


@pytest.mark.engines
def test_job_run_refuses_a_host_that_is_not_there_or_too_small(
    helm, ws: Workspace, job_dir: Path
) -> None:
    res = helm("job", "run", str(job_dir), "--host", "nosuch", "--no-daemon")
    assert res.code == 2 and "no host 'nosuch'" in _one_line(res.err)
    assert helm("host", "add", "cpu", "--local", "--gpus", "2").code == 0
    res = helm("job", "run", str(job_dir), "--host", "cpu", "--gpus", "4", "--no-daemon")
    assert res.code == 2 and "cpu has 2 GPUs" in _one_line(res.err)
    # nothing was queued by the refused calls: no job, no run, no code folder
    assert helm("job", "ls", "--all", "--json").json() == []
    assert helm("runs", "--json").json() == []
    assert not list(ws.jobs_dir.glob("*/code"))
    res = helm("job", "run", str(job_dir), "--host", "cpu", "--gpus", "2", "--no-daemon")
    assert res.code == 0, res.err


# Integers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["directive", "ack", HUGE, "--agent", "a1"],
        ["job", "show", HUGE],
        ["job", "logs", "0"],
        ["job", "cancel", "-1"],
        ["feed", "post", "hello", "--run", HUGE],
        ["feed", "ls", "--limit", HUGE],
        ["feed", "ls", "--limit", "-1"],  # was: no limit at all
        ["feed", "ls", "--limit", "0"],
        ["runs", "--limit", "-5"],
        ["leaderboard", "--limit", "1e3"],
        ["job", "ls", "--limit", "9" * 5000],  # past int()'s digit limit too
        ["job", "run", "{dir}", "--seed", HUGE],
        ["job", "run", "{dir}", "--seed", "-1"],
        ["job", "run", "{dir}", "--priority", HUGE],
        ["job", "run", "{dir}", "--gpus", HUGE],
        ["host", "add", "h", "--local", "--gpus", HUGE],
        ["host", "add", "h", "--local", "--gpus", "0"],
        ["exp", "run", "--seed", str(2**32)],
        ["exp", "wait", HUGE],
        ["pin", "run", HUGE],
        ["pin", "show", "--limit", "-1"],
        ["diff", "1", HUGE],
        ["promote", HUGE],
        ["promote", "1", "--seeds", f"1,{2**32}"],
        ["audit", "dir", ".", "--gpus", "3"],
        ["swarm", "up", "-n", HUGE],
        ["demo", "--agents", "0"],
    ],
)
def test_out_of_range_integers_are_one_line_errors(
    helm, ws: Workspace, job_dir: Path, argv: list[str]
) -> None:
    res = helm(*[a.replace("{dir}", str(job_dir)) for a in argv])
    assert res.code == 2, res
    line = _one_line(res.err)
    assert line.startswith("helm ") and "--help" in line
    assert helm("job", "ls", "--all", "--json").json() == []  # nothing queued either


def _actions(parser: argparse.ArgumentParser):  # noqa: ANN202
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield parser.prog, action


def test_every_integer_argument_of_every_command_is_bounded() -> None:
    """No ``type=int`` anywhere: each integer option and positional refuses 2**63 and -2**63."""
    seen = 0
    for prog, action in _actions(build_parser()):
        assert action.type is not int, f"{prog} {action.dest}: type=int is unbounded"
        bounds = getattr(action.type, "bounds", None)
        if bounds is None:
            continue
        seen += 1
        lo, hi = bounds
        assert hi < 2**63 and lo > -(2**63), (prog, action.dest, bounds)
        for text in (HUGE, str(-(2**63) - 1), "12abc", "١٢"):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(text)
        assert action.type(str(hi)) == hi and action.type(str(lo)) == lo
    assert seen >= 25  # ids, limits, seeds, gpus, priorities, counts across the groups


def test_every_float_argument_is_finite_and_bounded() -> None:
    """No ``type=float``: ``nan`` and ``inf`` would mean "never time out" or "every run wins"."""
    seen = 0
    for prog, action in _actions(build_parser()):
        assert action.type is not float, f"{prog} {action.dest}: type=float takes nan and inf"
        if getattr(action.type, "__name__", "") not in ("seconds", "bpb"):
            continue
        seen += 1
        lo, hi = action.type.bounds
        for text in ("nan", "inf", "-inf", "1e999", "abc", str(hi * 2 + 1)):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(text)
        assert action.type(str(lo)) == lo and action.type(str(hi)) == hi
    assert seen >= 8  # timeouts, polls, durations, time limits, --sota


def test_nan_timeout_is_a_usage_error(helm, ws: Workspace) -> None:
    res = helm("daemon", "stop", "--timeout", "nan")
    assert res.code == 2
    assert "must be a number in 0..86400, not 'nan'" in _one_line(res.err)


# Text ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["feed", "post", "hello", "--tag", BAD_UTF8],  # was: accepted and stored
        ["feed", "post", BAD_UTF8],
        ["feed", "post", "hello", "--agent", BAD_UTF8],
        ["directive", "send", "stop", "--to", BAD_UTF8],
        ["claim", "add", BAD_UTF8, "--agent", "a1"],
        ["runs", "--by", BAD_UTF8],
    ],
)
def test_invalid_utf8_is_refused_in_every_text_argument(helm, ws: Workspace, argv) -> None:
    res = helm(*argv)
    assert res.code == 2 and "not valid UTF-8" in _one_line(res.err)
    assert helm("feed", "ls", "--json").json() == []


def test_unknown_statuses_states_and_kinds_are_refused(helm, ws: Workspace) -> None:
    for argv in (["runs", "--status", "bogus"], ["job", "ls", "--state", "bogus"],
                 ["feed", "ls", "--kind", "bogus"]):  # fmt: skip
        res = helm(*argv)
        assert res.code == 2 and "invalid choice: 'bogus'" in _one_line(res.err), argv
    assert "keep" in helm("runs", "--status", "bogus").err  # the choices are listed
    assert helm("runs", "--status", "crash", "--json").json() == []


@pytest.mark.engines
def test_text_longer_than_the_command_line_allows_comes_from_a_file_or_stdin(
    helm, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helm.cli.common import MAX_TEXT_BYTES

    text = "a finding, explained at length. " * 8192  # 256 KiB, twice the OS's argument limit
    helm_bin = shutil.which("helm", path=str(Path(sys.executable).parent))
    assert helm_bin is not None
    with pytest.raises(OSError, match="too long"):  # why a file form is needed at all
        subprocess.run([helm_bin, "feed", "post", text], check=False)
    path = tmp_path / "long.txt"
    path.write_text(text)
    res = helm("feed", "post", "--file", str(path), "--agent", "a1", "--json")
    assert res.code == 0, res.err
    assert helm("feed", "ls", "--json").json()[0]["text"] == text.strip()

    stdin = io.TextIOWrapper(io.BytesIO(("please stop. " * 20000).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    res = helm("directive", "send", "--file", "-", "--json")
    assert res.code == 0, res.err
    assert helm("directive", "ls", "--json").json()[0]["text"].startswith("please stop. ")

    path.write_bytes(b"x" * (MAX_TEXT_BYTES + 1))
    res = helm("feed", "post", "--file", str(path))
    assert res.code == 2 and f"over the {MAX_TEXT_BYTES:,}-byte limit" in _one_line(res.err)
    path.write_bytes(b"caf\xe9")
    res = helm("feed", "post", "--file", str(path))
    assert res.code == 2 and "not valid UTF-8" in _one_line(res.err)
    path.write_bytes(b"a\x00b")
    res = helm("directive", "send", "--file", str(path))
    assert res.code == 2 and "NUL" in _one_line(res.err)
    res = helm("feed", "post", "both", "--file", str(path))
    assert res.code == 2 and "not both" in _one_line(res.err)
    res = helm("feed", "post", "--file", str(tmp_path / "missing.txt"))
    assert res.code == 2 and "cannot read" in _one_line(res.err)
    assert len(helm("feed", "ls", "--json").json()) == 1  # only the good post landed
