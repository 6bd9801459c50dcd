"""The operator's flows: what a key does once a screen knows what is selected.

Each flow opens a dialog or screen, waits for the operator's answer, and runs the blocking
part (store writes, ``helm`` subprocesses, git) in a thread worker of the app, whose one
error path (``Shell.report_error``) turns any failure into a notification. Screens call
these through ``helm.tui.protocol.Flows`` with what is under their cursor; the app only
builds this object and routes its app-wide keys (broadcast, plot, help) here. Keeping the
flows out of the app is what lets screens not import the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from textual.app import App

from helm.tui import ops
from helm.tui.protocol import Shell
from helm.tui.readiness import is_ready
from helm.tui.screens.community import CommunityScreen
from helm.tui.screens.detail import RunDetailScreen
from helm.tui.screens.dialogs import (
    BroadcastRequest,
    BroadcastScreen,
    ConfirmScreen,
    PinScreen,
    SwarmRequest,
    SwarmScreen,
)
from helm.tui.screens.host_setup import HostSetupScreen
from helm.tui.screens.promote import PromoteScreen
from helm.tui.screens.spend import SpendScreen
from helm.tui.screens.views import DiffScreen, HelpScreen, PlotScreen


class AppFlows:
    """``protocol.Flows`` over a running app (its screens, notifications and workers)."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app

    @property
    def shell(self) -> Shell:
        return cast(Shell, self.app)

    def _warn(self, message: str) -> None:
        self.app.notify(message, severity="warning")

    # Running the blocking part --------------------------------------------------------------
    def run_op(self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], str]) -> None:
        """Run a blocking operation off the UI thread; report its outcome, then refresh."""

        def body() -> None:
            result = fn(*args)
            self.app.call_from_thread(self._op_done, done(result))

        self.app.run_worker(body, group="ops", thread=True, exit_on_error=False)

    def _op_done(self, message: str) -> None:
        self.app.notify(message, timeout=4)
        self.shell.request_refresh()

    # Views ----------------------------------------------------------------------------------
    def help(self) -> None:
        self.app.push_screen(HelpScreen(self.shell.keymap))

    def plot(self) -> None:
        self.app.push_screen(PlotScreen())

    def spend(self) -> None:
        self.app.push_screen(SpendScreen())

    def community(self) -> None:
        self.app.push_screen(CommunityScreen())

    def open_detail(self, run_id: int | None, job_id: int | None = None) -> None:
        if run_id is None and job_id is None:
            self._warn("no run or job selected")
            return
        self.app.push_screen(RunDetailScreen(run_id, job_id))

    def diff(self, run_id: int | None) -> None:
        if run_id is None:
            self._warn("no run selected")
            return
        marked = self.shell.marked_run
        other = marked if marked not in (None, run_id) else None
        self.app.push_screen(DiffScreen(run_id, other))

    def mark(self, run_id: int | None) -> None:
        if run_id is None:
            self._warn("no run selected")
            return
        shell = self.shell
        shell.marked_run = None if shell.marked_run == run_id else run_id
        what = f"run #{run_id} marked: d diffs against it" if shell.marked_run else "mark cleared"
        self.app.notify(what, timeout=3)
        shell.redraw()

    # Steering -------------------------------------------------------------------------------
    def broadcast(self) -> None:
        snap = self.shell.snapshot
        agents = [a.name for a in snap.agents] if snap else []
        saved = list(dict.fromkeys(d.text for d in snap.directives)) if snap else []
        self.app.push_screen(BroadcastScreen(agents, saved), self._broadcast)

    def _broadcast(self, req: BroadcastRequest | None) -> None:
        if req is None:
            return

        def done(d: dict[str, Any]) -> str:
            return f"directive #{d['id']} sent to {len(d['deliveries'])} agent(s)"

        self.run_op(ops.broadcast, self.shell.ws, req.text, req.targets, done=done)

    def pin(self, run_id: int | None) -> None:
        def chosen(req: ops.PinRequest | None) -> None:
            if req is not None:
                self.app.run_worker(
                    lambda: self._pin_checked(req), group="ops", thread=True, exit_on_error=False
                )

        self.app.push_screen(PinScreen(run_id), chosen)

    def _pin_checked(self, req: ops.PinRequest) -> None:
        """Pin, but first warn about a PR without a passing audit and let the operator decide
        (in a worker: the audit lookup reads the store)."""
        ws = self.shell.ws
        warning = ops.pin_warning(ws, req)
        if warning is None:
            self.run_op(ops.pin, ws, req, done=lambda out: out.splitlines()[-1])
            return

        def answered(yes: bool | None) -> None:
            if yes:
                forced = ops.PinRequest(req.kind, req.ref, req.repo, force=True)
                self.run_op(ops.pin, ws, forced, done=lambda out: out.splitlines()[-1])

        question = f"{warning}.\nPin {req.describe()} anyway?"
        confirm = ConfirmScreen(question, yes="Pin anyway")
        self.app.call_from_thread(self.app.push_screen, confirm, answered)

    def promote(self, run_id: int | None) -> None:
        """The promotion wizard; it asks before any GPU time is spent."""
        if run_id is None:
            self._warn("no run selected")
            return

        def finished(result: Any) -> None:
            if result is not None:
                self.app.notify(f"wrote {result.folder}", timeout=10)

        self.app.push_screen(PromoteScreen(self.shell.ws, run_id), finished)

    def cancel(self, job_id: int | None) -> None:
        if job_id is None:
            self._warn("no job selected")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_op(
                    ops.cancel_job,
                    self.shell.ws,
                    job_id,
                    done=lambda _: f"cancelling job #{job_id}",
                )

        self.app.push_screen(ConfirmScreen(f"Cancel job #{job_id}?", yes="Cancel job"), answered)

    def swarm(self, agent: str | None) -> None:
        snap = self.shell.snapshot
        running = snap.agents_running if snap else 0
        self.app.push_screen(SwarmScreen(agent, running), self._swarm)

    def _swarm(self, req: SwarmRequest | None) -> None:
        if req is None:
            return
        ws, snap = self.shell.ws, self.shell.snapshot
        if req.action == "add":
            self.run_op(ops.add_agents, ws, req.count, req.driver, done=lambda out: out or "ok")
            return
        names = [req.agent] if req.action == "stop" and req.agent else []
        if req.action == "stop_all" and snap is not None:
            names = [a.name for a in snap.agents if a.desired != "down"]
        if not names:
            self._warn("no agents to stop")
            return
        question = f"Stop {names[0]}?" if len(names) == 1 else f"Stop all {len(names)} agents?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_op(ops.stop_agents, ws, names, done=lambda n: f"stopping {n} agent(s)")

        self.app.push_screen(ConfirmScreen(question, yes="Stop"), answered)

    # Hosts ----------------------------------------------------------------------------------
    def host_setup(self, name: str | None) -> None:
        """Set up the fleet pane's selected host: a dialog that says what will happen, then
        ``helm host setup`` streamed into it; only for an SSH box that is not ready."""
        snap = self.shell.snapshot
        host = next((h for h in snap.hosts if h.name == name), None) if snap else None
        if host is None:
            self._warn("select a host in the fleet pane (4) first")
            return
        if host.kind != "ssh":
            self._warn(
                f"setup is for SSH boxes: {host.name} is a {host.kind} host (a local host uses "
                "this machine's python; a Slurm host's nodes are the cluster's)"
            )
            return
        if is_ready(host):
            self.app.notify(f"{host.name} is ready: nothing to set up", timeout=4)
            return
        screen = HostSetupScreen(self.shell.ws, host, self.shell.setup_argv)
        self.app.push_screen(screen, lambda _rc: self.shell.request_refresh())
