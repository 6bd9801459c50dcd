"""bench/early_abort.py: the comparison it reports (the passes themselves train for minutes
and are run by hand; their figures are in bench/RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import early_abort as ea  # noqa: E402


def _pass(gpu_s: float, kept: list[list]) -> dict:
    return {"gpu_seconds": gpu_s, "kept": kept, "experiments": 4, "full_runs_finished": 3,
            "screens": 2, "screened_out": 1, "aborted": 1, "crashed": 0, "wall_s": 9.0,
            "load_avg_1_5_15": [1.0, 1.0, 1.0]}  # fmt: skip


def test_goal_needs_the_saving_and_every_kept_run() -> None:
    plain = _pass(1000.0, [["a1", 0], ["a1", 5], ["a2", 0]])
    same = ea.compare(plain, _pass(600.0, [["a1", 0], ["a1", 5], ["a2", 0], ["a2", 3]]))
    assert same["gpu_seconds_saved_share"] == 0.4 and same["goal_met"]
    assert same["kept_lost"] == [] and same["kept_gained"] == [["a2", 3]]
    lost = ea.compare(plain, _pass(500.0, [["a1", 0], ["a2", 0]]))
    assert lost["kept_lost"] == [["a1", 5]] and not lost["goal_met"]
    assert lost["first_divergence"] == {"a1": 5} and same["first_divergence"] == {"a2": 3}
    small = ea.compare(plain, _pass(800.0, plain["kept"]))
    assert small["gpu_seconds_saved_share"] == 0.2 and not small["goal_met"]
    text = "\n".join(ea.table(plain, _pass(800.0, plain["kept"]), small))
    assert "| GPU-seconds | 1000.0 | 800.0 |" in text and "20%" in text and "NOT met" in text


def test_arguments_are_checked() -> None:
    import pytest

    with pytest.raises(SystemExit):
        ea.main(["--screen-frac", "0"])
    with pytest.raises(SystemExit):
        ea.main(["--slots", "2", "--full-gpus", "3"])  # more than the box has
    with pytest.raises(SystemExit):
        ea.main(["--full-gpus", "0"])
