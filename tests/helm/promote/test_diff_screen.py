"""Screens and the full runs they earned, linked in ``helm diff`` and ``helm runs``.

A full run that came through a screen names it (and its Δ against the base's screen) in the
diff's header line; a screen's own diff says it is one; ``helm runs`` marks both and
``--json`` carries ``screen``, ``screen_run_id`` and ``screen_ref_id``. Real task repo, real
store, the real command line.
"""

from __future__ import annotations

from helm.promote.diff import diff_runs
from helm.promote.render import render_diff
from helm.workspace import Workspace

ENV = {"MODEL_DIM": "128"}


def _story(ws: Workspace, kit) -> dict[str, int]:  # noqa: ANN001
    base = kit.commit_run(ws, env=ENV, status="keep", val_bpb=1.30, description="base")
    ref = kit.commit_run(
        ws, env=ENV, status="screened", val_bpb=1.40, screen=True, description="base screen"
    )
    cand = kit.commit_run(
        ws, env={**ENV, "MLP_MULT": "3"}, status="screen-pass", val_bpb=1.396, screen=True,
        screen_ref_id=ref, description="screen of mlp 3",
    )  # fmt: skip
    full = kit.commit_run(
        ws, env={**ENV, "MLP_MULT": "3"}, parent=base, status="keep", val_bpb=1.28,
        screen_run_id=cand, description="mlp 3",
    )  # fmt: skip
    return {"base": base, "ref": ref, "cand": cand, "full": full}


def test_the_diff_header_names_the_screen(task_ws: Workspace, kit) -> None:  # noqa: ANN001
    ids = _story(task_ws, kit)
    d = diff_runs(task_ws, ids["full"])
    head = render_diff(d).splitlines()[0]
    assert head == (
        f"diff run #{ids['full']} against run #{ids['base']} (parent) · through screen "
        f"#{ids['cand']} 1.3960 (-0.0040 vs the base's screen #{ids['ref']})"
    )
    assert d.to_json()["a"]["screen"]["run_id"] == ids["cand"]
    own = render_diff(diff_runs(task_ws, ids["cand"], ids["base"])).splitlines()[0]
    assert own.endswith(f"· a screen (screen-pass, -0.0040 vs the base's screen #{ids['ref']})")
    plain = render_diff(diff_runs(task_ws, ids["ref"], ids["base"])).splitlines()[0]
    assert plain.endswith("· a screen (screened)")  # the base's screen: judged against nothing
    assert diff_runs(task_ws, ids["base"], ids["ref"]).a.screen_text() == ""


def test_runs_marks_screens_and_carries_the_links(task_ws: Workspace, kit, helm) -> None:  # noqa: ANN001
    ids = _story(task_ws, kit)
    rows = {r["id"]: r for r in helm("runs", "--json").json()}
    assert (rows[ids["cand"]]["screen"], rows[ids["cand"]]["screen_ref_id"]) == (True, ids["ref"])
    assert (rows[ids["full"]]["screen"], rows[ids["full"]]["screen_run_id"]) == (False, ids["cand"])
    assert rows[ids["base"]]["screen_run_id"] is None and rows[ids["base"]]["screen_ref_id"] is None
    out = helm("runs").out.splitlines()
    at, end = out[0].index("SCREEN"), out[0].index("DESCRIPTION")  # aligned columns
    cells = {int(line.split()[0]): line[at:end].strip() for line in out[1:] if line.strip()}
    assert cells[ids["cand"]] == cells[ids["ref"]] == "screen"
    assert cells[ids["full"]] == f"via #{ids['cand']}"
    assert cells[ids["base"]] == "-"
    board = helm("leaderboard").out
    assert f"via #{ids['cand']}" in board and "screen-pass" not in board  # screens unranked
