"""The ``S`` dialog: set up a host that is not ready, and watch it happen.

Two steps on one modal screen: what will happen (the six steps of ``helm host setup``, on
which host, the data variant, what the last check found with its fixes) and an explicit
``y`` -> the progress, ``helm host setup NAME --data VARIANT`` running as a subprocess in a
thread worker (never on the UI loop), each line it prints (``step k/6 ...``, the data's
bytes and ETA) appended to the log as it comes. Escape interrupts it with SIGINT, which
setup handles as a resumable interrupt (finished steps are kept, a download continues where
it stopped); escape again, while it is still winding down, stops it with SIGTERM. When it
ends the app reads a fresh snapshot, so the fleet pane shows the check setup saved.

The command comes from ``argv_for`` (the app's ``setup_argv``, ``ops.setup_argv`` unless a
test hands it a stand-in).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Log, RadioSet, Static

from golf_task.variants import DEFAULT_VARIANT, VARIANTS
from helm.tui import commands as cmds
from helm.tui.data import HostView
from helm.tui.protocol import shell_of
from helm.tui.readiness import readiness
from helm.tui.screens.promote import ChoiceButton
from helm.workspace import Workspace

SetupArgv = Callable[[Workspace, str, str], list[str]]  # (ws, host, variant) -> argv

STEP_WORDS = {
    "driver": "the GPU driver and its CUDA version (nvidia-smi)",
    "venv": "a venv in the host's work folder, used by its jobs from then on",
    "packages": "the torch build for that driver, and the task's other dependencies",
    "code": "golf_task uploaded",
    "data": f"the data chosen below (default {DEFAULT_VARIANT}) and its tokenizer; resumable",
    "check": "host check, saved on the host (what the fleet pane shows)",
}
"""What each of ``helm.remote.setup.STEPS`` does, in the dialog's words."""


def plan_text(host: HostView) -> str:
    """What ``y`` will do on ``host``, and what its last check found (with the fixes)."""
    from helm.remote.setup import STEPS

    n = len(STEPS)
    lines = [
        f"helm host setup {host.name} makes the box ready, one step at a time; a step that "
        "is still true is skipped, and an interrupted setup continues where it stopped:",
        *(f"  {i}/{n} {s:<9} {STEP_WORDS.get(s, '')}" for i, s in enumerate(STEPS, 1)),
        "",
        f"now: {readiness(host)[0]}",
    ]
    for level, problem, fix in host.verdicts:
        mark = "✕" if level == "blocker" else "!"
        lines.append(f"  {mark} {problem}" + (f"\n      fix: {fix}" if fix else ""))
    return "\n".join(lines)


class HostSetupScreen(ModalScreen["int | None"]):
    """Dismisses with setup's exit code once it ran, else None."""

    CONTEXT = cmds.SETUP
    BINDINGS = cmds.bindings_for(cmds.SETUP)
    DEFAULT_CSS = """
    HostSetupScreen { align: center middle; }
    HostSetupScreen > Vertical {
        width: 100; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    HostSetupScreen #setup-plan { height: auto; margin-bottom: 1; }
    HostSetupScreen .row { height: auto; }
    HostSetupScreen .row Label { width: 8; padding: 1 1 0 0; }
    HostSetupScreen RadioSet { layout: horizontal; width: 1fr; }
    HostSetupScreen #setup-log { height: 16; display: none; }
    HostSetupScreen #setup-log.shown { display: block; }
    HostSetupScreen #setup-status { height: auto; color: $text-muted; }
    HostSetupScreen .buttons { height: auto; margin-top: 1; }
    HostSetupScreen .buttons Button { margin-right: 2; }
    """

    def __init__(self, ws: Workspace, host: HostView, argv_for: SetupArgv) -> None:
        super().__init__()
        self.ws = ws
        self.host = host
        self.argv_for = argv_for
        self.state = "confirm"  # confirm | running | interrupting | finished
        self.proc: subprocess.Popen[str] | None = None
        self.returncode: int | None = None
        self._interrupt_early = False  # escape before the process existed

    def key(self, command_id: str) -> str:
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        return cmds.display_key(cmds.key_of(cmds.BY_ID[command_id], keymap))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"[b]Set up host {self.host.name}[/]", id="setup-title")
            yield Static(plan_text(self.host), id="setup-plan", markup=False)
            with Horizontal(classes="row", id="variant-row"):
                yield Label("Data")
                with RadioSet(id="variant"):
                    for v in VARIANTS:
                        yield ChoiceButton(v, value=v == DEFAULT_VARIANT, id=f"variant-{v}")
            yield Log(id="setup-log", max_lines=2000)
            yield Static("", id="setup-status", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"Set up ({self.key('setup_start')})", variant="primary", id="start")
                yield Button(f"Close ({self.key('setup_cancel')})", id="close")

    def on_mount(self) -> None:
        # The button, not the choice: a focused RadioSet highlights its first entry, which
        # reads as chosen; setup is idempotent, so a stray enter costs nothing.
        self.query_one("#start", Button).focus()

    def variant(self) -> str:
        pressed = self.query_one("#variant", RadioSet).pressed_button
        return str(pressed.label) if pressed is not None else DEFAULT_VARIANT

    def _status(self, text: str) -> None:
        self.query_one("#setup-status", Static).update(text)

    # Keys and buttons -----------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if self.state != "confirm":
            return
        variant = self.variant()
        argv = self.argv_for(self.ws, self.host.name, variant)
        self.state = "running"
        self.query_one("#variant-row").display = False
        self.query_one("#start", Button).display = False
        log = self.query_one("#setup-log", Log)
        log.add_class("shown")
        log.write_line(f"$ helm host setup {self.host.name} --data {variant}")
        self._status(f"running ({self.key('setup_cancel')} interrupts; it resumes next time)")
        self.run_worker(lambda: self._run(argv), group="setup", thread=True, exit_on_error=False)

    @on(Button.Pressed, "#close")
    def action_cancel(self) -> None:
        """Before: close. Running: SIGINT (setup's resumable interrupt); again: SIGTERM.
        After: close with the exit code."""
        if self.state == "confirm":
            self.dismiss(None)
        elif self.state == "running":
            self.state = "interrupting"
            self._status(f"interrupting … ({self.key('setup_cancel')} again stops it now)")
            self._signal(signal.SIGINT)
        elif self.state == "interrupting":
            self._signal(signal.SIGTERM)
        else:
            self.dismiss(self.returncode)

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            self._interrupt_early = True
        elif proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def on_unmount(self) -> None:
        """Closing the app while setup runs interrupts it (its output has nowhere to go)."""
        if self.state in ("running", "interrupting"):
            self._signal(signal.SIGINT)

    # The subprocess (a thread worker) -------------------------------------------------------
    def _ui(self, fn: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app has gone: nothing left to show
            self.app.call_from_thread(fn, *args)

    def _run(self, argv: list[str]) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                env=env,
                start_new_session=True,  # the terminal's signals are the TUI's, not setup's
            )
        except OSError as exc:
            self._ui(self._line, f"could not start {argv[0]}: {exc}")
            self._ui(self._finished, None)
            return
        self.proc = proc
        if self._interrupt_early:
            proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None
        for line in proc.stdout:
            self._ui(self._line, line.rstrip("\n"))
        self._ui(self._finished, proc.wait())

    def _line(self, line: str) -> None:
        self.query_one("#setup-log", Log).write_line(line)

    def _finished(self, rc: int | None) -> None:
        interrupted = self.state == "interrupting"
        self.state, self.returncode = "finished", rc
        name, close = self.host.name, self.key("setup_cancel")
        if rc == 0:
            self._status(f"finished: {name} is set up; its check is on the fleet pane ({close})")
        elif interrupted:
            self._status(
                f"interrupted: finished steps are kept; {self.key('host_setup')} again "
                f"continues where it stopped ({close} closes)"
            )
        else:
            self._status(f"setup ended with exit code {rc}: the log's last lines say why")
        self.query_one("#close", Button).focus()
        shell_of(self).request_refresh()
