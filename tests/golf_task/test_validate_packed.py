"""The validator on a folder that ships train_gpt.py in the packed form (golf_task.pack).

The folders are the real baseline record (its log and submission.json from the shared
fixtures) completed the way helm promotes a packed run: ``train_gpt.py`` is the packed form
of a stand-in script, ``train_gpt_human.py`` its readable source, and the log's code and total
lines say what a ``PACK_CODE=1`` run of that script prints (the model bytes stay the log's).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from validate_kit import check_named, edit_json

from golf_task.pack import READABLE_NAME, pack
from golf_task.validate import Report, validate_folder

BASELINE = "2026-03-17_NaiveBaseline"
MODEL = 15_815_847  # "Serialized model int8+zlib: 15815847 bytes" in the baseline's log
SOURCE = (
    '"""A stand-in for the record\'s training script."""\n'
    "import os\n\n"
    + "".join(f"LAYER_{i} = int(os.environ.get('LAYER_{i}', {i}))\n" for i in range(400))
    + 'print("trained")\n'
)


def _record(
    root: Path, golf_fixtures: Path, *, source: str = SOURCE, readable: bool = True
) -> Path:
    """The baseline's folder with ``source`` shipped packed, and its log counting that."""
    folder = root / BASELINE
    shutil.copytree(golf_fixtures / "records" / BASELINE, folder)
    packed = pack(source).encode("utf-8")
    (folder / "train_gpt.py").write_bytes(packed)
    if readable:
        (folder / READABLE_NAME).write_text(source, encoding="utf-8")
    (folder / "README.md").write_text("# Naive baseline\n\nThe reference run, packed.\n")
    code, total = len(packed), MODEL + len(packed)
    log = folder / "train.log"
    text = re.sub(
        r"^Code size: \d+ bytes$", f"Code size: {code} bytes", log.read_text(), flags=re.M
    )
    text = re.sub(
        r"^Total submission size int8\+zlib: \d+ bytes$",
        f"Total submission size int8+zlib: {total} bytes",
        text,
        flags=re.M,
    )
    log.write_text(text)
    edit_json(folder, lambda d: d.update(bytes_code=code, bytes_total=total))
    return folder


def _failed(report: Report) -> set[str]:
    return {c.name for c in report.checks if c.status == "fail"}


def test_packed_folder_with_its_readable_copy_passes(tmp_path: Path, golf_fixtures: Path) -> None:
    folder = _record(tmp_path, golf_fixtures)
    packed = (folder / "train_gpt.py").stat().st_size
    assert packed < len(SOURCE) / 3  # the point of packing
    report = validate_folder(folder, sota=None)
    assert report.ok, [c for c in report.checks if c.status == "fail"]
    code = check_named(report, "consistency.bytes_code")
    assert code.status == "pass", code
    assert f"bytes_code {packed} = train_gpt.py's size" in code.message
    assert "packed form" in code.message and f"{READABLE_NAME}, the same source" in code.message
    cap = check_named(report, "limits.artifact")
    assert cap.status == "pass"
    assert cap.details["code_files"] == ["train_gpt.py"]  # the readable copy is not counted
    assert cap.details["measured_code"] == packed
    assert f"{MODEL + packed:,}" in cap.message
    compiles = check_named(report, "code.compiles")
    assert compiles.status == "pass"
    assert f"the {len(SOURCE.encode()):,}-byte source it packs compile" in compiles.message
    assert "packed" in check_named(report, "layout.train_gpt").message


def test_packed_folder_without_a_readable_copy_passes(tmp_path: Path, golf_fixtures: Path) -> None:
    report = validate_folder(_record(tmp_path, golf_fixtures, readable=False), sota=None)
    assert report.ok, [c for c in report.checks if c.status == "fail"]
    assert check_named(report, "consistency.bytes_code").status == "pass"


def test_a_readable_copy_that_differs_is_counted(tmp_path: Path, golf_fixtures: Path) -> None:
    """Only the exact source is the reviewers' copy; anything else is more code shipped."""
    folder = _record(tmp_path, golf_fixtures)
    (folder / READABLE_NAME).write_text(SOURCE.replace("trained", "trainee"), encoding="utf-8")
    report = validate_folder(folder, sota=None)
    assert _failed(report) == {"consistency.bytes_code"}, report.checks
    code = check_named(report, "consistency.bytes_code")
    assert code.details["files"] == ["train_gpt.py", READABLE_NAME]
    packed = (folder / "train_gpt.py").stat().st_size
    assert code.details["file"] == packed + len(SOURCE.encode())
    assert check_named(report, "limits.artifact").details["code_files"] == [
        "train_gpt.py",
        READABLE_NAME,
    ]


def test_a_packed_source_that_does_not_compile_fails(tmp_path: Path, golf_fixtures: Path) -> None:
    """The wrapper itself compiles; the source it carries is compiled too."""
    broken = SOURCE.replace("import os", "imp0rt os")
    report = validate_folder(_record(tmp_path, golf_fixtures, source=broken), sota=None)
    assert _failed(report) == {"code.compiles"}, report.checks
    message = check_named(report, "code.compiles").message
    assert "packed form" in message and "does not compile" in message and "line 2" in message


def test_the_readable_script_where_the_log_counted_the_packed_form_warns(
    tmp_path: Path, golf_fixtures: Path
) -> None:
    """Shipping the plain script although the run counted its packed bytes: the JSON may
    say the plain size, but the logs did not run code of that size."""
    folder = _record(tmp_path, golf_fixtures, readable=False)
    packed = (folder / "train_gpt.py").stat().st_size
    (folder / "train_gpt.py").write_text(SOURCE, encoding="utf-8")
    edit_json(folder, lambda d: d.update(bytes_code=len(SOURCE.encode())))
    report = validate_folder(folder, sota=None)
    code = check_named(report, "consistency.bytes_code")
    assert code.status == "warn"
    assert f"is {len(SOURCE.encode())} bytes but the logs ran code of [{packed}]" in code.message
    assert "packed form" not in code.message
    # the artifact is judged on the bytes shipped: the plain script + the logged model
    assert check_named(report, "limits.artifact").details["measured_code"] == len(SOURCE.encode())


def test_a_json_code_size_off_by_one_fails_and_says_packed(
    tmp_path: Path, golf_fixtures: Path
) -> None:
    folder = _record(tmp_path, golf_fixtures)
    edit_json(folder, lambda d: d.update(bytes_code=d["bytes_code"] + 1))
    report = validate_folder(folder, sota=None)
    assert "consistency.bytes_code" in _failed(report)
    message = check_named(report, "consistency.bytes_code").message
    assert "train_gpt.py is" in message and "packed form" in message
