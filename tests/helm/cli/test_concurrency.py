"""Many agent processes writing one store at once: nothing lost, no "database is locked"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helm.models.directives import list_directives, send_directive
from helm.models.feed import list_feed
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

    with ws.db(write=False) as db:
        insights = list_feed(db, kind="insight", limit=10 * PROCS * PER_PROC)
        ack_posts = list_feed(db, kind="ack", limit=10 * PROCS * PER_PROC)
        deliveries = [x for d in list_directives(db) for x in d["deliveries"]]
    acked = sum(1 for x in deliveries if x["acked_at"] is not None)
    per_agent = Counter(p["agent"] for p in insights)
    assert len(insights) + acked == PROCS * PER_PROC == 1000
    assert len(ack_posts) == acked
    assert sorted(per_agent.values()) == [PER_PROC // 2] * PROCS
