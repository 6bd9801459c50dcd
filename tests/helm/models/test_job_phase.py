"""The job row's phase after the last step, as the dispatcher saves it from the live log.

``save_progress`` runs after every streamed chunk; the phase's start time is the save that
first saw it, and a daemon restart (which re-reads the whole local log) must not restart it.
"""

from __future__ import annotations

from golf_task.logs import LogParser
from helm.models import job_life
from helm.models.jobs import get_job
from helm.models.tables import Job
from helm.workspace import Workspace


def _job(ws: Workspace, jid: int) -> dict:
    with ws.db(write=False) as db:
        return dict(get_job(db, jid))


def test_each_phase_is_stamped_once_and_a_restart_keeps_it(ws: Workspace, tiny_run) -> None:
    with ws.store.write() as s:
        job = Job(state="running", total_steps=None)
        s.add(job)
        s.flush()
        jid = int(job.id)  # type: ignore[arg-type]
    raw = tiny_run.stdout_path.read_bytes()
    parser, offset = LogParser(), 0
    began: dict[str, float] = {}
    for line in raw.splitlines(keepends=True):
        parser.feed(line)
        offset += len(line)
        job_life.save_progress(ws.store, jid, offset, parser.summary)
        row = _job(ws, jid)
        if row["phase"] is None:
            assert row["phase_at"] is None
        elif row["phase"] not in began:  # new: stamped by this save
            assert row["phase_at"] == row["heartbeat_at"]
            began[row["phase"]] = row["phase_at"]
        else:  # the same phase on a later save: its start stays
            assert row["phase_at"] == began[row["phase"]] <= row["heartbeat_at"]
    assert list(began) == ["eval", "quantize", "round trip", "sliding", "ttt", "done"]
    assert sorted(began.values()) == list(began.values())

    restarted = LogParser()  # the daemon restarts: its LogStream re-reads the local copy
    restarted.feed(raw)
    job_life.save_progress(ws.store, jid, offset, restarted.summary)
    row = _job(ws, jid)
    assert (row["phase"], row["phase_at"]) == ("done", began["done"])
