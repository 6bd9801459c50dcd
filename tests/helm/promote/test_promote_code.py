"""Promotion ships the code form whose bytes the run's log counted (packed or plain).

The script logs the size of its self-extracting packed form (``PACK_CODE=1``, the default) or
of itself (``PACK_CODE=0``); the folder must hold exactly the form that was counted, and a
log that counted neither is a claim about an artifact helm cannot ship, so it is refused.

The promotions below run the real flow (plan, pre-flight validation, folder, validator,
submission record) on a committed run of the bundled script without training it: its log is
the real baseline record's log with the code and total lines a run of this script prints (the
model bytes stay the log's). Every seed is reused, so nothing is queued.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from golf_task.log_summary import LogSummary
from golf_task.logs import parse_file
from golf_task.pack import READABLE_NAME, pack, source_text, unpack
from golf_task.validate import validate_folder
from helm.models.runs import get_run
from helm.promote.folder import code_to_ship
from helm.promote.plan import PromoteError
from helm.workspace import Workspace

SCRIPT = b'"""A tiny script."""\nimport os\n\nprint("seed", os.environ.get("SEED"))\n'
# The shared fixtures lie beside the clone (``<repo>/../shared``), as for the validator tests.
BASELINE_LOG = (
    Path(__file__).resolve().parents[3].parent
    / "shared/golf_fixtures/records/2026-03-17_NaiveBaseline/train.log"
)
MODEL = 15_815_847  # "Serialized model int8+zlib: 15815847 bytes" in that log
IDENT = ("--author", "Test Author", "--github-id", "tester")


def _logs(*sizes: int | None) -> list[LogSummary]:
    return [LogSummary(bytes_code=n) for n in sizes]


def _packed(script: bytes) -> bytes:
    return pack(source_text(script)).encode("utf-8")


# ---------------------------------------------------------------------------- the choice


def test_a_log_that_counted_the_packed_form_ships_it_with_the_source_beside() -> None:
    packed = _packed(SCRIPT)
    code = code_to_ship(SCRIPT, _logs(len(packed), len(packed)))
    assert (code.form, code.counted) == ("packed", len(packed))
    assert code.script == packed and code.readable == SCRIPT
    assert unpack(code.script.decode()) == SCRIPT.decode()


def test_a_log_that_counted_the_plain_script_ships_it_alone() -> None:
    code = code_to_ship(SCRIPT, _logs(len(SCRIPT)))
    assert (code.form, code.script, code.readable) == ("raw", SCRIPT, None)


def test_a_log_that_counted_neither_is_refused() -> None:
    packed = len(_packed(SCRIPT))
    with pytest.raises(PromoteError) as err:
        code_to_ship(SCRIPT, _logs(packed + 3))
    text = str(err.value)
    assert f"counted {packed + 3:,} code bytes" in text
    assert f"train_gpt.py is {len(SCRIPT):,} bytes" in text and f"packed form {packed:,}" in text
    assert "did not count" in text


def test_seeds_that_counted_different_code_are_refused() -> None:
    with pytest.raises(PromoteError, match=r"different code sizes \[100, 101\]"):
        code_to_ship(SCRIPT, _logs(100, None, 101))


def test_no_code_size_in_any_log_ships_the_script_as_run() -> None:
    code = code_to_ship(SCRIPT, _logs(None))
    assert (code.form, code.script, code.counted) == ("raw", SCRIPT, None)


def test_a_script_with_its_own_packer_is_packed_by_it() -> None:
    """What its log measured is its own pack_source's output, not the bundled one's."""
    own = b"def pack_source(code):\n    return 'exec(' + repr(code) + ')\\n'\n"
    mine = f"exec({own.decode()!r})\n".encode()
    code = code_to_ship(own, _logs(len(mine)))
    assert (code.form, code.script) == ("packed", mine)


def test_a_script_that_is_not_utf8_cannot_be_packed() -> None:
    script = b"x = '\xff'\n"
    assert code_to_ship(script, _logs(len(script))).form == "raw"
    with pytest.raises(PromoteError, match="no packed form"):
        code_to_ship(script, _logs(len(script) + 1))


# ---------------------------------------------------------------------------- promotion


def _committed(ws: Workspace, commit: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(ws.task_dir), "show", f"{commit}:train_gpt.py"],
        capture_output=True,
        check=True,
    ).stdout


def _scored_run(ws: Workspace, kit, counted) -> tuple[int, bytes]:  # noqa: ANN001
    """A finished run of the bundled script whose log counted ``counted(script)`` code bytes."""
    job_id = 700
    run_id = kit.commit_run(
        ws, env={"SEED": "1337"}, seed=1337, status="done", val_bpb=1.2243657,
        val_loss=2.07269931, job_id=job_id, description="baseline, as logged",
    )  # fmt: skip
    with ws.db(write=False) as db:
        script = _committed(ws, get_run(db, run_id)["commit"])
    n = counted(script)
    folder = ws.job_dir(job_id)
    folder.mkdir(parents=True)
    assert BASELINE_LOG.is_file(), f"shared golf fixtures not found: {BASELINE_LOG}"
    text = BASELINE_LOG.read_text()
    text = re.sub(r"^Code size: \d+ bytes$", f"Code size: {n} bytes", text, flags=re.M)
    text = re.sub(
        r"^Total submission size int8\+zlib: \d+ bytes$",
        f"Total submission size int8+zlib: {MODEL + n} bytes",
        text,
        flags=re.M,
    )
    (folder / "train.log").write_text(text)
    return run_id, script


def _promote(helm, run_id: int, name: str):  # noqa: ANN001, ANN202
    return helm(
        "promote", str(run_id), "--yes", "--json", "--track", "non-record", "--seeds", "1337",
        "--name", name, *IDENT,
    )  # fmt: skip


def test_promoting_a_packed_run_ships_the_packed_form(task_ws: Workspace, helm, kit) -> None:  # noqa: ANN001
    run_id, script = _scored_run(task_ws, kit, lambda s: len(_packed(s)))
    r = _promote(helm, run_id, "Packed")
    assert r.code == 0, r.err
    folder = Path(r.json()["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "submission.json", "train_gpt.py", READABLE_NAME, "train_seed1337.log",
    ]  # fmt: skip
    shipped = (folder / "train_gpt.py").read_bytes()
    assert shipped == _packed(script) and len(shipped) < len(script) / 2
    assert (folder / READABLE_NAME).read_bytes() == script  # the source exactly as committed
    data = json.loads((folder / "submission.json").read_text())
    logged = parse_file(folder / "train_seed1337.log")
    assert data["bytes_code"] == len(shipped) == logged.bytes_code
    assert data["bytes_total"] == logged.bytes_total == MODEL + len(shipped)
    assert data["helm"]["code_form"] == "packed"
    readme = (folder / "README.md").read_text()
    assert "self-extracting compressed form" in readme and READABLE_NAME in readme
    report = validate_folder(folder, sota=None)
    assert report.by_name("consistency.bytes_code").status == "pass"
    assert report.by_name("limits.artifact").details["code_files"] == ["train_gpt.py"]
    assert "source it packs compile" in report.by_name("code.compiles").message
    assert not [c for c in report.checks if c.status == "fail" and c.name != "limits.train_time"]


def test_promoting_a_plain_run_ships_the_script_as_run(task_ws: Workspace, helm, kit) -> None:  # noqa: ANN001
    run_id, script = _scored_run(task_ws, kit, len)
    r = _promote(helm, run_id, "Plain")
    assert r.code == 0, r.err
    folder = Path(r.json()["folder"])
    assert (folder / "train_gpt.py").read_bytes() == script
    assert not (folder / READABLE_NAME).exists()
    data = json.loads((folder / "submission.json").read_text())
    assert data["bytes_code"] == len(script) and data["helm"]["code_form"] == "raw"
    assert "self-extracting" not in (folder / "README.md").read_text()


def test_a_log_that_counted_other_code_is_refused_before_anything_is_written(
    task_ws: Workspace, helm, kit
) -> None:  # noqa: ANN001
    run_id, script = _scored_run(task_ws, kit, lambda s: len(s) - 1)
    r = _promote(helm, run_id, "Lie")
    assert r.code == 1
    reason = r.err.strip().splitlines()[-1]
    assert f"the log counted {len(script) - 1:,} code bytes" in reason, r.err
    assert f"train_gpt.py is {len(script):,} bytes" in reason
    assert not list(task_ws.submissions_dir.rglob("*_Lie"))
    assert not list(task_ws.submissions_dir.rglob(".helm-tmp-*"))
