"""A store that refuses to be destroyed: each fault gives one line on stderr, never a traceback.

Real files, real SQLite, real subprocesses of the installed ``helm`` (the lock timeout and the
dropped capability must apply to a fresh process).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helm.models import errors
from helm.workspace import Workspace


def _cli(home: Path, *args: str, env: dict[str, str] | None = None, prefix: tuple = ()):
    """Run ``helm ARGS`` in a fresh process; returns (code, stdout, stderr)."""
    full = {**os.environ, "HELM_HOME": str(home), **(env or {})}
    full.pop("HELM_DB_URL", None)
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "helm.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", [("feed", "ls"), ("feed", "post", "x"), ("host", "ls")])
def test_empty_store_is_refused_and_kept(home: Path, helm, argv: tuple[str, ...]) -> None:
    """A 0-byte helm.db (a full disk, a bad copy) is never turned into a fresh campaign."""
    home.mkdir(parents=True)
    db = home / "helm.db"
    db.write_bytes(b"")
    r = helm(*argv)
    assert r.code == 1
    assert _one_line(r.err) == f"helm: store {db} {errors.EMPTY}"
    assert db.stat().st_size == 0
    assert not list(home.glob("helm.db-*"))


def test_read_only_store_gives_one_line_for_every_writer(ws: Workspace, helm) -> None:
    """Reads still work on a read-only store; every write says so in one line.

    The commands run as root without the capabilities that let root ignore file modes
    (setpriv drops them), so the 0444 mode binds as it does for any user.
    """
    assert helm("host", "add", "cpu", "--local", "--gpus", "1").code == 0
    ws.store.close()
    os.chmod(ws.db_path, 0o444)
    drop = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")
    expected = f"helm: store {ws.db_path} {errors.READ_ONLY}"
    try:
        code, out, err = _cli(ws.root, "host", "ls", prefix=drop)
        assert code == 0 and "cpu" in out, err
        for argv in (
            ("host", "add", "box", "--local", "--gpus", "1"),
            ("host", "disable", "cpu"),
            ("feed", "post", "a finding"),
            ("job", "run", str(ws.root), "--gpus", "1"),
        ):
            code, _, err = _cli(ws.root, *argv, prefix=drop)
            assert code == 1, (argv, err)
            assert _one_line(err) == expected, argv
    finally:
        os.chmod(ws.db_path, 0o644)


def test_garbage_store_is_corrupt_in_one_line(home: Path, helm) -> None:
    home.mkdir(parents=True)
    (home / "helm.db").write_bytes(b"this is not sqlite" * 100)
    for argv in (("feed", "ls"), ("host", "ls")):
        r = helm(*argv)
        assert r.code == 1
        detail = errors.CORRUPT.format(detail="not a SQLite file")
        assert _one_line(r.err) == f"helm: store {home / 'helm.db'} {detail}"


def test_damaged_pages_are_corrupt_in_one_line(ws: Workspace, helm) -> None:
    """A file with a SQLite header and overwritten pages: SQLite's own 'malformed'."""
    assert helm("feed", "post", "hello").code == 0
    ws.store.close()
    data = bytearray(ws.db_path.read_bytes())
    for i in range(100, len(data)):
        data[i] = 0xA5
    ws.db_path.write_bytes(bytes(data))
    for p in ws.root.glob("helm.db-*"):
        p.unlink()
    code, _, err = _cli(ws.root, "feed", "ls")
    assert code == 1
    line = _one_line(err)
    assert line.startswith(f"helm: store {ws.db_path} is corrupt or not a helm store (")
    assert line.endswith("restore it from a backup (helm.db.bak-*)")


def test_store_locked_forever_gives_one_line(ws: Workspace, helm) -> None:
    """A process that holds the write lock and never lets go: the writer gives up in one line."""
    assert helm("host", "add", "cpu", "--local", "--gpus", "1").code == 0
    holder = sqlite3.connect(ws.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        env = {"HELM_BUSY_TIMEOUT_S": "0.5"}
        expected = f"helm: store {ws.db_path} " + errors.LOCKED.format(seconds=0.5)
        for argv in (("feed", "post", "x"), ("host", "disable", "cpu")):
            code, _, err = _cli(ws.root, *argv, env=env)
            assert code == 1, err
            assert _one_line(err) == expected, argv
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("value", ["abc", ""])
def test_unreadable_schema_version_is_named(ws: Workspace, helm, value: str) -> None:
    ws.store.close()
    conn = sqlite3.connect(ws.db_path)
    conn.execute("UPDATE helm_meta SET value=? WHERE key='schema_version'", (value,))
    conn.commit()
    conn.close()
    for argv in (("feed", "ls"), ("host", "ls")):
        r = helm(*argv)
        assert r.code == 1
        expected = errors.BAD_VERSION.format(value=value)
        assert _one_line(r.err) == f"helm: store {ws.db_path} {expected}"


def test_newer_schema_is_refused_in_one_line(ws: Workspace, helm) -> None:
    from helm.models.version import SCHEMA_VERSION

    ws.store.close()
    conn = sqlite3.connect(ws.db_path)
    conn.execute("UPDATE helm_meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    for argv in (("feed", "ls"), ("host", "ls")):
        r = helm(*argv)
        assert r.code == 1
        expected = errors.NEWER.format(found=99, known=SCHEMA_VERSION)
        assert _one_line(r.err) == f"helm: store {ws.db_path} {expected}"
