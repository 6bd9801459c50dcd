"""Helpers for the audit tests: a GitHub that serves recorded responses and the PR folders
they point at (fixtures live in conftest.py).

GitHub cannot be reached from here. ``github()`` serves the recorded pull and files
responses in ``fixtures/github/`` (shaped exactly like GitHub's REST API, as in
``tests/helm/agents``) through ``httpx.MockTransport``; the files' contents at the head
commit come from the folders built below, so the code under test makes the same requests it
makes against api.github.com.

The "real" PR is built from our own tiny CPU runs: helm's script with one default changed
(``qk_gain_init`` 5.0 -> 5.1), run for two seeds with an iteration-bound tiny configuration
(no wall-clock cap, so a rerun of the same seed is deterministic), its README stating that
configuration. The two runs are cached across sessions like the shared tiny run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from golf_task.logs import parse_file
from golf_task.presets import TINY_CPU_ENV, tiny_env

REPO = Path(__file__).resolve().parents[3]
FIX = Path(__file__).parent / "fixtures" / "github"
SHARED = REPO.parent / "shared" / "golf_fixtures"
RECORDS = SHARED / "records"
BUNDLED = REPO / "golf_task" / "train_gpt.py"
PREFIX = "records/track_10min_16mb/"
RECORD_11L = RECORDS / "2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271"

# The configuration the "real" PR states in its README (no data paths: the box has those).
REAL_ENV: dict[str, str] = {
    **TINY_CPU_ENV,
    "ITERATIONS": "12",
    "MAX_WALLCLOCK_SECONDS": "0",
    "WARMDOWN_ITERS": "4",
    "MUON_MOMENTUM_WARMUP_STEPS": "4",
    "TRAIN_LOG_EVERY": "4",
    "EVAL_STRIDE": "0",
    "PREQUANT_EVAL": "0",
    "TTT": "0",
}
REAL_SEEDS = (1, 2)


def modified_script() -> bytes:
    """helm's script with one changed default: derived from the baseline, not a copy."""
    src = BUNDLED.read_bytes()
    old = b"    qk_gain_init: float = 5.0\n"
    assert old in src, "the bundled script's qk_gain_init default moved: update the test"
    return src.replace(old, b"    qk_gain_init: float = 5.1\n")


def readme(title: str, env: dict[str, str] | None) -> bytes:
    text = f"# {title}\n\nWhat changed and why.\n"
    if env:
        assigns = " ".join(f"{k}={v}" for k, v in env.items())
        text += f"\n## Reproduce\n\n```bash\n{assigns} SEED=1 python train_gpt.py\n```\n"
    return text.encode()


def submission(logs: dict[int, Path], script: bytes, **overrides: object) -> bytes:
    """A submission.json whose figures are the logs' own (then ``overrides``)."""
    sums = {seed: parse_file(p) for seed, p in logs.items()}
    bpbs = [s.val_bpb for s in sums.values()]
    data: dict[str, object] = {
        "author": "Test Author",
        "github_id": "tester",
        "name": "tiny",
        "blurb": "a tiny CPU run",
        "date": "2026-05-03",
        "val_bpb": sum(bpbs) / len(bpbs),
        "val_loss": sum(s.val_loss for s in sums.values()) / len(sums),
        "bytes_total": max(s.bytes_total for s in sums.values()),
        "bytes_code": len(script),
        "seeds": list(sums),
        "seed_results": {
            str(seed): {"val_bpb": s.val_bpb, "val_loss": s.val_loss, "steps": s.stop_step}
            for seed, s in sums.items()
        },
    }
    data.update(overrides)
    return (json.dumps(data, indent=2) + "\n").encode()


# ------------------------------------------------------------------------------- GitHub


def github(contents: dict[int, dict[str, bytes]], requests: list[httpx.Request] | None = None):
    """A MockTransport answering like api.github.com for the PRs in ``contents``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if requests is not None:
            requests.append(request)
        path = request.url.path
        base = "/repos/openai/parameter-golf"
        for number, files in contents.items():
            pull = json.loads((FIX / f"pull_{number}.json").read_text())
            if path == f"{base}/pulls/{number}":
                return httpx.Response(200, json=pull)
            if path == f"{base}/pulls/{number}/files":
                listing = json.loads((FIX / f"pull_{number}_files.json").read_text())
                return httpx.Response(200, json=listing)
            if (
                path.startswith(f"{base}/contents/")
                and request.url.params.get("ref") == pull["head"]["sha"]
            ):
                rel = path.removeprefix(f"{base}/contents/")
                for name, data in files.items():
                    if rel.endswith("/" + name) and rel.startswith(PREFIX):
                        listing = json.loads((FIX / f"pull_{number}_files.json").read_text())
                        if any(f["filename"] == rel for f in listing):
                            return httpx.Response(200, content=data)
        return httpx.Response(404, json=json.loads((FIX / "not_found.json").read_text()))

    return httpx.MockTransport(handler)


def record_11l_files(script: bytes, claim: float | None = None) -> dict[str, bytes]:
    """A PR made of the 11L record's logs and JSON (optionally claiming ``claim``)."""
    files = {
        "train_gpt.py": script,
        "README.md": readme("11L record", None),
        "final_model.ptz": b"\x00" * 64,
    }
    data = json.loads((RECORD_11L / "submission.json").read_text())
    if claim is not None:
        data["val_bpb"] = claim
    data["bytes_code"] = len(script)  # the JSON describes the code it ships
    files["submission.json"] = (json.dumps(data, indent=2) + "\n").encode()
    for seed in (1337, 42, 2025):
        files[f"train_seed{seed}.log"] = (RECORD_11L / f"train_seed{seed}.log").read_bytes()
    return files


# ------------------------------------------------------------------------------- tiny runs


def cache_dir() -> Path:
    h = hashlib.sha256(sys.version.encode())
    for p in (BUNDLED, REPO / "golf_task" / "data.py", REPO / "golf_task" / "presets.py"):
        h.update(p.read_bytes())
    h.update(json.dumps(REAL_ENV, sort_keys=True).encode())
    base = os.environ.get("HELM_TEST_CACHE") or Path(tempfile.gettempdir()) / "helm-test-cache"
    root = Path(base) / f"audit-{h.hexdigest()[:16]}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_seeds(data_dir: Path, out: Path) -> dict[int, Path]:
    """Both seeds side by side (one core each); their logs/<id>.txt, echo of the code included."""
    procs = []
    for seed in REAL_SEEDS:
        run_dir = out / f"seed{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        (run_dir / "train_gpt.py").write_bytes(modified_script())
        env = tiny_env(data_dir, **{**REAL_ENV, "RUN_ID": f"s{seed}", "SEED": str(seed)})
        procs.append(
            subprocess.Popen(
                [sys.executable, "train_gpt.py"],
                cwd=run_dir,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"tiny run failed: {err.decode()[-3000:]}")
    return {seed: out / f"seed{seed}" / "logs" / f"s{seed}.txt" for seed in REAL_SEEDS}


def tiny_pr_files(
    logs: dict[int, Path], *, stated: dict[str, str] | None = None, **claim: object
) -> dict[str, bytes]:
    """The 'real' PR: its script, the two seeds' logs, a JSON of their figures, a README
    stating ``stated`` (default: the configuration the logs really ran with)."""
    script = modified_script()
    files = {
        "train_gpt.py": script,
        "README.md": readme("tiny qk-gain 1.6", REAL_ENV if stated is None else stated),
        "submission.json": submission(logs, script, **claim),
    }
    for seed, path in logs.items():
        files[f"train_seed{seed}.log"] = path.read_bytes()
    return files
