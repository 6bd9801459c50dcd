"""``helm demo``: the whole product on one CPU box, offline, in a few minutes.

It builds the tiny dataset into ``<home>/data`` (golf_task.data), registers this machine as
a local host with one slot per agent, starts the daemon, brings up N sweep agents whose
fixed environment is the tiny CPU preset (golf_task.presets.TINY_CPU_ENV, with a fixed step
count instead of its wall-clock cap, scored on the export's round trip: see DEMO_OVERRIDES),
then either opens the TUI or, headless, lets the swarm work for S seconds. At the end it
stops what it started: its agents (each cancels its job in flight), any job of theirs still
queued, and the daemon if it was not running before, and it summarises the runs made during
the demo.

The demo keeps to a folder of its own (``default_root``: ``$XDG_DATA_HOME/helm-demo``, a
sibling of the default campaign, never inside it) unless ``--home`` names one, and starts
afresh every time unless asked to resume: a directive, pin or sweep queue left by an earlier
demo must never act in a later one, and nothing it makes may reach the user's campaign.
``prepare`` marks the folders it makes (``MARKER``) and deletes only marked ones.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helm.models.agents import list_agents
from helm.models.feed import list_feed
from helm.models.hosts import edit_host, find_local_host
from helm.models.jobs import live_job_ids
from helm.models.runs import runs_since
from helm.models.states import FINISHED_RUN, RunStatus
from helm.workspace import Workspace

Log = Callable[[str], None]
LOCAL_HOST = "local"
# The preset caps training by wall clock, as the competition does; on a CPU shared by several
# demo agents that makes the step count (and so the score) depend on who else is training,
# which drowns every effect in scheduling noise. A fixed step count keeps the comparisons
# about the change that was made. A 24-step run trains for about 4 s and then spent 10 s more
# on the sliding-window and test-time-training scores; without them every demo run is scored
# on its exported artifact's round trip (the score the competition's first records used), so
# the agents make about twice the experiments in the same minutes, all scored the same way.
DEMO_OVERRIDES = {"ITERATIONS": "24", "MAX_WALLCLOCK_SECONDS": "0", "EVAL_STRIDE": "0", "TTT": "0"}


MARKER = ".helm-demo"
MARKER_TEXT = "made by `helm demo`; `helm demo` may delete this folder to start afresh\n"


class DemoFolderError(Exception):
    """The demo's folder cannot be used or reset as asked (the reason is for the user)."""


def default_root() -> Path:
    """``$XDG_DATA_HOME/helm-demo`` (else ``~/.local/share/helm-demo``), whatever HELM_HOME
    says: HELM_HOME names the user's campaign, the one place the demo must stay out of."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "helm-demo").resolve()


def _still_running(ws: Workspace) -> str | None:
    """What of an earlier demo still runs in ``ws`` (a ``--keep-running`` one), if anything."""
    from helm.agents import procs
    from helm.daemon import is_running

    pid = is_running(ws)
    if pid is not None:
        return f"its daemon (pid {pid})"
    if ws.agents_dir.is_dir():
        for d in sorted(ws.agents_dir.iterdir()):
            pid = procs.alive_pid(ws, d.name)
            if pid is not None:
                return f"agent {d.name} (pid {pid})"
    return None


def prepare(root: Path, *, resume: bool, reset: bool, explicit: bool, log: Log) -> Workspace:
    """The demo's workspace at ``root``, made ready as asked.

    A folder that is missing or empty is made and marked. A marked one is deleted and made
    again (a fresh demo) unless ``resume``. An unmarked folder with something in it is never
    deleted: ``reset`` refuses it; without ``reset`` the demo runs in it as it is only when
    the user named it (``explicit``: ``--home`` wins) and refuses the default path.
    """
    root = root.expanduser().resolve()
    marked = (root / MARKER).is_file()
    used = root.exists() and (not root.is_dir() or any(root.iterdir()))
    if used and not marked:
        if reset or not explicit:
            raise DemoFolderError(
                f"{root} was not made by `helm demo` (no {MARKER} in it): not touching it; "
                "move it away or pass --home DIR"
            )
        log(f"{root} is not a demo folder: running in it as it is")
        return Workspace(root).ensure()
    if used and not resume:
        running = _still_running(Workspace(root))
        if running:
            raise DemoFolderError(
                f"an earlier demo still runs in {root}: {running}; stop it "
                f"(`helm --home {root} swarm down` and `helm --home {root} daemon stop`) "
                "or pass --resume"
            )
        log(f"starting afresh: removing the earlier demo in {root} (--resume continues it)")
        shutil.rmtree(root)
    elif used:
        log(f"resuming the earlier demo in {root}")
    ws = Workspace(root).ensure()
    (root / MARKER).write_text(MARKER_TEXT)  # new, emptied or already marked: ours
    return ws


@dataclass
class DemoHandle:
    agents: list[str]
    started_agents: list[str]
    daemon_started: bool
    since: float


def ensure_local_host(ws: Workspace, slots: int) -> str:
    """A local host with at least ``slots`` parallel slots and the tiny data configured."""
    with ws.db(write=True) as db:
        host = find_local_host(db)
        if host is not None:
            edit_host(
                db,
                host["name"],
                gpus=max(host["gpus"], slots),
                data_dir=host["data_dir"] or str(ws.data_dir),
                enabled=True,
            )
            return str(host["name"])
    from helm.remote.hosts import add_host

    with ws.store.write() as s:
        return add_host(ws, s, LOCAL_HOST, local=True, gpus=slots, data=str(ws.data_dir)).name


def start(ws: Workspace, n_agents: int, log: Log) -> DemoHandle:
    from golf_task.data import make_tiny
    from golf_task.presets import TINY_CPU_ENV
    from helm.agents import procs, swarm
    from helm.agents import taskrepo as tr
    from helm.daemon import start_detached

    since = time.time()
    ws.ensure()
    log(f"demo workspace {ws.root}")
    log("building the tiny offline dataset (first time: under a minute)")
    make_tiny(ws.data_dir, log=log)
    tr.ensure_task_repo(ws)
    host = ensure_local_host(ws, n_agents)
    log(f"local host {host!r}: {n_agents} CPU slot(s), data in {ws.data_dir}")
    pid, new = start_detached(ws)
    log(f"daemon {'started' if new else 'already running'} (pid {pid})")
    with ws.db(write=False) as db:
        existing = {r["name"] for r in list_agents(db, driver="sweep")}
    names = swarm.up(ws, n_agents, driver="sweep", env={**TINY_CPU_ENV, **DEMO_OVERRIDES})
    started = [n for n in names if n not in existing or procs.alive_pid(ws, n) is None]
    log(f"sweep agents up: {', '.join(names)}")
    return DemoHandle(names, started, new, since)


def stop(ws: Workspace, h: DemoHandle, log: Log, *, timeout_s: float = 60.0) -> None:
    from helm.agents import swarm
    from helm.daemon import stop as stop_daemon
    from helm.remote.jobs import request_cancel

    if h.started_agents:
        log(f"stopping agents {', '.join(h.started_agents)} (jobs in flight are cancelled)")
        swarm.down(ws, h.started_agents, timeout_s=timeout_s)
    with ws.db(write=False) as db:
        open_jobs = set(live_job_ids(db, agents=h.agents))
    for job_id in sorted(open_jobs):
        request_cancel(ws, job_id)
    deadline = time.monotonic() + timeout_s
    while open_jobs and time.monotonic() < deadline:
        with ws.db(write=False) as db:
            if not open_jobs & set(live_job_ids(db, agents=h.agents)):
                break
        time.sleep(0.5)
    if h.daemon_started:
        log("stopping the daemon")
        stop_daemon(ws, timeout_s=timeout_s)


def summary(ws: Workspace, h: DemoHandle) -> dict[str, Any]:
    """What the demo achieved: counts, the best score, and the insights posted."""
    with ws.db(write=False) as db:
        runs = runs_since(db, h.agents, h.since)
        insights = list_feed(db, since=h.since, kind="insight", limit=10_000)[::-1]
    counted = (RunStatus.KEEP, RunStatus.DISCARD, RunStatus.CRASH, RunStatus.DONE)
    by = {s: [r for r in runs if r["status"] == s] for s in counted}
    cancelled = [r for r in runs if r["status"] == RunStatus.CANCELLED]
    scored = [
        r
        for r in runs
        if r["status"] in FINISHED_RUN and r["val_bpb"] is not None and math.isfinite(r["val_bpb"])
    ]
    kept = [r for r in scored if r["status"] == RunStatus.KEEP]  # the best counts kept runs only
    best = min(kept, key=lambda r: r["val_bpb"]) if kept else None
    return {
        "home": str(ws.root),
        "agents": h.agents,
        "runs": sum(len(v) for v in by.values()),
        "scored_runs": len(scored),
        "keeps": len(by[RunStatus.KEEP]),
        "discards": len(by[RunStatus.DISCARD]),
        "crashes": len(by[RunStatus.CRASH]),
        "cancelled": len(cancelled),
        "best_val_bpb": best["val_bpb"] if best else None,
        "best_run": best["id"] if best else None,
        "best_description": best["description"] if best else None,
        "insights": len(insights),
        "insight_texts": [f"{i['agent']}: {i['text']}" for i in insights],
        "seconds": round(time.time() - h.since, 1),
    }


def watch(ws: Workspace, h: DemoHandle, duration_s: float, log: Log, every_s: float = 15.0) -> None:
    """Headless: let the swarm work, with a progress line now and then."""
    end = time.monotonic() + duration_s
    next_line = time.monotonic() + every_s
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if time.monotonic() >= next_line:
            next_line += every_s
            s = summary(ws, h)
            best = "-" if s["best_val_bpb"] is None else f"{s['best_val_bpb']:.4f}"
            left = max(0, int(end - time.monotonic()))
            log(f"{s['runs']} runs, {s['keeps']} keeps, {s['crashes']} crashes, best kept {best}; "
                f"{left}s left")  # fmt: skip


def render(s: dict[str, Any]) -> str:
    best = "none" if s["best_val_bpb"] is None else f"{s['best_val_bpb']:.4f} (run {s['best_run']})"
    lines = [
        f"demo summary ({s['seconds']:.0f}s, agents {', '.join(s['agents'])}):",
        f"  runs {s['runs']} (scored {s['scored_runs']}), keeps {s['keeps']}, "
        f"discards {s['discards']}, crashes {s['crashes']}, cancelled at the end "
        f"{s['cancelled']}",
        f"  best kept val_bpb {best}",
        f"  insights {s['insights']}",
    ]
    lines += [f"    - {t}" for t in s["insight_texts"][-8:]]
    lines.append(f"  everything is kept in {s['home']}: try `helm --home {s['home']} runs`")
    return "\n".join(lines)
