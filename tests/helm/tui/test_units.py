"""The pure parts: registry and keymap, snapshot reads, rows, pin parsing, curve and chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_campaign import LOG_LINES, T0

from helm.tui import commands as cmds
from helm.tui import data, ops, rows
from helm.tui.curve import Curve
from helm.tui.fmt import Palette
from helm.tui.screens.views import plot_data
from helm.tui.widgets.chart import ChartData, Series, render_chart
from helm.workspace import Workspace

PAL = Palette.from_variables({})


def test_registry_ids_and_keys_are_unique_per_context() -> None:
    assert len(cmds.BY_ID) == len(cmds.REGISTRY)
    for ctx in (cmds.APP, cmds.MAIN, cmds.DETAIL, cmds.VIEW):
        keys = [c.key for c in cmds.commands_for(ctx)]
        assert len(keys) == len(set(keys)), ctx
    assert cmds.BY_ID["promote"].key == "P"


def test_keymap_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    assert cmds.load_keymap(cfg) == {}
    cfg.write_text('[keys]\nbroadcast = "B"\nquit = "ctrl+q"\n')
    assert cmds.load_keymap(cfg) == {"broadcast": "B", "quit": "ctrl+q"}
    cfg.write_text('[keys]\nlaunch_missiles = "x"\n')
    with pytest.raises(cmds.KeymapError, match="launch_missiles"):
        cmds.load_keymap(cfg)
    cfg.write_text("[keys\n")
    with pytest.raises(cmds.KeymapError):
        cmds.load_keymap(cfg)


def test_snapshot_of_the_campaign(campaign: Workspace) -> None:
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert [a.name for a in snap.agents] == ["alpha", "bravo", "charlie"]
    alpha = snap.agents[0]
    assert alpha.job is not None and alpha.job.id == 1 and alpha.job.gpu_ids == (0, 1)
    assert snap.agents[1].job is not None and snap.agents[1].job.state == "queued"
    assert [j.id for j in snap.jobs] == [3]  # the agent-less queued job
    assert (snap.jobs_running, snap.jobs_queued) == (1, 2)
    assert (snap.gpus_busy, snap.gpus_total) == (2, 12)
    assert snap.best is not None and snap.best["id"] == 11
    assert snap.pin is not None and snap.base_run_ids == frozenset({8})
    assert snap.base_bpb == pytest.approx(1.2244 - 0.032)
    assert snap.seeds == {**{f"h{i}": 1 for i in range(1, 12) if i not in (6, 7)}, "h6": 2}
    assert snap.directives_pending == 1 and snap.directives[0].acked == 1
    assert [p["kind"] for p in snap.feed] == ["ack", "result", "insight"]
    host = next(h for h in snap.hosts if h.name == "h100-a")
    assert host.busy == 2 and host.gpu_list[0].util == 97


def test_filter_narrows_the_leaderboard_in_sql(campaign: Workspace) -> None:
    snap = data.load_snapshot(campaign, clock=lambda: T0, flt="int5")
    assert [r["id"] for r in snap.leaderboard] == [4]
    assert snap.leaderboard[0]["rank"] == 7  # rank among all scored runs, not the filtered


def test_rows_are_keyed_and_formatted(campaign: Workspace) -> None:
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    agents = rows.agent_rows(snap, PAL, T0)
    assert [k for k, _ in agents] == ["agent:alpha", "agent:bravo", "agent:charlie", "job:3"]
    alpha = dict(zip(rows.AGENT_COLUMNS, agents[0][1], strict=True))
    assert str(alpha["progress"]).endswith("60%")
    assert str(alpha["job"]) == "#1 h100-a:0,1" and alpha["eta"] == "48s"
    board = dict(rows.board_rows(snap, PAL, marked=10))
    assert str(board["run:11"][0]) == "1★" and str(board["run:8"][0]) == "3◆"
    assert str(board["run:10"][0]) == "2•"
    assert str(board["run:8"][3]) == "+0.0000" and str(board["run:11"][3]) == "-0.0120"
    assert [k for k, _ in rows.feed_rows(snap, PAL, T0, flt="MLP")] == ["post:1"]
    header = rows.header_text(snap, PAL, rate=1.0, paused=False, marked=None).plain
    assert "gpus 2/12" in header and "best 1.1804 #11" in header and "dir #1 3/3→1✓" in header


@pytest.mark.parametrize(
    ("text", "selected", "want"),
    [
        ("", 7, ["pin", "run", "7"]),
        ("374", None, ["pin", "pr", "374"]),
        ("#374", None, ["pin", "pr", "374"]),
        (
            "openai/parameter-golf#374",
            None,
            ["pin", "pr", "374", "--repo", "openai/parameter-golf"],
        ),
        ("run 12", 7, ["pin", "run", "12"]),
        ("r12", None, ["pin", "run", "12"]),
        ("records/x/train_gpt.py", None, ["pin", "file", "records/x/train_gpt.py"]),
    ],
)
def test_parse_pin(text: str, selected: int | None, want: list[str]) -> None:
    req = ops.parse_pin(text, selected)
    assert req is not None and req.argv() == want


def test_parse_pin_needs_something() -> None:
    assert ops.parse_pin("  ", None) is None


def test_curve_from_log_lines() -> None:
    curve = Curve()
    assert curve.add_lines(LOG_LINES)
    assert len(curve.train) == 13 and curve.train[0] == (0.0, 4.2)
    assert curve.val_loss == [(1000.0, 2.21)] and curve.total_steps == 2000
    assert not curve.add_lines(["nothing here"])


def test_chart_draws_points_lines_and_labels() -> None:
    chart = ChartData(series=[Series([0, 1, 2], [3.0, 2.0, 1.0], kind="step")])
    text = render_chart(chart, 30, 8, PAL).plain.splitlines()
    assert len(text) == 8 and text[0].startswith("3.0000│") and text[-1].startswith("      └0")
    assert any("\u2800" < ch <= "\u28ff" for line in text for ch in line)
    assert render_chart(ChartData(), 30, 8, PAL).plain == "no data yet"


def test_plot_data_marks_keeps_and_running_best() -> None:
    pts = [
        data.PlotPoint(1, 1.30, "keep", "baseline"),
        data.PlotPoint(2, 1.35, "discard", "bad idea"),
        data.PlotPoint(3, 1.25, "keep", "good idea"),
        data.PlotPoint(4, 1.27, "keep", "kept, not best"),
    ]
    chart = plot_data(pts)
    grey, green, best = chart.series
    assert list(grey.xs) == [1] and list(green.xs) == [0, 2, 3]
    assert list(best.ys) == [1.30, 1.25]  # the running best steps down only
    assert [lab.text for lab in chart.labels] == ["#3 good idea", "#1 baseline"]
