"""Where the shared golf fixtures live, for the parser and validator tests.

CI lays a copy of ``shared/`` beside the clone, so the fixtures are ``<repo>/../shared``.
Their absence is a broken checkout, not a reason to skip: every test that needs them fails
with a message naming the path it looked at.

Tests asking for ``fixture_log`` run once per log in ``expected.json`` (a ``(record, log,
fields)`` tuple); tests asking for ``fixture_record`` once per record folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from golf_task.logs import parse_file

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


# ---------------------------------------------------------------------------- tiny CPU runs


@dataclass(frozen=True)
class SeedRun:
    seed: int
    log: Path
    script: Path


@pytest.fixture(scope="session")
def seed_runs(tiny_run, cross_process_lock) -> list[SeedRun]:  # noqa: ANN001 - root conftest
    """The shared tiny run plus two more seeds of the same script.

    The extra runs keep tiny_run's configuration and log format, train for as many steps as
    it did, and skip the diagnostic pre-quantization eval to stay cheap. They are
    cached beside tiny_run (same source hash, so a changed script reruns them), built once
    for all xdist workers under a file lock, and started together.
    """
    root = Path(tiny_run.run_dir).parent / "validate_seeds"
    done = root / "runs.json"
    with cross_process_lock(Path(str(root) + ".lock")):
        if done.is_file():
            return [
                SeedRun(r["seed"], Path(r["log"]), Path(r["script"]))
                for r in json.loads(done.read_text())
            ]
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        seed0 = int(tiny_run.env.get("SEED", "1337"))
        # the same number of steps as the shared run, not the same seconds: a wall-clock cap
        # on a loaded box would give seeds of very different quality
        steps = parse_file(tiny_run.log_path).stop_step
        extra = {"MAX_WALLCLOCK_SECONDS": "0", "ITERATIONS": str(steps), "PREQUANT_EVAL": "0"}
        runs = [SeedRun(seed0, Path(tiny_run.log_path), Path(tiny_run.script_path))]
        procs = []
        for seed in (seed0 + 1, seed0 + 2):
            run_dir = root / f"seed{seed}"
            run_dir.mkdir()
            script = run_dir / "train_gpt.py"
            shutil.copyfile(tiny_run.script_path, script)
            env = {**os.environ, **tiny_run.env, **extra}
            env.update(SEED=str(seed), RUN_ID=f"seed{seed}")
            proc = subprocess.Popen(
                [sys.executable, str(script)],
                cwd=run_dir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((seed, run_dir, script, proc))
        for seed, run_dir, script, proc in procs:
            _, err = proc.communicate(timeout=600)
            log = run_dir / "logs" / f"seed{seed}.txt"
            if proc.returncode != 0 or not log.is_file():
                pytest.fail(f"tiny run for seed {seed} failed ({proc.returncode}):\n{err[-3000:]}")
            runs.append(SeedRun(seed, log, script))
        done.write_text(
            json.dumps([{"seed": r.seed, "log": str(r.log), "script": str(r.script)} for r in runs])
        )
        return runs


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for in-process torch work: the box's 2 cores are shared, and at
    the tests' model sizes more threads only add contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
