"""The TUI's store access, on both engines: the snapshot loader, the detail and plot reads,
and the operator's writes (cancel, stop, audit findings).

Everything the main screen shows goes through ``helm.tui.data.load_snapshot``; these tests
run it against the SQLite file and against a real PostgreSQL server (the ``engines`` mark),
on the campaign of ``tui_campaign`` plus the rows each test adds.
"""

from __future__ import annotations

import json

import pytest
from tui_campaign import T0

from helm.models.agents import find_agent
from helm.models.audits import latest_audit
from helm.models.db import NotFound
from helm.models.jobs import find_job
from helm.models.tables import Audit, Host, Job, Pin, Run
from helm.tui import data, ops
from helm.tui.screens.community import findings_text
from helm.workspace import Workspace

pytestmark = pytest.mark.engines


def test_snapshot_of_the_campaign(campaign: Workspace) -> None:
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert snap.taken_at == T0 and snap.runs_total == 13
    assert [a.name for a in snap.agents] == ["alpha", "bravo", "charlie"]
    alpha = snap.agents[0]
    assert alpha.job is not None and alpha.job.id == 1 and alpha.job.gpu_ids == (0, 1)
    assert alpha.last is not None and alpha.last["id"] == 9  # its newest ended run
    assert snap.agents[1].job is not None and snap.agents[1].job.state == "queued"
    assert [j.id for j in snap.jobs] == [3]  # the agent-less queued job
    assert (snap.jobs_running, snap.jobs_queued) == (1, 2)
    assert (snap.gpus_busy, snap.gpus_total) == (2, 12)
    assert snap.best is not None and snap.best["id"] == 10  # #11 is lower, but discarded
    assert snap.pin is not None and snap.base_run_ids == frozenset({8})
    assert snap.base_bpb == pytest.approx(1.2244 - 0.032)
    # seeds of one code and environment: #6 and #7 share both, and seed 42 (a replay)
    assert snap.seeds == {(f"h{i}", "{}"): 1 for i in range(1, 12) if i != 7}
    assert snap.directives_pending == 1 and snap.directives[0].acked == 1
    assert [p["kind"] for p in snap.feed] == ["ack", "result", "insight"]


def test_leaderboard_order_with_and_without_a_filter(campaign: Workspace) -> None:
    board = data.load_snapshot(campaign, clock=lambda: T0).leaderboard
    assert [r["id"] for r in board] == [11, 10, 8, 7, 9, 5, 4, 6, 2, 1, 3]
    assert [r["rank"] for r in board] == list(range(1, 12))
    assert all(r["code_hash"] for r in board)

    def ranked(flt: str) -> list[tuple[int, int]]:
        snap = data.load_snapshot(campaign, clock=lambda: T0, flt=flt)
        return [(r["id"], r["rank"]) for r in snap.leaderboard]

    assert ranked("int5") == [(4, 7)]  # rank among all ranked runs, not among the filtered
    assert ranked("BRAVO") == [(10, 2), (7, 4), (4, 7), (1, 10)]  # agent, any case
    assert ranked("discard") == [(11, 1), (7, 4), (9, 5), (6, 8), (3, 11)]  # status
    assert ranked("no such idea") == []


def test_live_jobs_in_placement_order(campaign: Workspace) -> None:
    with campaign.store.write() as s:
        s.add(Job(id=4, agent=None, state="queued", gpus=1, priority=5, queued_at=T0 - 5))
        s.add(Job(id=5, agent="charlie", state="lost", gpus=1, queued_at=T0 - 500))
        s.add(Job(id=6, agent="charlie", state="succeeded", gpus=1, queued_at=T0 - 600))
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert [j.id for j in snap.jobs] == [4, 3]  # priority first; ended jobs not at all
    assert snap.agents[2].job is None  # charlie's jobs have ended
    assert (snap.jobs_running, snap.jobs_queued) == (1, 3)
    job = snap.agents[0].job
    assert job is not None and (job.step, job.total_steps, job.eta_s) == (1200, 2000, 48)
    assert job.cancel_requested is False and job.started_at == T0 - 180


def test_hosts_with_their_gpus(campaign: Workspace) -> None:
    with campaign.store.write() as s:
        s.add(Host(name="old", kind="ssh", gpus=2, enabled=False))
    hosts = {h.name: h for h in data.load_snapshot(campaign, clock=lambda: T0).hosts}
    assert list(hosts) == ["box-b", "h100-a", "old"]
    a = hosts["h100-a"]
    assert a.enabled and a.reachable is True and a.checked_at == T0 - 30
    assert [g.busy for g in a.gpu_list] == [True, True] + [False] * 6
    assert (a.gpu_list[0].util, a.gpu_list[0].mem_total, a.gpu_list[7].temp) == (97, 81559, 35)
    assert hosts["box-b"].reachable is False and len(hosts["box-b"].gpu_list) == 4
    assert hosts["old"].enabled is False and hosts["old"].reachable is None
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert snap.gpus_total == 12  # the disabled host's GPUs do not count


def test_a_slurm_host_counts_the_gpus_its_running_jobs_hold(campaign: Workspace) -> None:
    """A cluster's GPUs are other people's until helm's job runs there: the fleet total
    counts only what helm's running Slurm jobs hold, and a waiting job shows Slurm's reason."""
    from helm.tui.fmt import Palette
    from helm.tui.rows import _job_cells, fleet_rows

    with campaign.store.write() as s:
        s.add(Host(name="lab", kind="slurm", gpus=16, reachable=True, slurm_json='{"x": 1}'))
        s.add(Job(id=20, state="running", host="lab", gpus=8, backend_id="900",
                  started_at=T0 - 125, queued_at=T0 - 300))  # fmt: skip
        s.add(Job(id=21, state="staging", host="lab", gpus=2, backend_id="901",
                  queue_reason="Resources", queued_at=T0 - 200))  # fmt: skip
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    lab = {h.name: h for h in snap.hosts}["lab"]
    assert lab.busy == 8 and lab.gpu_list == () and [j.id for j in lab.queue] == [20, 21]
    assert (snap.gpus_busy, snap.gpus_total) == (2 + 8, 12 + 8)
    pal = Palette.from_variables({})
    row = dict(fleet_rows(snap, pal))["host:lab"]
    assert [str(c) for c in row[3:5]] == ["8▶ 1⏸", "Resources"]
    jobs = {j.id: j for j in snap.jobs}
    assert str(_job_cells(jobs[21], pal, T0)[-1]) == "#21 lab ⏸ Resources"
    assert str(_job_cells(jobs[20], pal, T0)[-1]) == "#20 lab:×8 2m"


def test_the_latest_pin_is_the_base(campaign: Workspace) -> None:
    """The base of a pin is its reference runs (made on it, at its commit) and, for a run
    pin, the pinned run: a run that only shares the commit is not one of them, a claim is no
    score (``helm.models.base``)."""
    with campaign.store.write() as s:  # a base at run 7's commit
        s.add(Pin(kind="file", ref="train_gpt.py", commit=f"{7:040x}", created_at=T0 - 10))
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert snap.pin is not None and snap.pin["ref"] == "train_gpt.py"
    pin_id = snap.pin["id"]
    assert snap.base_run_ids == frozenset() and snap.base_bpb is None  # nothing ran on it yet
    with campaign.store.write() as s:  # a reference run of the pinned code, unchanged
        s.add(Run(id=50, agent="bravo", commit=f"{7:040x}", status="keep", val_bpb=1.1961,
                  base_pin_id=pin_id, baseline=True))  # fmt: skip
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert snap.base_run_ids == frozenset({50}) and snap.base_bpb == pytest.approx(1.1961)
    with campaign.store.write() as s:  # a community PR no run of ours scored, only claimed
        s.add(Audit(ref="openai/parameter-golf#9", verdict="unverified", claimed_bpb=1.11))
        s.add(Pin(kind="pr", ref="openai/parameter-golf#9", commit=None, created_at=T0 - 5))
    snap = data.load_snapshot(campaign, clock=lambda: T0)
    assert snap.base_run_ids == frozenset() and snap.base_bpb is None  # a claim is no score


def test_run_detail_and_plot_points(campaign: Workspace) -> None:
    d = data.load_detail(campaign, 12)
    assert d.run is not None and d.run["description"] == "int5 + bigram"
    assert d.job is not None and d.job["id"] == 1 and d.parent is not None
    assert d.parent["id"] == 10
    alone = data.load_detail(campaign, None, 3)
    assert alone.run is None and alone.job is not None and alone.job["gpus"] == 8
    with pytest.raises(NotFound, match="no run 999"):
        data.load_detail(campaign, 999)
    with pytest.raises(NotFound, match="no job 999"):
        data.load_detail(campaign, None, 999)
    points = data.load_plot_points(campaign)
    assert [p.run_id for p in points] == list(range(1, 12))
    assert points[0] == data.PlotPoint(1, pytest.approx(1.2204), "keep", "baseline")


def test_cancel_marks_a_running_job_and_ends_a_queued_one(campaign: Workspace) -> None:
    ops.cancel_job(campaign, 1)
    ops.cancel_job(campaign, 3)
    with campaign.db(write=False) as db:
        running, queued = find_job(db, 1), find_job(db, 3)
    assert running is not None and running["state"] == "running"
    assert running["cancel_requested"] in (True, 1)  # a BOOLEAN on PostgreSQL
    assert queued is not None and queued["state"] == "cancelled"
    with pytest.raises(ops.OpError, match="job 3 already cancelled"):
        ops.cancel_job(campaign, 3)
    with pytest.raises(ops.OpError, match="no job 99"):
        ops.cancel_job(campaign, 99)


def test_lost_jobs_cannot_be_cancelled(campaign: Workspace) -> None:
    with campaign.store.write() as s:
        s.add(Job(id=7, agent=None, state="lost", gpus=1, queued_at=T0 - 50))
    with pytest.raises(ops.OpError, match="job 7 already lost"):
        ops.cancel_job(campaign, 7)


def test_stop_agents_counts_only_changes(campaign: Workspace) -> None:
    assert ops.stop_agents(campaign, ["bravo", "nobody"]) == 1
    assert ops.stop_agents(campaign, ["bravo", "charlie"]) == 1  # bravo was already down
    with campaign.db(write=False) as db:
        agents = [find_agent(db, n) for n in ("alpha", "bravo", "charlie")]
    assert [a["desired"] for a in agents if a is not None] == ["up", "down", "down"]


def test_audit_findings_text(campaign: Workspace) -> None:
    evidence = {
        "verdict": "copy",
        "reason": "same code as #7",
        "findings": [{"status": "fail", "name": "similarity", "message": "0.99 to #7"}],
        "reproduction": {"summary": "not run"},
    }
    with campaign.store.write() as s:
        s.add(
            Audit(ref="openai/parameter-golf#8", verdict="copy", evidence_json=json.dumps(evidence))
        )
    with campaign.db(write=False) as db:
        audit = latest_audit(db, "openai/parameter-golf#8")
    assert audit is not None
    audit_id = int(audit["id"])
    assert findings_text(campaign, audit_id).splitlines() == [
        "COPY: same code as #7",
        "✗ similarity: 0.99 to #7",
        "rerun: not run",
    ]
    assert findings_text(campaign, audit_id + 1) == ""
