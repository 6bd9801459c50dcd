"""Screening (issue 17): a candidate's short, small run first; its full run only if it beats
the base's screen by the noise margin.

The experiment loop with the FakeBackend (real job rows ended through the daemon's record
functions; only the score is made up, see conftest.py): the screen's environment, a losing
screen left without a full run, a winning one promoted and linked, the base's screen run
once per best, references and re-seeds never screened, a budget reached by the screens
refusing the full run without losing the edit. Real tiny CPU jobs through the real
dispatcher are in test_screen_e2e.py.
"""

from __future__ import annotations

import json

import pytest
from git import Repo

from helm.agents import budget as bud
from helm.agents.config import ScreenConfig, load
from helm.agents.experiment import ExpRequest, run_experiment
from helm.agents.knobs import Knob
from helm.agents.screen import screen_env
from helm.models.feed import list_feed
from helm.models.hosts import insert_host
from helm.models.runs import get_run, ranked_rows, status_counts
from helm.models.screens import screen_links
from helm.models.states import FINISHED_RUN, SCREEN_RUN, RunStatus
from helm.workspace import Workspace


def screened_score(env: dict[str, str], seed: int | None) -> float | None:
    """The conftest bowl around MATRIX_LR=0.04, and a screen (fewer ITERATIONS than the
    script's 20000 default) scores 0.8 worse: the same ranking, another scale."""
    lr = float(env.get("MATRIX_LR", "0.025"))
    full = 1.5 + 40 * (lr - 0.04) ** 2
    return full + (0.8 if int(env.get("ITERATIONS", "20000")) < 20000 else 0.0)


@pytest.fixture
def sbackend(fake_backend_class):  # noqa: ANN001, ANN201
    class Recording(fake_backend_class):  # type: ignore[misc, valid-type]
        """Also notes the run's ``screen_ref_id`` as it stands when its job is queued."""

        def submit(self, ws, code_dir, **kw):  # noqa: ANN001, ANN003
            with ws.db(write=False) as db:
                ref = get_run(db, kw["run_id"])["screen_ref_id"]
            job_id = super().submit(ws, code_dir, **kw)
            self.submitted[-1]["screen_ref_id"] = ref
            return job_id

    return Recording(score=screened_score)


def _run(ws: Workspace, run_id: int) -> dict:
    with ws.db(write=False) as db:
        return get_run(db, run_id)


def _screens(backend) -> list[dict]:  # noqa: ANN001
    return [s for s in backend.submitted if int(s["env"].get("ITERATIONS", "20000")) < 20000]


def test_screen_env_scales_the_schedule_and_the_time_cap() -> None:
    conf = ScreenConfig(gpus=1, steps_frac=0.25)
    knobs = {
        "TRAIN_LOG_EVERY": Knob("TRAIN_LOG_EVERY", int, 200),
        "MAX_WALLCLOCK_SECONDS": Knob("MAX_WALLCLOCK_SECONDS", float, 600.0),
        "COMPILE": Knob("COMPILE", bool, True),
    }
    env = {"ITERATIONS": "50", "WARMDOWN_ITERS": "20", "VAL_LOSS_EVERY": "0", "SEED": "3"}
    got = screen_env(env, knobs, conf, full_gpus=8)
    assert got["ITERATIONS"] == "12" and got["WARMDOWN_ITERS"] == "5"
    assert got["VAL_LOSS_EVERY"] == "0"  # off stays off
    assert got["TRAIN_LOG_EVERY"] == "50"  # the script's default, scaled
    # a quarter of the work on 1 GPU instead of 8: the cap is 600 * 0.25 * 8
    assert got["MAX_WALLCLOCK_SECONDS"] == "1200"
    assert got["TTT"] == "0" and got["EVAL_STRIDE"] == "0" and got["SEED"] == "3"
    assert "COMPILE" not in got and env["ITERATIONS"] == "50"  # the full env is untouched
    tiny = screen_env({"ITERATIONS": "2"}, {}, ScreenConfig(steps_frac=0.1), full_gpus=1)
    assert tiny["ITERATIONS"] == "1"  # never zero steps


def test_screen_config_is_checked(ws: Workspace) -> None:
    from helm.agents.config import ConfigError

    ws.config_path.write_text("[agents.screen]\nenabled = true\nsteps_frac = 0.5\ngpus = 2\n")
    sc = load(ws.config_path).screen
    assert sc.enabled and sc.steps_frac == 0.5 and sc.gpus == 2 and sc.env["TTT"] == "0"
    ws.config_path.write_text("[agents.screen]\nsteps_frac = 1.5\n")
    with pytest.raises(ConfigError, match="steps_frac"):
        load(ws.config_path)


@pytest.mark.engines
def test_a_losing_screen_is_not_promoted_and_a_winning_one_is(
    task_ws: Workspace, agent: str, sbackend
) -> None:  # noqa: ANN001
    wt = task_ws.worktrees_dir / agent
    ref = run_experiment(task_ws, ExpRequest(agent, screen=True), backend=sbackend)
    assert ref.verdict == "keep" and _screens(sbackend) == []  # a reference: never screened

    bad = run_experiment(
        task_ws, ExpRequest(agent, "lr x8", env={"MATRIX_LR": "0.2"}, screen=True),
        backend=sbackend,
    )  # fmt: skip
    assert bad.verdict == RunStatus.SCREEN_FAIL
    assert len(sbackend.submitted) == 3  # the reference, the base's screen, this screen
    # queued with the base's screen named (before its job ran), the base's screen without
    refs_at_submit = [s["screen_ref_id"] for s in sbackend.submitted[1:]]
    shot = _run(task_ws, bad.run_id)
    assert shot["screen"] and shot["status"] == RunStatus.SCREEN_FAIL
    base_screen = _run(task_ws, shot["screen_ref_id"])
    assert base_screen["screen"] and base_screen["status"] == RunStatus.SCREENED
    assert base_screen["commit"] == ref.commit  # the code the candidate changes
    assert refs_at_submit == [None, base_screen["id"]]
    assert "does not beat" in bad.note and bad.val_bpb is None  # no full-run score claimed
    assert bad.screen["delta"] == pytest.approx(shot["val_bpb"] - base_screen["val_bpb"])
    assert Repo(wt).head.commit.hexsha == ref.commit  # back on the best, like a discard
    with task_ws.db(write=False) as db:
        posts = [p["text"] for p in list_feed(db, kind="result") if p["run_id"] == bad.run_id]
    assert len(posts) == 1 and posts[0].startswith(f"run {bad.run_id} SCREEN-FAIL: lr x8")

    good = run_experiment(
        task_ws, ExpRequest(agent, "lr 0.04", env={"MATRIX_LR": "0.04"}, screen=True),
        backend=sbackend,
    )  # fmt: skip
    assert good.verdict == "keep"  # the keep rule judged the full run
    full = _run(task_ws, good.run_id)
    assert not full["screen"] and full["screen_run_id"] is not None
    win = _run(task_ws, full["screen_run_id"])
    assert win["status"] == RunStatus.SCREEN_PASS and win["commit"] == full["commit"]
    assert win["screen_ref_id"] == base_screen["id"]  # the base's screen, found again
    assert len(_screens(sbackend)) == 3  # base once, two candidates
    assert good.screen["run_id"] == win["id"] and good.screen["ref_run_id"] == base_screen["id"]
    with task_ws.db(write=False) as db:
        links = screen_links(db, [full["id"], win["id"]])
        ranked = {r["id"] for r in ranked_rows(db)}
    assert links[full["id"]]["screen"] == win["id"] and links[win["id"]]["full"] == full["id"]
    assert links[win["id"]]["ref"] == base_screen["id"]
    # screens are never ranked, whatever they scored
    assert ranked == {ref.run_id, good.run_id}
    assert not SCREEN_RUN & FINISHED_RUN
    assert Repo(wt).head.commit.hexsha == good.commit

    # the next candidate changes the new best: a new base screen, of that code
    nxt = run_experiment(
        task_ws, ExpRequest(agent, "lr 0.2 again", env={"MATRIX_LR": "0.2"}, screen=True),
        backend=sbackend,
    )  # fmt: skip
    assert nxt.verdict == RunStatus.SCREEN_FAIL
    assert _run(task_ws, _run(task_ws, nxt.run_id)["screen_ref_id"])["commit"] == good.commit


def test_campaign_setting_and_no_screen(task_ws: Workspace, agent: str, sbackend) -> None:  # noqa: ANN001
    task_ws.config_path.write_text("[agents.screen]\nenabled = true\n")
    run_experiment(task_ws, ExpRequest(agent), backend=sbackend)
    res = run_experiment(task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.2"}), backend=sbackend)
    assert res.verdict == RunStatus.SCREEN_FAIL  # screened by the campaign's setting
    res = run_experiment(
        task_ws, ExpRequest(agent, env={"MATRIX_LR": "0.19"}, screen=False), backend=sbackend
    )
    assert res.verdict == "discard" and len(_screens(sbackend)) == 2  # --no-screen: none
    # a re-seeded repeat of the best changes nothing: no screen either
    res = run_experiment(task_ws, ExpRequest(agent, seed=7), backend=sbackend)
    assert res.verdict in ("keep", "discard") and len(_screens(sbackend)) == 2


def test_budget_reached_by_the_screens_keeps_the_edit(
    task_ws: Workspace, agent: str, fake_backend_class
) -> None:  # noqa: ANN001
    """The screens spend the rest of the budget: the full run is refused with the reason,
    the agent's edit is back in its worktree uncommitted, and once the budget is raised the
    same change is run in full through the screen it already passed (no screen re-run)."""

    class Costly(fake_backend_class):  # type: ignore[misc, valid-type]
        def submit(self, ws, code_dir, **kw):  # noqa: ANN001, ANN003
            job_id = super().submit(ws, code_dir, **kw)
            if int(kw["env"].get("ITERATIONS", "20000")) < 20000:  # a screen: $30 each
                with ws.db(write=True) as db:
                    db.execute("UPDATE job SET cost = 30.0 WHERE id = :i", {"i": job_id})
            return job_id

    backend = Costly(score=screened_score)
    LR = {"MATRIX_LR": "0.04"}  # noqa: N806  (a change that wins its screen)
    with task_ws.db(write=True) as db:
        insert_host(db, name="fake", kind="local", gpus=8, workdir="/fake", price_per_gpu_hour=0.0)
    wt = task_ws.worktrees_dir / agent
    ref = run_experiment(task_ws, ExpRequest(agent), backend=backend)
    task_ws.config_path.write_text("[budget]\nmoney = 50.0\n")
    edited = (wt / "train_gpt.py").read_text() + "\n# my idea\n"
    (wt / "train_gpt.py").write_text(edited)
    with pytest.raises(bud.BudgetReached, match="budget reached"):
        run_experiment(task_ws, ExpRequest(agent, "idea", env=LR, screen=True), backend=backend)
    repo = Repo(wt)
    assert repo.head.commit.hexsha == ref.commit and repo.is_dirty()
    assert (wt / "train_gpt.py").read_text() == edited  # nothing lost
    with task_ws.db(write=False) as db:
        runs = db.rows("SELECT id, screen, status FROM run ORDER BY id")
    assert [(bool(r["screen"]), r["status"]) for r in runs[1:]] == [
        (True, RunStatus.SCREENED),
        (True, RunStatus.SCREEN_PASS),
    ]
    with task_ws.db(write=False) as db:
        assert status_counts(db) == {
            (RunStatus.KEEP, False): 1,
            (RunStatus.SCREENED, True): 1,
            (RunStatus.SCREEN_PASS, True): 1,
        }
    task_ws.config_path.write_text("[budget]\nmoney = 500.0\n")
    res = run_experiment(task_ws, ExpRequest(agent, "idea", env=LR, screen=True), backend=backend)
    assert res.verdict in ("keep", "discard") and len(_screens(backend)) == 2
    assert _run(task_ws, res.run_id)["screen_run_id"] == runs[2]["id"]
    full_env = json.loads(_run(task_ws, res.run_id)["env_json"])
    assert full_env["MATRIX_LR"] == "0.04" and "ITERATIONS" not in full_env


def test_the_sweep_screens_and_never_reproposes_a_screened_out_value(
    task_ws: Workspace, agent: str, sbackend
) -> None:  # noqa: ANN001
    from helm.agents.sweep import SweepAgent

    task_ws.config_path.write_text(
        "[agents.screen]\nenabled = true\n"
        '[agents.sweep]\nmeasure_noise = false\nkeys = ["MATRIX_LR"]\nrandom_prob = 0.0\n'
    )
    sa = SweepAgent(task_ws, agent, backend=sbackend, poll_s=0.01, seed=3)
    sa.run(max_steps=6)
    with task_ws.db(write=False) as db:
        runs = db.rows("SELECT * FROM run ORDER BY id")
        posts = [p["text"] for p in list_feed(db, kind="insight")]
    fails = [r for r in runs if r["status"] == RunStatus.SCREEN_FAIL]
    fulls = [r for r in runs if not r["screen"]]
    assert fails, [(r["id"], r["status"], r["description"]) for r in runs]
    # every full run after the reference came through a screen that passed
    assert all(r["screen_run_id"] for r in fulls[1:]) and len(fulls) >= 2
    assert {_run(task_ws, r["screen_run_id"])["status"] for r in fulls[1:]} == {
        RunStatus.SCREEN_PASS
    }
    # told once per screened-out value: the sweep never proposed one again
    outs = [p for p in posts if "screened out" in p]
    assert len(outs) == len(fails)


@pytest.mark.engines
def test_the_margin_is_the_configured_share_of_the_screens_own_spread(ws: Workspace) -> None:
    from helm.agents.config import AgentsConfig, KeepRule
    from helm.agents.screen import margin
    from helm.models.runs import insert_run

    conf = AgentsConfig(
        screen=ScreenConfig(k=2.0, min_delta=0.001), keep=KeepRule(default_spread=0.004)
    )
    with ws.db(write=True) as db:
        assert margin(db, AgentsConfig()) == (0.0, "default spread")  # k = 0: any gain passes
        assert margin(db, conf) == (pytest.approx(0.008), "default spread")
        for seed, bpb in ((1, 1.50), (2, 1.51)):  # full runs repeated under two seeds
            insert_run(db, code_hash="h", env_json="{}", seed=seed, status="keep", val_bpb=bpb)
        assert margin(db, conf)[1] == "full runs' spread"
        assert margin(db, conf)[0] == pytest.approx(2 * 0.01 / 2**0.5)
        for seed, bpb in ((1, 2.0), (2, 2.0002)):  # screens repeated: their own spread wins
            insert_run(db, code_hash="h", env_json="{}", seed=seed, status=RunStatus.SCREENED,
                       val_bpb=bpb, screen=True)  # fmt: skip
        bar, source = margin(db, conf)
        assert source == "screens' spread" and bar == pytest.approx(0.001)  # min_delta floor
