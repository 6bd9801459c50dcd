"""The pure parts: registry and keymap, rows, pin parsing, curve and chart (the store reads
are ``test_data.py``, on both engines)."""

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


def test_rows_are_keyed_and_formatted(campaign: Workspace) -> None:
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    agents = rows.agent_rows(snap, PAL, T0)
    assert [k for k, _ in agents] == ["agent:alpha", "agent:bravo", "agent:charlie", "job:3"]
    alpha = dict(zip(rows.AGENT_COLUMNS, agents[0][1], strict=True))
    assert str(alpha["progress"]).endswith("60%")
    assert str(alpha["job"]) == "#1 h100-a:0,1" and alpha["eta"] == "48s"
    board = dict(rows.board_rows(snap, PAL, marked=10))
    # ★ is the best *kept* run (#11 scored lower but was discarded); ◆ the pinned run, which
    # has no Δ against itself (issue 16)
    assert str(board["run:11"][0]) == "1" and str(board["run:8"][0]) == "3◆"
    assert str(board["run:10"][0]) == "2★•"
    assert str(board["run:8"][3]) == "◆" and str(board["run:11"][3]) == "-0.0120"
    assert [k for k, _ in rows.feed_rows(snap, PAL, T0, flt="MLP")] == ["post:1"]
    header = rows.header_text(snap, PAL, rate=1.0, paused=False, marked=None).plain
    assert "gpus 2/12" in header and "best kept 1.1844 #10" in header
    assert "base run #8 1.1924 (n=1)" in header and "dir #1 3/3→1✓" in header


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


def test_fmt_prints_every_number_one_way() -> None:
    from helm import fmt

    assert [fmt.score(1.22436), fmt.score(None), fmt.score(1.1, 5)] == ["1.2244", "-", "1.10000"]
    assert [fmt.delta(1.18, 1.192), fmt.delta(1.2, None), fmt.delta(1.2, 1.2)] == [
        "-0.0120",
        "-",
        "+0.0000",
    ]
    assert fmt.signed(-0.0031, true_minus=True) == "\u22120.0031"
    assert [fmt.byte_count(15_090_000), fmt.megabytes(15_090_000)] == ["15,090,000", "15.09M"]
    assert fmt.artifact_size(15_090_000) == "15.09M +910k"
    assert fmt.artifact_size(16_100_000) == "16.10M over" and fmt.artifact_size(None) == "-"
    assert [fmt.age(s) for s in (None, -3, 42, 420, 3 * 3600, 2 * 86400)] == [
        "-",
        "0s",
        "42s",
        "7m",
        "3h",
        "2d",
    ]
    assert fmt.since(T0 - 90, T0) == "1m" and fmt.since(None) == "-"
    assert [fmt.duration(s) for s in (42.4, 590, 3720, None)] == ["42s", "9m50s", "1h02m", "-"]
    assert [fmt.loss(2.88), fmt.num(None, ".1f"), fmt.num(3, ",")] == ["2.880", "-", "3"]


def test_cells_colour_the_same_text() -> None:
    from helm.tui.fmt import delta_cell, size_cell

    better = delta_cell(1.18, 1.192, PAL)
    assert better.plain == "-0.0120" and str(better.style) == PAL.success
    over = size_cell(16_100_000, PAL)
    assert over.plain == "16.10M over" and str(over.style) == PAL.error
    assert str(size_cell(15_950_000, PAL).style) == PAL.warning  # under 100 kB of room
    assert size_cell(None, PAL).plain == "-"


def test_curve_reads_the_parsers_grammar() -> None:
    curve = Curve()
    assert curve.add_lines(
        [
            "1780000000.123 step:10/100 train_loss:3.5000 train_time:600ms",  # timestamped
            "20/100 loss=3.4",  # bare step, key=value
            "step=25/100 loss=3.3",  # not a step line to the parser either
            "step:30/100 train_loss:nan",  # diverged: no point
            "warmup_step:5/20",
            "step:50/100 val_loss:3.1 val_bpb:1.83",
        ]
    )
    assert curve.train == [(10.0, 3.5), (20.0, 3.4)]
    assert curve.val_loss == [(50.0, 3.1)] and curve.total_steps == 100


def test_screens_do_not_import_the_app() -> None:
    """Screens see the app through ``helm.tui.protocol`` only: the app (and the flows,
    which open screens) import them, so any import back would be a cycle, even a lazy one or
    one under TYPE_CHECKING."""
    import ast

    import helm.tui.screens

    forbidden = {"helm.tui.app", "helm.tui.flows"}
    for path in Path(helm.tui.screens.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"
