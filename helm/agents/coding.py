"""Running a coding-agent CLI unattended: start, log, watch for stalls, restart with backoff.

The CLI runs in the agent's worktree in its own process group, with ``HELM_AGENT`` and
``HELM_HOME`` set and ``helm`` on its PATH; everything it prints goes to
``<home>/agents/<name>/driver.log``. When it exits (they do: a finished "task", a crash, a
quota error) it is started again after a delay that doubles up to a cap and resets once a
run lasted long enough. An agent that produced no experiment and no output for
``stall_s`` is marked ``stalled`` (and restarted if ``restart_on_stall``) — a stalled agent
is the silent failure autoresearch setups suffer from most (permission prompts, hung tools).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helm.agents import config as cfg
from helm.agents import procs
from helm.agents.directives import deliver
from helm.agents.drivers import command_for, write_program
from helm.models.agents import count_restart, update_agent
from helm.models.feed import post_feed
from helm.models.runs import last_activity
from helm.workspace import Workspace

MIN_HEALTHY_S = 120.0  # a run at least this long resets the backoff


def user_kwargs(run_as: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Popen arguments and env additions to run as ``run_as`` (only when we are root)."""
    if not run_as or os.geteuid() != 0:
        return {}, {}
    import pwd

    pw = pwd.getpwnam(run_as)
    return (
        {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []},
        {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name},
    )


def _chown_tree(path: Path, run_as: str) -> None:
    import pwd

    pw = pwd.getpwnam(run_as)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    with contextlib.suppress(OSError):
        os.chown(path, pw.pw_uid, pw.pw_gid)


class CodingRunner:
    def __init__(
        self,
        ws: Workspace,
        agent: str,
        worktree: Path,
        driver: str,
        *,
        should_stop: Callable[[], bool],
        tick_s: float = 1.0,
    ) -> None:
        self.ws, self.agent, self.worktree, self.driver = ws, agent, worktree, driver
        self.should_stop = should_stop
        self.tick_s = tick_s
        self.log_path = procs.agent_dir(ws, agent) / "driver.log"
        self.conf = cfg.load(ws.config_path)

    def _note(self, text: str) -> None:
        with self.log_path.open("a") as fh:
            fh.write(f"\n[helm {time.strftime('%H:%M:%S')}] {text}\n")

    def _update(self, **fields: Any) -> None:
        with self.ws.db(write=True) as db:
            update_agent(db, self.agent, **fields)

    def _last_experiment(self) -> float:
        with self.ws.db(write=False) as db:
            last, busy = last_activity(db, self.agent)
        if busy:
            return time.time()  # waiting on a job is not a stall
        return float(last or 0.0)

    def _start(self) -> subprocess.Popen[bytes]:
        write_program(self.worktree, self.agent, self.driver)
        deliver(self.ws, self.agent, self.worktree, self.driver)
        argv = command_for(
            self.driver,
            agent=self.agent,
            worktree=self.worktree,
            home=self.ws.root,
            overrides=self.conf.drivers,
        )
        kwargs, extra_env = user_kwargs(self.conf.run_as)
        if kwargs:
            _chown_tree(self.worktree, self.conf.run_as)
        env = {**procs.agent_env(self.ws, self.agent), **extra_env}
        self._note(f"starting: {' '.join(argv)}")
        out = self.log_path.open("ab")
        try:
            return subprocess.Popen(
                argv,
                cwd=self.worktree,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **kwargs,
            )
        finally:
            out.close()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def run(self) -> None:
        first, cap = self.conf.backoff_s
        failures = 0
        while not self.should_stop():
            started = time.time()
            try:
                proc = self._start()
            except (OSError, ValueError) as exc:
                self._note(f"cannot start the agent CLI: {exc}")
                self._update(state="waiting", note=f"cannot start: {exc}"[:200])
                proc = None
            if proc is not None:
                self._update(state="thinking", last_output_at=time.time(), note=None)
                self._watch(proc, started)
                if self.should_stop():
                    break
                self._note(f"the agent CLI exited with code {proc.returncode}")
            failures = 0 if time.time() - started >= MIN_HEALTHY_S else failures + 1
            delay = min(cap, first * (2 ** max(0, failures - 1))) if failures else first
            with self.ws.db(write=True) as db:
                count_restart(db, self.agent, state="waiting")
            self._note(f"restarting in {delay:.0f}s")
            end = time.monotonic() + delay
            while time.monotonic() < end and not self.should_stop():
                time.sleep(min(0.5, self.tick_s))

    def _watch(self, proc: subprocess.Popen[bytes], started: float) -> None:
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        last_output = time.time()
        last_write = 0.0
        stalled = False
        while proc.poll() is None:
            if self.should_stop():
                self._kill(proc)
                return
            time.sleep(self.tick_s)
            now = time.time()
            new_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            if new_size != size:
                size, last_output = new_size, now
            if now - last_write > 5:
                last_write = now
                deliver(self.ws, self.agent, self.worktree, self.driver)
                fields: dict[str, Any] = {"last_output_at": last_output, "last_seen_at": now}
                idle = now - max(last_output, self._last_experiment(), started)
                if idle > self.conf.stall_s and not stalled:
                    stalled = True
                    fields.update(state="stalled", note=f"no experiment or output for {idle:.0f}s")
                    self._note(f"stalled: no experiment and no output for {idle:.0f}s")
                    with self.ws.db(write=True) as db:
                        post_feed(
                            db,
                            f"agent {self.agent} looks stalled: no experiment and no output "
                            f"for {idle:.0f}s",
                            agent=self.agent,
                            kind="system",
                        )
                    if self.conf.restart_on_stall:
                        self._update(**fields)
                        self._kill(proc)
                        return
                elif stalled and idle <= self.conf.stall_s:
                    stalled = False
                    fields.update(state="thinking", note=None)
                self._update(**fields)
