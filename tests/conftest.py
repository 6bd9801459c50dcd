"""Session fixtures every suite can use: the tiny dataset and one finished tiny training run.

Both are expensive (seconds to tens of seconds), so they are built once per version of the
sources that produce them and cached under ``$TMPDIR/helm-test-cache/<hash>`` (override the
base with ``HELM_TEST_CACHE``). An ``fcntl`` lock makes the xdist workers build them once and
share the result. Nothing is written into the repository.

    def test_something(tiny_run):
        text = tiny_run.log_path.read_text()
"""

from __future__ import annotations

import ast
import fcntl
import gc
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

# One ast.parse at a time, with the cyclic GC paused (issue 13: `make test` on a busy box).
#
# CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 keep the depth counter that ``ast.parse`` uses while
# it builds Python node objects in one struct shared by every call (gh-106905, fixed by
# gh-113035 in 3.11.8 and 3.12.2), seeded from the caller's Python stack depth. Building the
# nodes allocates, an allocation may run the cyclic GC, and the GC runs finalizers: an asyncio
# Task freed with an exception nobody retrieved (a test that drops a loop or a connection can
# leave one) logs its traceback, and 3.11 formats a traceback with carets by calling ast.parse
# on each frame's line. That nested parse re-seeds the shared counter from its own stack depth,
# and the outer parse ends with "SystemError: AST constructor recursion depth mismatch". The
# outer parse that hit it was pytest's assertion rewriter: pytest rewrites every module of a
# plugin's distribution (Hypothesis is one), and ``st.from_regex`` imports
# ``hypothesis.strategies._internal.regex`` only on its first draw, deep inside a test. On a
# fresh venv, or always with PYTHONDONTWRITEBYTECODE set, no rewritten .pyc is cached, so that
# parse happens in the run, in each xdist worker that draws from it; whether a GC pass with such
# garbage lands inside it depends on timing, which a busy box shifts. Importing that one module
# early would leave every other mid-test parse exposed (other lazy imports, Hypothesis's own
# lambda parsing, pytest's traceback formatting); pausing the GC for the length of each parse
# leaves no Python code able to run inside one (no finalizer, hence no thread switch either), so
# none can nest. tests/test_busy_suite.py reproduces the failure without this guard and passes
# with it.
_AST_RACE = (3, 11) <= sys.version_info[:3] < (3, 11, 8) or (
    (3, 12) <= sys.version_info[:3] < (3, 12, 2)
)
_ast_parse = ast.parse
_gc_lock = threading.Lock()
_gc_paused = [0, False]  # parses in progress, whether the GC was enabled before the first


def parse_with_gc_paused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201  (ast.parse's)
    """``ast.parse`` with the cyclic GC off while it runs (see the comment above)."""
    with _gc_lock:
        if _gc_paused[0] == 0:
            _gc_paused[1] = gc.isenabled()
            gc.disable()
        _gc_paused[0] += 1
    try:
        return _ast_parse(*args, **kwargs)
    finally:
        with _gc_lock:
            _gc_paused[0] -= 1
            if _gc_paused[0] == 0 and _gc_paused[1]:
                gc.enable()


if _AST_RACE and os.environ.get("HELM_TEST_AST_GUARD", "1") != "0":
    ast.parse = parse_with_gc_paused

REPO = Path(__file__).resolve().parents[1]
GOLF_TASK = REPO / "golf_task"
TRAIN_SCRIPT = GOLF_TASK / "train_gpt.py"
_SOURCES = (GOLF_TASK / "data.py", TRAIN_SCRIPT, GOLF_TASK / "presets.py")
TINY_RUN_ID = "tiny"
TINY_RUN_SEED = 1337


def source_hash() -> str:
    """Hash of everything that decides the tiny data and the tiny run's output."""
    h = hashlib.sha256(sys.version.encode())
    for path in _SOURCES:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("HELM_TEST_CACHE") or Path(tempfile.gettempdir()) / "helm-test-cache"
    root = Path(base) / source_hash()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock across processes (xdist workers), released on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def cross_process_lock():  # noqa: ANN201
    """``file_lock`` for other conftests (a conftest cannot be imported by module name)."""
    return file_lock


@dataclass(frozen=True)
class TinyRun:
    """A finished tiny CPU run of train_gpt.py, laid out like a records folder.

    ``run_dir`` holds ``train_gpt.py`` (the exact script that ran, so its size is the code
    size) and ``logs/<run_id>.txt`` / ``logs/<run_id>.ptz``; ``stdout`` is the console capture
    (rank 0 lines only). ``env`` is what was added to the environment for the run.
    """

    run_dir: Path
    script_path: Path
    log_path: Path
    ptz_path: Path
    stdout_path: Path
    run_id: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")


def build_tiny_data(root: Path) -> Path:
    from golf_task.data import make_tiny

    out = root / "data"
    with file_lock(root / "data.lock"):
        make_tiny(out)
    return out


def run_tiny(data_dir: Path, run_dir: Path, run_id: str, **overrides: str) -> TinyRun:
    """Run the tiny preset in ``run_dir`` (cwd) from a copy of the script; raise on failure."""
    from golf_task.presets import tiny_env

    run_dir.mkdir(parents=True, exist_ok=True)
    script = run_dir / "train_gpt.py"
    shutil.copyfile(TRAIN_SCRIPT, script)
    env = tiny_env(data_dir, RUN_ID=run_id, SEED=str(TINY_RUN_SEED), **overrides)
    stdout_path = run_dir / f"stdout_{run_id}.log"
    with open(stdout_path, "w") as out:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=run_dir,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"tiny run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return TinyRun(
        run_dir=run_dir,
        script_path=script,
        log_path=run_dir / "logs" / f"{run_id}.txt",
        ptz_path=run_dir / "logs" / f"{run_id}.ptz",
        stdout_path=stdout_path,
        run_id=run_id,
        env=env,
    )


def load_train_gpt(path: Path = TRAIN_SCRIPT) -> ModuleType:
    """Import train_gpt.py from its file (it is a script, not a package module)."""
    name = f"train_gpt_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def train_gpt() -> ModuleType:
    """The competition script imported as a module, so tests exercise its real functions."""
    return load_train_gpt()


@pytest.fixture(scope="session")
def tiny_data_dir() -> Path:
    """A built tiny dataset (DIR/datasets/fineweb10B_sp1024, DIR/tokenizers/...). Read-only."""
    return build_tiny_data(cache_root())


@pytest.fixture(scope="session")
def tiny_run(tiny_data_dir: Path) -> TinyRun:
    """One real finished tiny CPU run of train_gpt.py (shared; treat it as read-only)."""
    root = cache_root()
    run_dir = root / "run"
    done = root / "run.done.json"
    with file_lock(root / "run.lock"):
        if done.is_file():
            saved = json.loads(done.read_text())
            return TinyRun(
                run_dir=Path(saved["run_dir"]),
                script_path=Path(saved["script_path"]),
                log_path=Path(saved["log_path"]),
                ptz_path=Path(saved["ptz_path"]),
                stdout_path=Path(saved["stdout_path"]),
                run_id=saved["run_id"],
                env=saved["env"],
            )
        shutil.rmtree(run_dir, ignore_errors=True)
        run = run_tiny(tiny_data_dir, run_dir, TINY_RUN_ID)
        record = {k: str(v) if isinstance(v, Path) else v for k, v in run.__dict__.items()}
        done.write_text(json.dumps(record, indent=2))
        return run
