"""One agent's process: ``python -m helm.agents.runner --home DIR --agent NAME``.

Started detached by the supervisor (or by hand, for debugging). It takes the agent's lock,
moves the worktree onto the current base, and runs the driver: the sweep loop in-process, or
a coding-agent CLI under ``CodingRunner``. SIGTERM asks it to stop: the sweep cancels the job
in flight (its run is recorded as cancelled and the worktree reset to the best), a coding CLI
gets SIGTERM then SIGKILL. A crash of this process is logged to ``runner.log`` and the
supervisor starts it again; the worktree and branch are the agent's memory, so nothing is
lost.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback

from helm.agents import procs
from helm.daemon import RootWatch
from helm.models.agents import update_agent
from helm.models.runs import in_flight_runs
from helm.workspace import Workspace


class Stopper:
    """A flag set by SIGTERM/SIGINT/SIGHUP, or by the workspace going away; every loop in
    the agent polls it.

    Both drivers (the sweep loop and ``CodingRunner``, which stops its CLI) already poll this
    on every step, so watching the workspace here covers every kind of agent: one whose
    campaign folder was deleted (a demo removed while it ran) stops within seconds instead
    of training into nothing.
    """

    def __init__(self, watch: RootWatch | None = None) -> None:
        self.stopped = False
        self.watch = watch

    @property
    def workspace_gone(self) -> bool:
        return self.watch is not None and self.watch.gone()

    def __call__(self) -> bool:
        if not self.stopped and self.workspace_gone:
            print(f"[{time.strftime('%F %T')}] the workspace is gone: stopping", flush=True)
            self.stopped = True
        return self.stopped

    def handle(self, _signum: int, _frame: object) -> None:
        self.stopped = True


def resume_in_flight(ws: Workspace, agent: str, stopper: Stopper) -> None:
    """Finish the experiments a previous life of this agent left running (wait, judge)."""
    from helm.agents.experiment import RemoteBackend, StopRequested, finalize, wait_run

    with ws.db(write=False) as db:
        pending = in_flight_runs(db, agent)
    for run in pending:
        print(f"resuming run {run['id']} (job {run['job_id']})", flush=True)
        try:
            wait_run(ws, run["id"], should_stop=stopper)
        except StopRequested:
            if run["job_id"]:
                RemoteBackend().cancel(ws, run["job_id"])
            wait_run(ws, run["id"], timeout_s=60.0, cancel_on_timeout=True)
        finalize(ws, run["id"])


def run_agent(ws: Workspace, agent: str, stopper: Stopper) -> int:
    from helm.agents.coding import CodingRunner
    from helm.agents.experiment import move_onto_base
    from helm.agents.sweep import SweepAgent
    from helm.agents.taskrepo import ensure_worktree
    from helm.models.agents import get_agent

    with ws.db(write=False) as db:
        row = get_agent(db, agent)
    wt = ensure_worktree(ws, agent)
    resume_in_flight(ws, agent, stopper)
    if stopper():
        return 0
    move_onto_base(ws, agent)
    if row["driver"] == "sweep":
        SweepAgent(ws, agent, should_stop=stopper).run()
    else:
        CodingRunner(ws, agent, wt, row["driver"], should_stop=stopper).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helm-agent")
    parser.add_argument("--home", required=True)
    parser.add_argument("--agent", required=True)
    args = parser.parse_args(argv)
    ws = Workspace(args.home).ensure()
    lock = procs.acquire(ws, args.agent)
    if lock is None:
        print(f"agent {args.agent} is already running", file=sys.stderr)
        return 0
    stopper = Stopper(RootWatch(ws.root))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stopper.handle)
    print(f"[{time.strftime('%F %T')}] agent {args.agent} starting (pid {procs.os.getpid()})")
    with ws.db(write=True) as db:
        update_agent(
            db,
            args.agent,
            pid=procs.os.getpid(),
            state="starting",
            started_at=time.time(),
            last_seen_at=time.time(),
        )
    code = 1
    try:
        code = run_agent(ws, args.agent, stopper)
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        if not stopper.workspace_gone:  # else there is no record left to update
            with ws.db(write=True) as db:
                update_agent(db, args.agent, pid=None, state="stopped", current_run_id=None)
        print(f"[{time.strftime('%F %T')}] agent {args.agent} exiting ({code})", flush=True)
        lock.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
