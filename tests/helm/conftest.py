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


ENGINES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``engines`` run once per store engine: the SQLite file and PostgreSQL.

    The parameter sits on the store fixture (``store_engine``, under ``home``), so a suite
    opts in with ``pytestmark = pytest.mark.engines`` and is not copied.
    """
    if "store_engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "engines"
    ):
        metafunc.parametrize("store_engine", ENGINES, indirect=True)


@pytest.fixture
def store_engine(request: pytest.FixtureRequest) -> str:
    """Which engine holds this test's store: "sqlite" unless the test is marked ``engines``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store_engine: str,
    request: pytest.FixtureRequest,
) -> Path:
    """An empty campaign folder; HELM_HOME points at it and no HELM_AGENT leaks in.

    On the ``postgres`` engine, ``HELM_DB_URL`` points every process of the test (the CLI in
    process, the daemon, agents) at a fresh database on the session's real server.
    """
    root = tmp_path / "home"
    monkeypatch.setenv("HELM_HOME", str(root))
    monkeypatch.delenv("HELM_AGENT", raising=False)
    monkeypatch.delenv("HELM_DB_URL", raising=False)
    if store_engine == "postgres":
        monkeypatch.setenv("HELM_DB_URL", request.getfixturevalue("postgres_url"))
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


@pytest.fixture
def local_fleet(tiny_data_dir: Path):  # noqa: ANN201
    """Factory: ``with local_fleet(ws):`` gives ``ws`` a 2-slot local CPU host on the tiny
    data and a running daemon; on exit it waits for the jobs to drain, then stops the daemon."""
    import time
    from contextlib import contextmanager

    from helm import daemon
    from helm.models.jobs import live_job_ids
    from helm.remote.hosts import add_host

    @contextmanager
    def fleet(ws: Workspace):  # noqa: ANN202
        with ws.store.write() as s:
            add_host(ws, s, "cpu", local=True, gpus=2, data=str(tiny_data_dir))
        daemon.start_detached(ws)
        try:
            yield ws
        finally:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with ws.db(write=False) as db:
                    busy = live_job_ids(db)
                if not busy:
                    break
                time.sleep(0.5)
            daemon.stop(ws)

    return fleet


# A real PostgreSQL server for the HELM_DB_URL path ----------------------------------------------
def _pg_bin(name: str) -> str:
    import glob

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} not found: install Debian's postgresql (.ci/run does)"
        )
    return found[-1]


@pytest.fixture(scope="session")
def postgres_server():  # noqa: ANN201
    """A throwaway PostgreSQL cluster on 127.0.0.1, run as the ``postgres`` system user.

    Its folder lives outside pytest's private (0700) tmp tree so that user can reach it.
    """
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    root = Path(tempfile.mkdtemp(prefix="helm-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    for p in (root, sock):
        shutil.chown(p, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_pg, _pg_bin("initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*as_pg, _pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import psycopg

    base = f"postgresql://postgres@127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(f"{base}/postgres", connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.terminate()
                raise
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server, as a SQLAlchemy URL."""
    import uuid

    import psycopg

    name = f"helm_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
