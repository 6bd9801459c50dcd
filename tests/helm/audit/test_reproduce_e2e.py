"""A real PR, reproduced: our own tiny CPU runs submitted as PR 603, rerun by the daemon.

GitHub cannot be reached from here: the PR is served from the recorded responses in
``fixtures/github/`` (see conftest.py). Its folder holds helm's script with one default
changed, the logs of two seeds of an iteration-bound tiny configuration and a README that
states that configuration, so the rerun on the local CPU host runs exactly what its author
ran and lands within the seed spread of the claim.
"""

from __future__ import annotations

import pytest
from audit_kit import REAL_ENV, tiny_pr_files

from golf_task.logs import parse_file
from helm.models.runs import list_runs
from helm.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.mark.engines
def test_a_real_pr_reproduces_within_the_spread(helm, live: Workspace, real_logs, serve) -> None:
    serve({603: tiny_pr_files(real_logs)})
    res = helm(
        "audit", "pr", "603", "--reproduce", "--gpus", "1", "--time-limit", "5m",
        "--poll", "0.3", "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    ev = res.json()
    by = {f["name"]: f for f in ev["findings"]}
    assert ev["verdict"] == "real", (ev["reason"], ev["reproduction"])
    # static: a one-line edit of the baseline, logs made by exactly this code with the
    # stated settings, a claim that is the mean of its two seeds
    assert by["code.similarity"]["status"] == "warn"
    assert by["code.similarity"]["details"]["best"]["changed_lines"] == 1
    assert by["code.log_echo"]["status"] == "pass"
    assert by["logs.hyperparameters"]["status"] == "pass", by["logs.hyperparameters"]
    assert by["claim.logs"]["status"] == "pass"
    assert not [f for f in ev["findings"] if f["status"] == "fail"]
    # the rerun: the claim's first seed, the PR's own configuration, the box's data
    repro = ev["reproduction"]
    assert repro["seeds"] == [1] and repro["outcome"] == "reproduced"
    assert repro["stated"]["ITERATIONS"] == "12" and repro["stated"]["OMP_NUM_THREADS"] == "1"
    assert set(repro["stated"]) == set(REAL_ENV)
    assert "DATA_PATH" not in repro["env"]
    (run,) = repro["runs"]
    assert run["state"] == "succeeded" and run["stop_step"] == 12
    claimed = [parse_file(p).val_bpb for p in real_logs.values()]
    assert ev["claimed_bpb"] == pytest.approx(sum(claimed) / 2)
    assert abs(run["val_bpb"] - claimed[0]) <= repro["spread"]  # same seed, same program
    assert abs(repro["gap_bpb"]) <= repro["k"] * repro["spread"]
    assert "spreads" in repro["summary"]
    # no Run row: a community script's score is not ours for the leaderboard
    with live.db(write=False) as db:
        assert list_runs(db) == []
    listed = helm("audit", "ls", "--json").json()[0]
    assert listed["verdict"] == "real"
    assert listed["reproduced_bpb"] == pytest.approx(run["val_bpb"])
    text = helm("context").out
    assert "do not build on them" not in text  # not flagged for agents
    assert "audit openai/parameter-golf#603: REAL" in text  # the verification in the feed
    # a passing audit at the PR's head commit: pinned without --force
    res = helm("pin", "pr", "603", "--json")
    assert res.code == 0, res.err
    assert res.json()["ref"] == "openai/parameter-golf#603"


def test_a_claim_its_stated_recipe_does_not_reach_is_not_reproduced(
    helm, live: Workspace, real_logs, serve
) -> None:
    """PR 604: the same logs, but its README says 4 steps where the logs ran 12.

    Static checks only warn (a schedule setting the logs print differs from the stated
    one); the rerun of the recipe as stated scores far worse than the claim.
    """
    serve({604: tiny_pr_files(real_logs, stated={**REAL_ENV, "ITERATIONS": "4"})})
    res = helm(
        "audit", "pr", "604", "--reproduce", "--gpus", "1", "--time-limit", "5m",
        "--poll", "0.3", "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    ev = res.json()
    hp = next(f for f in ev["findings"] if f["name"] == "logs.hyperparameters")
    assert hp["status"] == "warn" and "iterations" in hp["message"]
    repro = ev["reproduction"]
    assert repro["env"]["ITERATIONS"] == "4" and repro["runs"][0]["stop_step"] == 4
    assert ev["verdict"] == "not_reproduced", (ev["reason"], repro)
    assert repro["gap_bpb"] > repro["k"] * repro["spread"] > 0
    assert f"= +{repro['gap_spreads']:.2f} spreads" in ev["reason"]
    row = helm("audit", "ls", "--json").json()[0]
    assert row["verdict"] == "not_reproduced" and row["gap_spreads"] > 3
    res = helm("pin", "pr", "604")
    assert res.code == 1 and "audit says not_reproduced" in res.err
