"""``helm diff`` on runs with known changes: code lines, environment, hyperparameters, results."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm.promote.diff import diff_runs
from helm.promote.render import render_diff
from helm.workspace import Workspace

BASE_ENV = {"MODEL_DIM": "128", "NUM_LAYERS": "4", "MATRIX_LR": "0.025"}
NEW_ENV = {"MODEL_DIM": "192", "NUM_LAYERS": "4", "MLP_MULT": "4"}  # changed, same, -LR, +MLP


def _log(ws: Workspace, job_id: int, hp: dict[str, str]) -> None:
    folder = ws.job_dir(job_id)
    folder.mkdir(parents=True)
    lines = ["Hyperparameters:", *[f"  {k}: {v}" for k, v in hp.items()], "model_params:1"]
    (folder / "train.log").write_text("\n".join(lines) + "\n")


def _edit(wt: Path) -> None:
    """Three lines added, one removed in train_gpt.py; a new two-line helper file."""
    script = wt / "train_gpt.py"
    lines = script.read_text().splitlines(keepends=True)
    first_def = next(i for i, x in enumerate(lines) if x.startswith("def "))
    del lines[first_def - 1]  # a blank line before the first function
    lines += ["\n", "# int5 for MLP weights\n", "MLP_BITS = 5\n"]
    script.write_text("".join(lines))
    (wt / "helper.py").write_text("X = 1\nY = 2\n")


def _pair(ws: Workspace, kit) -> tuple[int, int]:  # noqa: ANN001
    old = kit.commit_run(
        ws, env=BASE_ENV, seed=42, status="keep", val_bpb=1.30, val_loss=2.20,
        bytes_total=15_000_000, bytes_code=45_000, steps=1000, step_avg_ms=60.0,
        train_time_ms=60_000.0, job_id=901, description="baseline",
    )  # fmt: skip
    new = kit.commit_run(
        ws, env=NEW_ENV, seed=42, edit=_edit, parent=old, status="keep", val_bpb=1.28,
        val_loss=2.17, bytes_total=15_500_000, bytes_code=45_060, steps=900,
        step_avg_ms=66.5, train_time_ms=59_850.0, job_id=902, description="wider, int5 mlp",
    )  # fmt: skip
    _log(ws, 901, {"model_dim": "128", "num_layers": "4", "seed": "42"})
    _log(ws, 902, {"model_dim": "192", "num_layers": "4", "seed": "42"})
    return old, new


def test_diff_against_parent_counts_lines_and_marks_changes(task_ws: Workspace, kit) -> None:  # noqa: ANN001
    old, new = _pair(task_ws, kit)
    d = diff_runs(task_ws, new)  # B defaults to the parent
    assert d.b.run_id == old and d.b.label == f"run #{old} (parent)"
    files = {f.path: (f.status, f.added, f.removed) for f in d.files}
    assert files == {"train_gpt.py": ("modified", 3, 1), "helper.py": ("added", 2, 0)}
    assert (d.added, d.removed) == (5, 1)
    assert "+MLP_BITS = 5" in d.patch and "run.env" not in d.patch
    env = {r.key: (r.b, r.a, r.changed) for r in d.env}
    assert env == {
        "MATRIX_LR": ("0.025", None, True),
        "MLP_MULT": (None, "4", True),
        "MODEL_DIM": ("128", "192", True),
        "NUM_LAYERS": ("4", "4", False),
    }
    hp = {r.key: (r.b, r.a) for r in d.hyperparameters if r.changed}
    assert hp == {"model_dim": ("128", "192")}
    res = {m.name: m for m in d.results}
    assert res["val_bpb"].delta == 1.28 - 1.30
    assert res["bytes_total"].delta == 500_000
    assert res["steps"].delta == -100
    assert res["seed"].a == res["seed"].b == 42
    assert res["seeds"].a == [42]

    text = render_diff(d)
    assert "2 file(s) changed, +5 -1 lines" in text
    assert "train_gpt.py  +3 -1  (modified)" in text
    assert "*  MODEL_DIM" in text and "   NUM_LAYERS" in text
    assert "-0.02000000" in text  # the val_bpb delta


@pytest.mark.engines
def test_diff_cli_json_text_and_errors(task_ws: Workspace, kit, helm) -> None:  # noqa: ANN001
    old, new = _pair(task_ws, kit)
    r = helm("diff", str(new), str(old), "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert set(data) == {"a", "b", "code", "env", "hyperparameters", "results", "base"}
    assert data["a"]["run_id"] == new and data["b"]["run_id"] == old
    assert data["code"]["added"] == 5 and data["code"]["removed"] == 1
    assert {"key": "MODEL_DIM", "a": "192", "b": "128", "changed": True} in data["env"]
    bpb = next(m for m in data["results"] if m["metric"] == "val_bpb")
    assert bpb["a"] == 1.28 and bpb["b"] == 1.30 and abs(bpb["delta"] + 0.02) < 1e-12

    r = helm("diff", str(new), "--stat")
    assert r.code == 0 and "+5 -1 lines" in r.out and "@@" not in r.out

    r = helm("diff", str(old))
    assert r.code == 1 and f"run {old} has no parent" in r.err
    r = helm("diff", "999")
    assert r.code == 1 and "no run 999" in r.err
    r = helm("diff", str(new), str(old), "--base")
    assert r.code == 2


@pytest.mark.engines
def test_diff_against_the_pinned_base(task_ws: Workspace, kit, helm) -> None:  # noqa: ANN001
    _old, new = _pair(task_ws, kit)
    r = helm("diff", str(new), "--base", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["b"]["label"].startswith("base pin #1 (init")
    assert data["b"]["run_id"] is None
    # the base is the bundled script: both the edit and the helper count
    assert data["code"]["added"] == 5 and data["code"]["removed"] == 1
    # the base's run.env is empty: every key of the run's run.env is new there
    env = {e["key"]: (e["b"], e["a"]) for e in data["env"]}
    assert env["MODEL_DIM"] == (None, "192")
