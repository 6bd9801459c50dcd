"""The agent-facing commands: behaviour, --json shapes and bad-input errors.

Each test runs three times: on the default SQLite fast path (stdlib sqlite3), through
SQLAlchemy on SQLite (``HELM_DB_URL`` set to a SQLite URL), and on a real PostgreSQL server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from helm.models.tables import Agent, Pin, Run
from helm.workspace import Workspace

RUN_KEYS = {
    "id", "agent", "parent_id", "branch", "commit", "description", "status", "env", "seed",
    "gpus", "val_bpb", "val_loss", "bytes_total", "bytes_code", "train_time_ms", "steps",
    "host", "gpu_type", "job_id", "created_at", "finished_at", "tail",
    "gpu_seconds", "gpu_hours", "money", "screen", "screen_run_id", "screen_ref_id",
}  # fmt: skip
FEED_KEYS = {"id", "agent", "kind", "text", "run_id", "tags", "created_at"}


@pytest.fixture(params=["fast", "sqlalchemy", "postgres"])
def path_kind(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlalchemy":
        home.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("HELM_DB_URL", f"sqlite:///{home / 'other.db'}")
    elif request.param == "postgres":  # a real PostgreSQL server, as a team would use
        monkeypatch.setenv("HELM_DB_URL", request.getfixturevalue("postgres_url"))
    return request.param


@pytest.fixture
def seeded(path_kind: str, home: Path) -> Workspace:
    """Two agents, a pin and a handful of runs with known scores."""
    ws = Workspace(home).ensure()
    with ws.store.write() as s:
        s.add(Agent(name="alice", driver="sweep", branch="agents/alice"))
        s.add(Agent(name="bob", driver="claude", branch="agents/bob"))
        s.add(Pin(kind="init", ref="golf_task", commit="abc123"))
        s.add(Run(agent="alice", description="baseline", status="keep", val_bpb=1.30))
        s.add(Run(agent="alice", description="lr up", status="discard", val_bpb=1.35))
        s.add(Run(agent="bob", description="int5 mlp", status="keep", val_bpb=1.25))
        s.add(Run(agent="bob", description="boom", status="crash", tail="Traceback ...\nOOM"))
        s.add(Run(agent="bob", description="in flight", status="running"))
    return ws


def test_feed_post_and_ls_json(seeded: Workspace, helm) -> None:
    r = helm(
        "feed",
        "post",
        "int5 MLP frees 1.8 MB",
        "--agent",
        "alice",
        "--run",
        "1",
        "--tag",
        "quant",
        "--json",
    )
    assert r.code == 0, r.err
    post = r.json()
    assert set(post) == FEED_KEYS
    assert post["agent"] == "alice" and post["run_id"] == 1 and post["tags"] == ["quant"]
    helm("feed", "post", "second", "--agent", "bob")
    listed = helm("feed", "ls", "--json").json()
    assert [p["text"] for p in listed] == ["second", "int5 MLP frees 1.8 MB"]
    assert all(set(p) == FEED_KEYS for p in listed)
    assert helm("feed", "ls", "--kind", "ack", "--json").json() == []


def test_feed_since_filters_old_posts(seeded: Workspace, helm) -> None:
    helm("feed", "post", "old one")
    with seeded.store.write() as s:
        from helm.models.tables import FeedPost

        s.add(FeedPost(text="ancient", created_at=time.time() - 7200))
    texts = [p["text"] for p in helm("feed", "ls", "--since", "1h", "--json").json()]
    assert texts == ["old one"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("feed", "post", "   "), "feed text is empty"),
        (("feed", "post", "x", "--run", "999"), "no run 999"),
        (("feed", "ls", "--since", "yesterday"), "bad duration"),
        (("directive", "send", ""), "directive text is empty"),
        (("directive", "send", "x", "--to", "alice,mallory"), "unknown agent(s): mallory"),
        (("directive", "ack", "1"), "no agent: pass --agent"),
        (("directive", "ack", "42", "--agent", "alice"), "no directive 42"),
        (("context", "--agent", "nobody"), "no agent 'nobody'"),
        (("claim", "add", "x", "--agent", "ghost"), "no agent 'ghost'"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(seeded: Workspace, helm, args, message) -> None:
    r = helm(*args)
    assert r.code != 0
    assert message in r.err
    assert r.err.count("\n") == 1 and r.out == ""


def test_directive_send_ack_and_pending(seeded: Workspace, helm) -> None:
    d = helm("directive", "send", "try int5 for MLP weights", "--json").json()
    assert d["targets"] is None
    assert [x["agent"] for x in d["deliveries"]] == ["alice", "bob"]
    only_bob = helm("directive", "send", "stack GPTQ-lite", "--to", "bob", "--json").json()
    assert only_bob["targets"] == ["bob"]

    ctx = helm("context", "--agent", "alice", "--json").json()
    assert [x["text"] for x in ctx["directives"]] == ["try int5 for MLP weights"]

    ack = helm("directive", "ack", str(d["id"]), "--agent", "alice", "--json").json()
    assert ack["acked_at"] is not None
    again = helm("directive", "ack", str(d["id"]), "--agent", "alice", "--json").json()
    assert again["acked_at"] == ack["acked_at"]  # idempotent: first ack time kept
    assert helm("context", "--agent", "alice", "--json").json()["directives"] == []

    r = helm("directive", "ack", str(only_bob["id"]), "--agent", "alice")
    assert r.code == 1 and "not addressed to agent 'alice'" in r.err

    pending = helm("directive", "ls", "--pending", "--json").json()
    assert {p["id"] for p in pending} == {d["id"], only_bob["id"]}  # bob has acked neither
    acks = helm("feed", "ls", "--kind", "ack", "--json").json()
    assert len(acks) == 1 and acks[0]["agent"] == "alice"


def test_runs_and_leaderboard_rank_lower_is_better(seeded: Workspace, helm) -> None:
    runs = helm("runs", "--json").json()
    assert len(runs) == 5 and all(set(r) == RUN_KEYS for r in runs)
    assert [r["status"] for r in runs][:2] == ["running", "crash"]
    crash = next(r for r in runs if r["status"] == "crash")
    assert "OOM" in crash["tail"]

    board = helm("leaderboard", "--json").json()
    assert [(b["rank"], b["val_bpb"]) for b in board] == [(1, 1.25), (2, 1.30), (3, 1.35)]
    assert all(b["status"] != "crash" for b in board)

    text = helm("runs", "--tails").out
    assert "OOM" in text and "in flight" in text
    assert helm("runs", "--by", "alice", "--json").json()[0]["agent"] == "alice"


def test_context_has_everything_an_agent_needs(seeded: Workspace, helm) -> None:
    helm("feed", "post", "note", "--agent", "bob")
    helm("claim", "add", "trying EMA 0.998", "--agent", "bob")
    ctx = helm("context", "--agent", "alice", "--json").json()
    assert set(ctx) == {
        "agent", "base", "directives", "leaderboard", "feed", "claims", "audits", "usage",
        "budget", "improvement",
    }  # fmt: skip
    assert ctx["budget"] is None  # no [budget] in config.toml
    assert ctx["agent"]["name"] == "alice"
    assert ctx["agent"]["runs"] == 2 and ctx["agent"]["keeps"] == 1
    assert ctx["agent"]["best"]["val_bpb"] == 1.30
    assert ctx["base"]["commit"] == "abc123"
    assert ctx["leaderboard"][0]["val_bpb"] == 1.25
    assert ctx["claims"][0]["text"] == "trying EMA 0.998"
    text = helm("context", "--agent", "alice").out
    assert "Directives" in text and "1.2500" in text and "trying EMA 0.998" in text


def test_agent_from_environment(seeded: Workspace, helm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELM_AGENT", "bob")
    post = helm("feed", "post", "from env", "--json").json()
    assert post["agent"] == "bob"
    assert helm("context", "--json").json()["agent"]["name"] == "bob"


def test_expired_claims_drop_out(seeded: Workspace, helm) -> None:
    from helm.models.tables import Claim

    with seeded.store.write() as s:
        s.add(Claim(agent="bob", text="stale", created_at=0, expires_at=time.time() - 1))
    helm("claim", "add", "fresh", "--agent", "alice")
    assert [c["text"] for c in helm("claim", "ls", "--json").json()] == ["fresh"]


def test_context_text_separates_failed_and_unverified_audits(seeded: Workspace, helm) -> None:
    from helm.models.tables import Audit

    with seeded.store.write() as s:
        s.add(Audit(ref="openai/parameter-golf#601", verdict="copy", claimed_bpb=1.05))
        s.add(Audit(ref="openai/parameter-golf#603", verdict="real", claimed_bpb=1.12))
        s.add(Audit(ref="openai/parameter-golf#700", verdict="unverified", claimed_bpb=1.09))
    text = helm("context", "--agent", "alice").out
    failed, _, rest = text.partition("failed audit")[2].partition("not yet verified")
    assert "#601: copy" in failed and "#700" not in failed and "#603" not in failed
    assert "#700: claims 1.09" in rest and "#603" not in rest
    verdicts = {a["ref"][-3:]: a["verdict"] for a in helm("context", "--json").json()["audits"]}
    assert verdicts == {"601": "copy", "603": "real", "700": "unverified"}


def test_tables_print_scores_and_missing_values_one_way(seeded: Workspace, helm) -> None:
    lines = helm("leaderboard").out.splitlines()
    assert lines[0].split() == [
        "RANK", "RUN", "AGENT", "STATUS", "VAL_BPB", "BYTES", "STEPS", "GPU-H", "$",
        "SCREEN", "DESCRIPTION",
    ]  # fmt: skip
    assert lines[1].split() == [
        "1", "3", "bob", "keep", "1.2500", "-", "-", "0.00", "$0.00", "-", "int5", "mlp",
    ]  # fmt: skip
    crash = next(ln for ln in helm("runs").out.splitlines() if "boom" in ln)
    assert crash.split()[:5] == ["4", "bob", "crash", "-", "-"]  # no score, no size


def test_agent_commands_stay_off_the_orm(ws: Workspace) -> None:
    """``helm context``, ``feed post`` and ``directive ack`` run before and after every
    experiment of every agent: on the default store they must not load SQLAlchemy, SQLModel
    or Textual (half a second each)."""
    from helm.models.directives import send_directive

    with ws.store.write() as s:
        s.add(Agent(name="alice"))
    with ws.db(write=True) as db:
        directive = send_directive(db, "try int5")
    code = (
        "import sys\n"
        "from helm.cli import main\n"
        "for argv in (['context'], ['feed', 'post', 'x'], ['directive', 'ack', sys.argv[1]]):\n"
        "    assert main([*argv, '--agent', 'alice']) == 0, argv\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'sqlmodel', "
        "'textual'})\n"
        "sys.exit(f'imported {heavy}' if heavy else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(directive["id"])], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "acknowledged directive" in proc.stdout


def test_context_tells_an_agent_its_budget_is_spent(seeded: Workspace, helm) -> None:
    """A GPU-hour budget already used up: the agent reads it in ``helm context`` (text and
    JSON) before it tries to queue, and what it means for its next run."""
    from helm.models.tables import Job

    with seeded.store.write() as s:  # an ended job of alice's that held 2 GPU-hours
        s.add(Job(agent="alice", state="succeeded", gpus=1, gpu_seconds=7200.0, cost=0.0))
    seeded.config_path.write_text("[budget]\ngpu_hours = 1\n")
    ctx = helm("context", "--agent", "alice", "--json").json()
    assert ctx["budget"]["level"] == "stop", ctx["budget"]
    text = helm("context", "--agent", "alice").out
    assert "## Budget" in text and "budget reached" in text, text
    assert "`helm exp run` refuses" in text
    seeded.config_path.write_text("[budget]\ngpu_hourz = 1\n")  # a typo is said, not ignored
    res = helm("context", "--agent", "alice")
    assert res.code == 1 and "budget" in res.err and "Traceback" not in res.err
