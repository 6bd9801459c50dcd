"""The daemon's agent supervisor: make the processes match ``Agent.desired``.

Every tick it probes each agent's lock: an agent that should be up and is not is started
(again, after a doubling backoff if it keeps dying young); one that should be down and still
runs gets SIGTERM (and SIGKILL for its group if it ignores that for two minutes). It also
writes pending directives into the worktrees of live agents, so a directive reaches an agent
even while a long experiment keeps it from looking.

Agents run in their own sessions and outlive the daemon: stopping the daemon leaves them
running, and the next daemon adopts them by their locks. An agent's work is in its worktree
and branch, so even a killed agent resumes where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass

from helm.agents import procs
from helm.models.agents import count_restart, list_agents, update_agent
from helm.workspace import Workspace

HEALTHY_S = 60.0
KILL_AFTER_S = 120.0


@dataclass
class _Life:
    next_start: float = 0.0
    failures: int = 0
    started_at: float | None = None
    term_sent_at: float | None = None


class AgentSupervisor:
    name = "agents"

    def __init__(self, ws: Workspace, log: logging.Logger, interval_s: float = 1.0) -> None:
        self.ws = ws
        self.log = log
        self.interval_s = interval_s
        self.lives: dict[str, _Life] = {}

    async def start(self) -> None:
        self.log.info("agent supervisor: adopting running agents")

    async def tick(self) -> None:
        await asyncio.to_thread(self.sync)

    async def stop(self) -> None:
        self.log.info("agent supervisor: leaving agents running")

    def sync(self) -> None:
        from helm.agents import config as cfg
        from helm.agents.directives import deliver
        from helm.agents.experiment import worktree_of
        from helm.agents.taskrepo import ensure_worktree

        if not self.ws.root.is_dir():  # deleted: the daemon stops at its next beat
            return
        conf = cfg.load(self.ws.config_path)
        first, cap = conf.backoff_s
        with self.ws.db(write=False) as db:
            agents = list_agents(db)
        now = time.time()
        for a in agents:
            name = a["name"]
            life = self.lives.setdefault(name, _Life())
            pid = procs.alive_pid(self.ws, name)
            if a["desired"] == "up":
                life.term_sent_at = None
                if pid is None:
                    if life.started_at is not None:  # it died
                        lived = now - life.started_at
                        life.failures = 0 if lived >= HEALTHY_S else life.failures + 1
                        life.next_start = now + min(cap, first * 2 ** max(0, life.failures - 1))
                        life.started_at = None
                        self.log.warning("agent %s exited after %.0fs", name, lived)
                        with self.ws.db(write=True) as db:
                            count_restart(db, name)
                    if now >= life.next_start:
                        wt = ensure_worktree(self.ws, name)
                        new = procs.spawn(self.ws, name, wt)
                        life.started_at = now
                        self.log.info("agent %s started (pid %d)", name, new)
                        with self.ws.db(write=True) as db:
                            update_agent(db, name, state="starting", pid=new, worktree=str(wt))
                else:
                    if life.started_at is None:
                        life.started_at = a["started_at"] or now  # adopted
                    deliver(self.ws, name, worktree_of(self.ws, a), a["driver"])
            else:
                life.started_at = None
                if pid is not None and pid > 0:
                    if life.term_sent_at is None:
                        procs.terminate(pid)
                        life.term_sent_at = now
                        self.log.info("agent %s asked to stop (pid %d)", name, pid)
                    elif now - life.term_sent_at > KILL_AFTER_S:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(pid, signal.SIGKILL)
                        self.log.warning("agent %s killed (ignored SIGTERM)", name)
                elif pid is None and a["state"] != "stopped":
                    with self.ws.db(write=True) as db:
                        update_agent(db, name, state="stopped", pid=None)


def make_service(ws: Workspace, logger: logging.Logger) -> AgentSupervisor:
    return AgentSupervisor(ws, logger)
