"""The task repository, ``base``, worktrees, code hashes."""

from __future__ import annotations

from pathlib import Path

from git import Repo

from helm.agents import taskrepo as tr
from helm.models.pins import pin_history
from helm.workspace import Workspace


def _head(wt: Path) -> str:
    return Repo(wt).head.commit.hexsha


def test_created_from_golf_task_with_init_pin(ws: Workspace) -> None:
    repo, created = tr.ensure_task_repo(ws)
    assert created and repo.active_branch.name == "base"
    assert (ws.task_dir / "train_gpt.py").read_bytes() == (
        tr.bundled_dir() / "train_gpt.py"
    ).read_bytes()
    _, again = tr.ensure_task_repo(ws)
    assert not again
    with ws.db(write=False) as db:
        pins = pin_history(db)
    assert [(p["kind"], p["commit"]) for p in pins] == [("init", repo.commit(tr.BASE).hexsha)]


def test_cloned_from_a_path(ws: Workspace, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    r = Repo.init(src)
    (src / "train_gpt.py").write_text("print(1)\n")
    r.git.add("-A")
    # an identity of its own: a fresh machine may have no global git user
    r.git.commit(
        "-m",
        "x",
        "--author",
        "t <t@t>",
        env={"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"},
    )
    repo, _ = tr.ensure_task_repo(ws, str(src))
    assert repo.active_branch.name == "base"
    assert (ws.task_dir / "train_gpt.py").read_text() == "print(1)\n"


def test_worktrees_hash_reset(ws: Workspace) -> None:
    tr.ensure_task_repo(ws)
    a = tr.ensure_worktree(ws, "a")
    b = tr.ensure_worktree(ws, "b")
    assert Repo(a).active_branch.name == "agents/a" and Repo(b).active_branch.name == "agents/b"
    assert tr.ensure_worktree(ws, "a") == a  # idempotent
    start = _head(a)
    h0 = tr.code_hash(a, tr.stage_tree(a))
    tr.write_env(a, {"X": "1"})
    assert tr.code_hash(a, tr.stage_tree(a)) == h0  # env is not code
    (a / "train_gpt.py").write_text("changed\n")
    (a / "DIRECTIVES.md").write_text("helm's file\n")
    tree = tr.stage_tree(a)
    assert tr.code_hash(a, tree) != h0
    c = tr.commit_staged(a, "edit")
    assert c != start and tr.read_env(a) == {"X": "1"}
    assert "DIRECTIVES.md" not in Repo(a).git.ls_files()
    tr.reset_to(a, start)
    assert _head(a) == start and tr.read_env(a) == {}
    assert (a / "DIRECTIVES.md").exists()  # helm's files survive resets
    out = tr.export_commit(a, c, ws.root / "exp")
    assert (out / "train_gpt.py").read_text() == "changed\n" and not (out / ".git").exists()
    # a worktree folder that went missing is attached again to its branch, where it stopped
    Repo(ws.task_dir).git.worktree("remove", "--force", str(a))
    assert not a.exists() and "agents/a" in Repo(ws.task_dir).heads  # the branch stays
    assert tr.ensure_worktree(ws, "a") == a and _head(a) == start
