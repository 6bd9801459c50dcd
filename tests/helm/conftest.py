"""Fixtures for helm's own tests: a fresh workspace and an in-process CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from helm.cli import main
from helm.workspace import Workspace


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):  # noqa: ANN201
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty campaign folder; HELM_HOME points at it and no HELM_AGENT leaks in."""
    root = tmp_path / "home"
    monkeypatch.setenv("HELM_HOME", str(root))
    monkeypatch.delenv("HELM_AGENT", raising=False)
    monkeypatch.delenv("HELM_DB_URL", raising=False)
    return root


@pytest.fixture
def ws(home: Path) -> Workspace:
    return Workspace(home).ensure()


@pytest.fixture
def helm(home: Path, capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """Run ``helm ARGS...`` in this process against ``home``; returns code, stdout, stderr."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return run
