"""The records validator: the nine real records (logs only) and complete folders built from
our own tiny CPU runs, intact and broken one rule at a time."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from golf_task.logs import parse_file
from golf_task.pack import READABLE_NAME, pack, packed_size, source_text
from golf_task.validate import DEFAULT_SOTA, Report, validate_folder

REPO = Path(__file__).resolve().parents[2]


def _status(report: Report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _failed(report: Report) -> set[str]:
    return {c.name for c in report.checks if c.status == "fail"}


# ---------------------------------------------------------------------------- real records

# What reviewers would say of each record's logs and JSON (logs-only, no significance test):
# the checks expected to warn; every other check must pass, and none may fail.
RECORD_WARNINGS = {
    "2026-03-17_LoRA_TTT": {
        "json.seeds",
        "logs.seeds",  # four versions of one seed
        "consistency.score",  # JSON quotes train_v3 alone
        "consistency.bytes_total",  # v3's model + the final, edited script's size
        "consistency.bytes_code",
        "limits.train_time",  # train_v1 is a 2-GPU run of 2400 s
    },
    "2026-03-17_NaiveBaseline": set(),
    "2026-03-19_MixedQuant_Int6Int8_SlidingWindow": set(),
    "2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271": {
        "json.seeds",
        "logs.duplicates",  # train.log == train_seed1337.log
        "consistency.score",  # JSON quotes seed 1337 alone
    },
    "2026-03-23_LeakyReLU_LegalTTT_ParallelMuon": {"json.fields", "json.seeds"},
    "2026-03-24_74M_Ternary_UNet_FP8_10L_8192BPE_YaRN_NeoMuon": {
        "json.seeds",
        "consistency.score",  # JSON quotes seed 42 (the best) instead of the mean
    },
    "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2": set(),
    "2026-04-13_VarLenAttn_PhasingTTT2000": {"json.fields"},  # no blurb, no byte totals
    "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611": {"json.fields"},
}


def test_every_record_has_a_verdict(golf_fixtures: Path) -> None:
    assert sorted(RECORD_WARNINGS) == sorted(p.name for p in (golf_fixtures / "records").iterdir())


def test_record_verdict_and_figures(
    golf_fixtures: Path, expected: dict, fixture_record: str
) -> None:
    report = validate_folder(golf_fixtures / "records" / fixture_record, sota=None, logs_only=True)
    status = _status(report)
    assert report.ok, [c for c in report.checks if c.status == "fail"]
    assert {n for n, s in status.items() if s == "warn"} == RECORD_WARNINGS[fixture_record]
    assert "significance" not in status and "layout.readme" not in status
    # the key figures come from the parsed logs, one sample per distinct log
    logs = expected["records"][fixture_record]["logs"]
    distinct: dict[tuple, float] = {}
    for fields in logs.values():
        distinct.setdefault((fields["val_bpb"], fields["stop_step"]), fields["val_bpb"])
    f = report.figures
    assert f["n_logs"] == len(logs) and f["n_samples"] == len(distinct)
    assert f["mean_val_bpb"] == pytest.approx(sum(distinct.values()) / len(distinct), abs=1e-12)
    assert f["max_bytes_total"] == max(v["bytes_total"] for v in logs.values())
    claim = expected["records"][fixture_record]["submission"]["val_bpb"]
    assert f["json_val_bpb"] == claim
    assert {p["log"] for p in f["per_log"]} == set(logs)


def test_sota_record_is_significant_against_the_score_it_claims_to_beat(
    golf_fixtures: Path,
) -> None:
    folder = golf_fixtures / "records/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
    claims = json.loads((folder / "submission.json").read_text())
    report = validate_folder(folder, sota=claims["comparison_baseline_bpb"], logs_only=True)
    sig = report.by_name("significance")
    assert sig is not None and sig.status == "pass", sig
    f = report.figures
    # the record's own arithmetic: 0.01992 bpb = 0.04359 nats below 1.0810
    assert f["improvement_bpb"] == pytest.approx(-claims["delta_vs_leaderboard_bpb"], abs=5e-5)
    assert f["improvement_nats"] == pytest.approx(-claims["delta_vs_leaderboard_nats"], abs=5e-5)
    assert f["p_value"] < 0.01 and f["significant"] is True
    assert f["threshold_bpb"] == pytest.approx(1.0810 - 0.005 * f["bpb_per_nat"])
    # against itself (the default SOTA) it cannot be an improvement
    again = validate_folder(folder, logs_only=True)
    assert again.figures["sota"] == DEFAULT_SOTA
    assert again.by_name("significance").status == "fail" and not again.ok
    assert again.figures["p_value"] > 0.5


def test_one_seed_cannot_show_significance(golf_fixtures: Path) -> None:
    folder = golf_fixtures / "records/2026-03-17_NaiveBaseline"
    report = validate_folder(folder, sota=1.5, logs_only=True)
    sig = report.by_name("significance")
    assert sig.status == "fail" and "one seed" in sig.message
    assert report.figures["improvement_nats"] > 0.005  # a big gain is still not a p-value


def test_over_the_cap_log_is_excluded_from_the_test(golf_fixtures: Path) -> None:
    report = validate_folder(
        golf_fixtures / "records/2026-03-17_LoRA_TTT", sota=2.0, logs_only=True
    )
    assert report.by_name("significance").details["n"] == 3  # train_v1 ran 2400 s


# ---------------------------------------------------------------------------- tiny runs


def _build_record(root: Path, runs: list, *, name: str = "2026-05-01_TinyCPU") -> Path:
    """A complete records folder the way helm promotes one: logs, script, README, JSON.

    The script in the form its logs counted: packed (``PACK_CODE=1``, the default) as
    ``train_gpt.py`` with the source beside it as ``train_gpt_human.py``, or as it is.
    """
    folder = root / name
    folder.mkdir(parents=True)
    script = runs[0].script.read_bytes()
    packed = pack(source_text(script)).encode("utf-8")
    if parse_file(runs[0].log).bytes_code == len(packed):
        (folder / "train_gpt.py").write_bytes(packed)
        (folder / READABLE_NAME).write_bytes(script)
    else:
        (folder / "train_gpt.py").write_bytes(script)
    summaries = {}
    for run in runs:
        shutil.copyfile(run.log, folder / f"train_seed{run.seed}.log")
        summaries[run.seed] = parse_file(run.log)
    (folder / "README.md").write_text("# Tiny CPU\n\nThree seeds of the tiny configuration.\n")
    bpbs = [s.val_bpb for s in summaries.values()]
    losses = [s.val_loss for s in summaries.values()]
    data = {
        "author": "helm tests",
        "github_id": "helm",
        "name": "Tiny CPU",
        "blurb": "golf_task/train_gpt.py, tiny configuration, three seeds",
        "date": "2026-05-01T00:00:00Z",
        "val_bpb": round(sum(bpbs) / len(bpbs), 8),
        "val_loss": round(sum(losses) / len(losses), 8),
        "bytes_total": max(s.bytes_total for s in summaries.values()),
        "bytes_code": (folder / "train_gpt.py").stat().st_size,
        "seeds": sorted(summaries),
        "seed_results": {
            str(seed): {
                "val_bpb": s.val_bpb,
                "val_loss": s.val_loss,
                "artifact_bytes": s.bytes_total,
                "steps": s.stop_step,
            }
            for seed, s in summaries.items()
        },
    }
    (folder / "submission.json").write_text(json.dumps(data, indent=2))
    return folder


@pytest.fixture
def record(tmp_path: Path, seed_runs: list) -> Path:
    return _build_record(tmp_path, seed_runs)


def _edit_json(folder: Path, change: Callable[[dict], None]) -> None:
    data = json.loads((folder / "submission.json").read_text())
    change(data)
    (folder / "submission.json").write_text(json.dumps(data))


def _edit_log(folder: Path, pattern: str, repl: str) -> None:
    """Rewrite one log (the highest seed: not the artifact-size maximum's only copy)."""
    log = sorted(folder.glob("train_seed*.log"))[-1]
    text, n = re.subn(pattern, repl, log.read_text(), flags=re.M)
    assert n, pattern
    log.write_text(text)


def _break_compile(folder: Path) -> None:
    """A syntax error in the source the folder ships. Packed, the source is broken and packed
    again with its readable copy kept equal, and the JSON states the new size (the logs then
    ran other code: a warning), so that only the compile check fails."""
    readable = folder / READABLE_NAME
    if not readable.exists():
        script = folder / "train_gpt.py"
        script.write_text(script.read_text().replace("import ", "imp0rt ", 1))
        return
    broken = readable.read_text().replace("import ", "imp0rt ", 1)
    readable.write_text(broken)
    packed = pack(broken).encode("utf-8")
    (folder / "train_gpt.py").write_bytes(packed)
    _edit_json(folder, lambda d: d.update(bytes_code=len(packed)))


def test_our_own_logs_parse(seed_runs: list) -> None:
    for run in seed_runs:
        s = parse_file(run.log)
        assert s.score_line and s.score_line.startswith(("final_", "legal_ttt")) and s.val_bpb > 0
        assert s.bytes_total == s.bytes_code + s.bytes_model
        # the code bytes of the form a submission ships: packed by default (PACK_CODE=1)
        assert s.bytes_code == packed_size(source_text(run.script.read_bytes()))
        assert s.stop_step is not None and s.train_time_ms is not None
        assert s.wallclock_stopped or s.stop_step == s.total_steps
        assert s.hyperparameters.get("seed") == str(run.seed)


def test_complete_record_passes(record: Path) -> None:
    report = validate_folder(record, sota=None)
    assert report.ok
    assert all(c.status == "pass" for c in report.checks), [
        c for c in report.checks if c.status != "pass"
    ]
    for name in ("layout.readme", "layout.train_gpt", "code.compiles", "consistency.bytes_code"):
        assert _status(report)[name] == "pass"
    assert report.figures["n_samples"] == 3


def test_complete_record_significance(record: Path) -> None:
    mean = validate_folder(record, sota=None).figures["mean_val_bpb"]
    better = validate_folder(record, sota=mean + 2.0)
    assert better.ok and better.figures["p_value"] < 0.01
    same = validate_folder(record, sota=mean)
    assert _failed(same) == {"significance"} and same.figures["improvement_nats"] == 0


BROKEN: dict[str, tuple[Callable[[Path], Path | None], str, str]] = {
    # name: (break the folder, the one check that must fail, words its message must hold)
    "folder name": (
        lambda f: f.rename(f.with_name("TinyCPU")) and None,
        "layout.folder_name",
        "YYYY-MM-DD",
    ),
    "no README": (lambda f: (f / "README.md").unlink(), "layout.readme", "README.md"),
    "no JSON": (lambda f: (f / "submission.json").unlink(), "layout.submission_json", "json"),
    "no script": (lambda f: (f / "train_gpt.py").unlink(), "layout.train_gpt", "train_gpt.py"),
    "no logs": (
        lambda f: [p.unlink() for p in f.glob("*.log")] and None,
        "layout.logs",
        "no training log",
    ),
    "bad JSON": (
        lambda f: (f / "submission.json").write_text("{'author': "),
        "json.parse",
        "does not parse",
    ),
    "no author": (
        lambda f: _edit_json(f, lambda d: d.pop("author")),
        "json.fields",
        "author missing",
    ),
    "bpb is text": (
        lambda f: _edit_json(f, lambda d: d.update(val_bpb=str(d["val_bpb"]))),
        "json.fields",
        "val_bpb must be a number",
    ),
    "score off": (
        lambda f: _edit_json(f, lambda d: d.update(val_bpb=d["val_bpb"] - 0.01)),
        "consistency.score",
        "mean over",
    ),
    "bytes off": (
        lambda f: _edit_json(f, lambda d: d.update(bytes_total=d["bytes_total"] - 1000)),
        "consistency.bytes_total",
        "matches none",
    ),
    "code bytes off": (
        lambda f: _edit_json(f, lambda d: d.update(bytes_code=d["bytes_code"] + 1)),
        "consistency.bytes_code",
        "train_gpt.py is",
    ),
    "does not compile": (_break_compile, "code.compiles", "does not compile"),
    "artifact over cap": (
        lambda f: _edit_log(
            f,
            r"^Total submission size (\S+): \d+ bytes",
            r"Total submission size \1: 16000001 bytes",
        ),
        "limits.artifact",
        "16,000,001",
    ),
    "trained too long": (
        lambda f: _edit_log(f, r"train_time:\d+ms", "train_time:700000ms"),
        "limits.train_time",
        "700.0s",
    ),
    "evaluated too long": (
        lambda f: _edit_log(f, r"(^final_\S+ .*)eval_time:\d+ms", r"\1eval_time:700000ms"),
        "limits.eval_time",
        "over the 600s cap",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_record_fails_one_rule(record: Path, case: str) -> None:
    breaker, check, words = BROKEN[case]
    breaker(record)
    folder = record if record.exists() else record.with_name("TinyCPU")
    report = validate_folder(folder, sota=None)
    assert not report.ok
    assert _failed(report) == {check}, [c for c in report.checks if c.status == "fail"]
    assert words in report.by_name(check).message


def test_warnings_do_not_fail(record: Path) -> None:
    shutil.copyfile(
        record / "train_seed1.log"
        if (record / "train_seed1.log").exists()
        else sorted(record.glob("*.log"))[0],
        record / "train.log",
    )
    _edit_json(
        record, lambda d: d["seed_results"][next(iter(d["seed_results"]))].update(val_bpb=9.99)
    )
    report = validate_folder(record, sota=None)
    assert report.ok
    status = _status(report)
    assert status["logs.duplicates"] == "warn" and status["consistency.seed_results"] == "warn"
    assert "9.99" in report.by_name("consistency.seed_results").message


def test_cli_exit_codes_and_json(record: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "golf_task.validate", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
        )

    ok = cli(str(record), "--json", "--sota", "none")
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["ok"] is True and out["counts"]["fail"] == 0
    assert {"name", "status", "message", "details"} <= set(out["checks"][0])
    assert out["figures"]["n_samples"] == 3 and out["figures"]["p_value"] is None
    text = cli(str(record))  # default SOTA: tiny runs are nowhere near it
    assert text.returncode == 1 and "FAIL  significance" in text.stdout
    assert "verdict: FAIL" in text.stdout
    assert cli(str(tmp_path / "missing")).returncode == 2
    assert cli(str(record), "--sota", "abc").returncode == 2
