"""Issue 13: the validator's verdicts are true.

The folders are the real baseline record (its log and submission.json from the shared
fixtures) completed with a script and README the way a submission ships them, then changed
one way each: code padded over the cap, a claim rounded wrongly, stray files in subfolders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from validate_kit import check_named, edit_json

from golf_task.limits import ARTIFACT_CAP_BYTES
from golf_task.validate import validate_folder

BASELINE = "2026-03-17_NaiveBaseline"
MODEL = 15_815_847  # "Serialized model int8+zlib: 15815847 bytes" in the baseline's log
LOGGED_CODE = 47_642


def _script(size: int) -> bytes:
    """A compilable train_gpt.py of exactly ``size`` bytes (a statement, then comment rows)."""
    body = b'print("a tiny stand-in for the record\'s training script")\n'
    row = b"#" * 99 + b"\n"
    out = body + row * ((size - len(body)) // len(row))
    return out + b"#" * (size - len(out) - 1) + b"\n"


def _record(root: Path, golf_fixtures: Path, *, code: int = LOGGED_CODE) -> Path:
    folder = root / BASELINE
    shutil.copytree(golf_fixtures / "records" / BASELINE, folder)
    (folder / "train_gpt.py").write_bytes(_script(code))
    (folder / "README.md").write_text("# Naive baseline\n\nThe reference run.\n")
    edit_json(folder, lambda d: d.update(bytes_code=code))
    return folder


# ---------------------------------------------------------------------------- the cap


def test_code_padded_over_the_cap_fails_on_measured_bytes(
    tmp_path: Path, golf_fixtures: Path
) -> None:
    """The issue's reproduction: 246,696 bytes of code + the logged 15,815,847-byte model."""
    folder = _record(tmp_path, golf_fixtures, code=246_696)
    assert (folder / "train_gpt.py").stat().st_size == 246_696
    report = validate_folder(folder, sota=None)
    cap = check_named(report, "limits.artifact")
    assert cap.status == "fail", cap
    assert f"over {ARTIFACT_CAP_BYTES:,} bytes" in cap.message
    for figure in ("15,815,847", "246,696", "16,062,543", "train_gpt.py", "measured", "logged"):
        assert figure in cap.message, (figure, cap.message)
    assert cap.details["measured_code"] == 246_696
    assert cap.details["code_files"] == ["train_gpt.py"]
    assert not report.ok and "limits.artifact" in {
        c.name for c in report.checks if c.status == "fail"
    }


def test_code_within_the_cap_passes_and_says_which_figures_it_used(
    tmp_path: Path, golf_fixtures: Path
) -> None:
    report = validate_folder(_record(tmp_path, golf_fixtures), sota=None)
    cap = check_named(report, "limits.artifact")
    assert cap.status == "pass", cap
    assert "15,863,489" in cap.message and "measured" in cap.message and "47,642" in cap.message
    assert report.ok, [c for c in report.checks if c.status == "fail"]


def test_other_code_the_folder_ships_counts_too(tmp_path: Path, golf_fixtures: Path) -> None:
    folder = _record(tmp_path, golf_fixtures)
    helpers = folder / "kernels"
    helpers.mkdir()
    (helpers / "fused.py").write_bytes(_script(100_000))
    (helpers / "attn.cu").write_bytes(b"// kernel\n" * 10_000)
    cap = check_named(validate_folder(folder, sota=None), "limits.artifact")
    assert cap.status == "fail", cap
    assert cap.details["code_files"] == ["kernels/attn.cu", "kernels/fused.py", "train_gpt.py"]
    assert cap.details["measured_code"] == LOGGED_CODE + 100_000 + 100_000
    assert "kernels/fused.py" in cap.message


def test_logs_only_uses_the_logged_total_and_says_so(golf_fixtures: Path) -> None:
    report = validate_folder(golf_fixtures / "records" / BASELINE, sota=None, logs_only=True)
    cap = check_named(report, "limits.artifact")
    assert cap.status == "pass" and "logged" in cap.message and "15,863,489" in cap.message


# ---------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("claim", "status"),
    [
        (1.3, "fail"),  # the case: 1.22436570 rounds to 1.2, not 1.3
        (1.2, "pass"),
        (1.22, "pass"),
        (1.23, "fail"),
        (1.224, "pass"),
        (1.2244, "pass"),
        (1.2243, "fail"),  # one unit off in the last printed decimal
        (1.2243657, "pass"),
        (1.22436571, "fail"),
    ],
)
def test_a_claim_must_equal_the_logged_score_rounded(
    tmp_path: Path, golf_fixtures: Path, claim: float, status: str
) -> None:
    folder = _record(tmp_path, golf_fixtures)
    edit_json(folder, lambda d: d.update(val_bpb=claim))
    check = check_named(validate_folder(folder, sota=None), "consistency.score")
    assert check.status == status, check


def test_the_decimals_a_claim_prints_are_its_own_not_floats(
    tmp_path: Path, golf_fixtures: Path
) -> None:
    """``1.2240`` claims four decimals: the log's 1.2244 is not it (a float would say 1.224)."""
    folder = _record(tmp_path, golf_fixtures)
    path = folder / "submission.json"
    text = path.read_text()
    path.write_text(text.replace('"val_bpb": 1.2243657', '"val_bpb": 1.2240'))
    assert '"val_bpb": 1.2240' in path.read_text()
    assert check_named(validate_folder(folder, sota=None), "consistency.score").status == "fail"
    path.write_text(text.replace('"val_bpb": 1.2243657', '"val_bpb": 1.2244'))
    assert check_named(validate_folder(folder, sota=None), "consistency.score").status == "pass"


def test_a_claim_of_one_decimal_is_checked_to_half_a_unit(
    tmp_path: Path, golf_fixtures: Path
) -> None:
    """The issue's second case: a log of 1.1699 and a claim of 1.1."""
    folder = _record(tmp_path, golf_fixtures)
    log = folder / "train.log"
    log.write_text(log.read_text().replace("val_bpb:1.22436570", "val_bpb:1.1699"))
    edit_json(folder, lambda d: d.update(val_bpb=1.1))
    assert check_named(validate_folder(folder, sota=None), "consistency.score").status == "fail"
    edit_json(folder, lambda d: d.update(val_bpb=1.2))
    assert check_named(validate_folder(folder, sota=None), "consistency.score").status == "pass"


def test_per_seed_claims_are_held_to_the_same_rule(tmp_path: Path, golf_fixtures: Path) -> None:
    folder = _record(tmp_path, golf_fixtures)
    edit_json(folder, lambda d: d.update(seeds=[1337], seed_results={"1337": {"val_bpb": 1.2243}}))
    check = check_named(validate_folder(folder, sota=None), "consistency.seed_results")
    assert check.status == "warn" and "1.2243" in check.message
    edit_json(folder, lambda d: d.update(seed_results={"1337": {"val_bpb": 1.2244}}))
    assert (
        check_named(validate_folder(folder, sota=None), "consistency.seed_results").status == "pass"
    )


# ---------------------------------------------------------------------------- which files are logs


def test_logs_only_counts_only_the_folders_own_logs(tmp_path: Path, golf_fixtures: Path) -> None:
    folder = tmp_path / BASELINE
    shutil.copytree(golf_fixtures / "records" / BASELINE, folder)
    other = golf_fixtures / "records/2026-03-17_LoRA_TTT/train_v0.txt"
    (folder / "ablations" / "run2").mkdir(parents=True)
    shutil.copyfile(other, folder / "ablations" / "run2" / "train.log")
    (folder / "data").mkdir()
    (folder / "data" / "notes.txt").write_text("step:1/2 train_loss:3.0 train_time:5ms\n")
    (folder / "notes.txt").write_text(
        "Best so far (copied from the log):\n"
        "final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.10000000\n"
    )
    report = validate_folder(folder, sota=None, logs_only=True)
    layout = check_named(report, "layout.logs")
    assert layout.details["logs"] == ["train.log"], layout
    for name in ("ablations/run2/train.log", "data/notes.txt", "notes.txt"):
        assert name in layout.message
    assert report.figures["n_logs"] == 1 and report.figures["mean_val_bpb"] == 1.2243657
    assert report.ok


def test_the_logs_subfolder_layout_still_counts(tmp_path: Path, golf_fixtures: Path) -> None:
    rec = "2026-04-13_VarLenAttn_PhasingTTT2000"
    folder = tmp_path / rec
    shutil.copytree(golf_fixtures / "records" / rec, folder)
    (folder / "logs" / "old").mkdir()
    shutil.copyfile(folder / "logs" / "train0.txt", folder / "logs" / "old" / "train9.txt")
    report = validate_folder(folder, sota=None, logs_only=True)
    assert check_named(report, "layout.logs").details["logs"] == [
        "logs/train0.txt",
        "logs/train1.txt",
        "logs/train2.txt",
    ]
