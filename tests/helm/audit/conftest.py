"""Fixtures for the audit tests: a GitHub of recorded responses (``serve``), the 'real' PR's
tiny runs and a live campaign for reruns. GitHub cannot be reached from here."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from audit_kit import cache_dir, github, run_seeds

from helm.agents import github as gh
from helm.workspace import Workspace


@pytest.fixture(scope="session")
def real_logs(tiny_data_dir: Path) -> dict[int, Path]:
    """Logs of the two seeds of the 'real' PR's script (built once, shared, read-only)."""
    root = cache_dir()
    done = root / "done.json"
    with open(root / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if not done.is_file():
                logs = run_seeds(tiny_data_dir, root)
                done.write_text(json.dumps({str(k): str(v) for k, v in logs.items()}))
            return {int(k): Path(v) for k, v in json.loads(done.read_text()).items()}
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------- live campaign


@pytest.fixture
def live(ws: Workspace, local_fleet) -> Iterator[Workspace]:  # noqa: ANN001
    """A 2-slot local CPU host on the tiny data and a running daemon; stopped after."""
    with local_fleet(ws):
        yield ws


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Route every GitHub client helm makes to a MockTransport over ``contents``."""
    requests: list[httpx.Request] = []
    original = gh.client

    def install(contents: dict[int, dict[str, bytes]]) -> list[httpx.Request]:
        transport = github(contents, requests)
        monkeypatch.setattr(
            gh, "client", lambda transport_=None, token=None: original(transport, token)
        )
        return requests

    return install
