"""Helpers the validator tests share: edit a records folder's JSON, find a check by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from golf_task.validate import Report


def edit_json(folder: Path, change: Callable[[dict], object]) -> None:
    path = folder / "submission.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def check_named(report: Report, name: str):  # noqa: ANN201 - a Check
    check = report.by_name(name)
    assert check is not None, [c.name for c in report.checks]
    return check
