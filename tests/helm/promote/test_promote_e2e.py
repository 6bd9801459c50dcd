"""End to end on the tiny CPU configuration: real training jobs run by the real daemon.

Each test is one scenario on its own campaign, so that under ``pytest -n 2`` the two
scenarios train side by side instead of both workers repeating the same runs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from golf_task.limits import ARTIFACT_CAP_BYTES
from golf_task.logs import parse_file
from golf_task.pack import pack, source_text
from golf_task.validate import validate_folder
from helm.models.jobs import find_job
from helm.models.submissions import list_submissions
from helm.workspace import Workspace

pytestmark = pytest.mark.slow
IDENT = ("--author", "Test Author", "--github-id", "tester")
# A tiny CPU model scores around 4 bpb after a few seconds: a SOTA of 10 is one it clears.


def _runs(ws: Workspace) -> list[dict]:
    with ws.db(write=False) as db:
        return db.rows("SELECT * FROM run ORDER BY id")


def _leftovers(ws: Workspace) -> list[Path]:
    return list((ws.submissions_dir).rglob(".helm-tmp-*"))


@pytest.mark.engines
def test_promote_three_seeds_then_a_crashing_seed(
    live: Workspace, helm, kit, tmp_path: Path
) -> None:  # noqa: ANN001
    ws = live
    original = kit.train(
        ws, kit.commit_run(ws, env=kit.FAST_ENV, seed=42, description="tiny baseline")
    )
    assert original["status"] == "done", original["tail"]

    # --dry-run: what would be queued and what it costs; nothing is queued
    # (no --author/--github-id needed just to see the plan)
    r = helm("promote", str(original["id"]), "--dry-run", "--json", "--sota", "10")
    assert r.code == 0, r.err
    plan = r.json()
    assert plan["queue"] == [1337, 2025]
    assert [s["action"] for s in plan["seeds"]] == ["reuse", "queue", "queue"]
    assert plan["gpu_hours"] > 0 and plan["gpu_hours_max"] >= plan["gpu_hours"]
    assert len(_runs(ws)) == 1

    # the promotion: reuse seed 42, queue 1337 and 2025 on the local host, write, validate
    r = helm(
        "promote", str(original["id"]), "--yes", "--json", "--sota", "10", "--name", "TinyGolf",
        *IDENT, "--poll", "0.3",
    )  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()
    assert "seed 1337" in r.err and "seed 2025" in r.err  # progress went to stderr
    folder = Path(out["folder"])
    assert folder.parent == ws.submissions_dir / "records" / "track_10min_16mb"
    assert folder.name.endswith("_TinyGolf")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "submission.json", "train_gpt.py", "train_gpt_human.py",
        "train_seed1337.log", "train_seed2025.log", "train_seed42.log",
    ]  # fmt: skip
    assert not _leftovers(ws)

    # the new runs are ordinary runs: same code and environment, parent = the promoted run
    new = [r for r in _runs(ws) if r["id"] != original["id"]]
    assert sorted(r["seed"] for r in new) == [1337, 2025]
    for run in new:
        assert run["status"] == "done"
        assert run["parent_id"] == original["id"]
        assert run["description"] == f"promote {original['id']} seed {run['seed']}"
        assert (run["code_hash"], run["env_json"]) == (original["code_hash"], original["env_json"])

    # the folder passes the validator on its own, significance included
    report = validate_folder(folder, sota=10.0)
    assert report.ok, [c for c in report.checks if c.status == "fail"]
    assert report.by_name("significance").status == "pass"
    assert out["report"]["ok"] is True

    # train_gpt.py in the form the logs counted (packed: PACK_CODE=1 is the default), the
    # script exactly as run beside it; the JSON's figures are the logs'
    committed = subprocess.run(
        ["git", "-C", str(ws.task_dir), "show", f"{original['commit']}:train_gpt.py"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    packed = pack(source_text(committed)).encode("utf-8")
    assert (folder / "train_gpt.py").read_bytes() == packed
    assert (folder / "train_gpt_human.py").read_bytes() == committed
    data = json.loads((folder / "submission.json").read_text())
    assert data["seeds"] == [42, 1337, 2025]
    logs = {s: parse_file(folder / f"train_seed{s}.log") for s in (42, 1337, 2025)}
    assert data["bytes_code"] == len(packed) == logs[42].bytes_code
    assert data["helm"]["code_form"] == "packed"
    for seed, summary in logs.items():
        entry = data["seed_results"][str(seed)]
        assert summary.seed == seed
        assert entry["val_bpb"] == summary.val_bpb
        assert entry["val_loss"] == summary.val_loss
        assert entry["artifact_bytes"] == summary.bytes_total
        assert entry["steps"] == summary.stop_step
        assert entry["step_avg_ms"] == summary.step_avg_ms
    bpbs = [s.val_bpb for s in logs.values()]
    assert data["val_bpb"] == pytest.approx(sum(bpbs) / 3, abs=1e-8)
    assert data["bytes_total"] == max(s.bytes_total for s in logs.values())
    assert original["val_bpb"] == logs[42].val_bpb
    readme = (folder / "README.md").read_text()
    assert "## Results per seed" in readme and "## Reproduce" in readme
    # the tiny preset's 1,024-piece vocabulary: the data its jobs read, named for reproducers
    assert "pointing at the sp1024 FineWeb" in readme and "--variant sp1024" in readme
    assert "Compared with base pin #1 (init golf_task)" in readme  # the change, from the diff
    assert "- code: unchanged" in readme and "`MAX_WALLCLOCK_SECONDS`: `(unset)` → `3`" in readme
    assert "## Validation" in readme and "p = " in readme
    assert "SEED=42 python train_gpt.py" in readme
    with ws.db(write=False) as db:
        subs = list_submissions(db)
    assert [(s["status"], s["path"]) for s in subs] == [("written", str(folder))]

    # now every seed is reused: nothing to queue
    r = helm("promote", str(original["id"]), "--dry-run", "--json", *IDENT)
    assert r.json()["queue"] == [] and r.json()["gpu_hours"] == 0

    # --git: a new branch in a clone of the competition repo; its checkout is untouched
    clone = tmp_path / "parameter-golf"
    _git_repo(clone)
    from helm.promote.gitexport import commit_folder

    sha = commit_folder(clone, folder, "record/tiny", message="Record: TinyGolf")
    files = _git(clone, "ls-tree", "-r", "--name-only", "record/tiny").splitlines()
    rel = f"records/track_10min_16mb/{folder.name}"
    assert f"{rel}/submission.json" in files and "README.md" in files
    assert _git(clone, "rev-parse", "record/tiny") == sha
    assert _git(clone, "branch", "--show-current") == "main"
    assert _git(clone, "status", "--porcelain") == ""

    # a seed the store cannot hold (its seed columns are 32-bit) is refused before any run
    huge = 2**32
    before = len(_runs(ws))
    r = helm(
        "promote", str(original["id"]), "--yes", "--seeds", f"42,{huge}", "--name", "Huge",
        "--sota", "10", *IDENT,
    )  # fmt: skip
    assert r.code == 2  # a usage error, refused by the command line before any plan
    assert "4294967296" in r.err and "0..4294967295" in r.err, r.err
    assert len(_runs(ws)) == before

    # a seed that fails for real: its job outlives a 1 s time limit and is stopped
    r = helm(
        "promote", str(original["id"]), "--yes", "--seeds", "42,7", "--name", "Crashy",
        "--time-limit", "1", "--sota", "10", *IDENT, "--poll", "0.3",
    )  # fmt: skip
    assert r.code == 1
    assert "seed 7 failed" in r.err.strip().splitlines()[-1], r.err
    assert not list(folder.parent.glob("*_Crashy"))
    assert not _leftovers(ws)
    crashed = [r for r in _runs(ws) if r["seed"] == 7]
    assert [r["status"] for r in crashed] == ["crash"]
    with ws.db(write=False) as db:
        job = find_job(db, crashed[0]["job_id"])
    assert job is not None and job["error"] == "time limit of 1s exceeded"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _git_repo(path: Path) -> None:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "t")
    _git(path, "config", "user.email", "t@example.com")
    (path / "README.md").write_text("parameter golf\n")
    _git(path, "add", "README.md")
    _git(path, "commit", "-q", "-m", "init")


def test_promote_refuses_an_artifact_over_the_cap(live: Workspace, helm, kit) -> None:  # noqa: ANN001
    ws = live
    big = kit.train(
        ws, kit.commit_run(ws, env=kit.OVER_CAP_ENV, seed=42, description="huge bigram table")
    )
    assert big["status"] == "done", big["tail"]
    assert big["bytes_total"] > ARTIFACT_CAP_BYTES

    r = helm("promote", str(big["id"]), "--yes", "--sota", "10", *IDENT)
    assert r.code == 1
    reason = r.err.strip().splitlines()[-1]
    assert "refused before any run is queued" in reason
    assert f"limits.artifact: over {ARTIFACT_CAP_BYTES:,} bytes" in reason  # the validator's
    assert "FAIL  limits.artifact" in r.err  # and its report
    assert len(_runs(ws)) == 1  # no GPU time spent on more seeds
    assert not (ws.submissions_dir / "records").exists()
