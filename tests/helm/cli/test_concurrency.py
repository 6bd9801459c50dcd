"""Many agent processes writing one store at once: nothing lost, no "database is locked"."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helm.models.directives import send_directive
from helm.models.tables import Agent
from helm.workspace import Workspace

PROCS = 20
PER_PROC = 50  # half feed posts, half directive acks


@pytest.mark.slow
def test_twenty_processes_write_through_the_cli(home: Path) -> None:
    ws = Workspace(home).ensure()
    with ws.store.write() as s:
        for i in range(PROCS):
            s.add(Agent(name=f"a{i:02d}"))
    with ws.db(write=True) as db:
        ids = [send_directive(db, f"directive {k}")["id"] for k in range(PER_PROC // 2)]

    helm_bin = shutil.which("helm", path=str(Path(sys.executable).parent)) or "helm"
    script = (
        'for k in $(seq 1 25); do "$HELM" feed post "finding $k from $HELM_AGENT" || exit 1; done; '
        'for d in $IDS; do "$HELM" directive ack "$d" || exit 1; done'
    )
    procs = []
    for i in range(PROCS):
        env = dict(os.environ, HELM_HOME=str(home), HELM_AGENT=f"a{i:02d}", HELM=helm_bin)
        env["IDS"] = " ".join(map(str, ids))
        procs.append(
            subprocess.Popen(
                ["sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    errors = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0 or err:
            errors.append(err.decode())
    assert errors == []

    conn = sqlite3.connect(home / "helm.db")
    insights = conn.execute("SELECT COUNT(*) FROM feed_post WHERE kind='insight'").fetchone()[0]
    acked = conn.execute(
        "SELECT COUNT(*) FROM directive_delivery WHERE acked_at IS NOT NULL"
    ).fetchone()[0]
    ack_posts = conn.execute("SELECT COUNT(*) FROM feed_post WHERE kind='ack'").fetchone()[0]
    per_agent = conn.execute(
        "SELECT agent, COUNT(*) FROM feed_post WHERE kind='insight' GROUP BY agent"
    ).fetchall()
    assert insights + acked == PROCS * PER_PROC == 1000
    assert ack_posts == acked
    assert sorted(n for _, n in per_agent) == [PER_PROC // 2] * PROCS
