"""Where the shared golf fixtures live, for the parser and validator tests.

CI lays a copy of ``shared/`` beside the clone, so the fixtures are ``<repo>/../shared``.
Their absence is a broken checkout, not a reason to skip: every test that needs them fails
with a message naming the path it looked at.

Tests asking for ``fixture_log`` run once per log in ``expected.json`` (a ``(record, log,
fields)`` tuple); tests asking for ``fixture_record`` once per record folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLF_FIXTURES = REPO.parent / "shared" / "golf_fixtures"


def _missing() -> bool:
    return not (GOLF_FIXTURES / "expected.json").is_file()


@pytest.fixture(scope="session")
def golf_fixtures() -> Path:
    """The fixtures folder, or a failure that names the missing path."""
    if _missing():
        pytest.fail(
            f"shared golf fixtures not found at {GOLF_FIXTURES} (expected <repo>/../shared); "
            "CI must lay shared/ beside the clone"
        )
    return GOLF_FIXTURES


@pytest.fixture(scope="session")
def expected(golf_fixtures: Path) -> dict:
    return json.loads((golf_fixtures / "expected.json").read_text())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fixture_log" in metafunc.fixturenames:
        if _missing():
            metafunc.parametrize("fixture_log", [None], ids=["shared-fixtures-missing"])
            return
        records = json.loads((GOLF_FIXTURES / "expected.json").read_text())["records"]
        cases = [
            (rec, log, fields)
            for rec, entry in sorted(records.items())
            for log, fields in sorted(entry["logs"].items())
        ]
        metafunc.parametrize("fixture_log", cases, ids=[f"{r[:16]}/{lg}" for r, lg, _ in cases])
    if "fixture_record" in metafunc.fixturenames:
        if _missing():
            metafunc.parametrize("fixture_record", [None], ids=["shared-fixtures-missing"])
            return
        names = sorted(p.name for p in (GOLF_FIXTURES / "records").iterdir() if p.is_dir())
        metafunc.parametrize("fixture_record", names, ids=[n[:24] for n in names])
