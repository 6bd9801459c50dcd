"""The ``P`` wizard: promote a run to a records folder, asking before any GPU time is spent.

Three steps on one modal screen: the form (seeds, track, name, author, SOTA) -> the plan
(which seeds are reused, which would be queued, the GPU-hours, the pre-flight validation of
the run's own log) with an explicit confirmation -> the progress of the promotion and the
validator's verdict. Planning and promoting run in thread workers (``helm.promote`` blocks
on the store and on git); nothing is queued until the operator confirms on the plan step.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Log, RadioButton, RadioSet, Static

if TYPE_CHECKING:
    from helm.promote.promote import Event, Prepared, PromoteResult
    from helm.workspace import Workspace


class PromoteScreen(ModalScreen["PromoteResult | None"]):
    """Dismisses with the ``PromoteResult`` once a folder is written, else with None."""

    DEFAULT_CSS = """
    PromoteScreen { align: center middle; }
    PromoteScreen > Vertical {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    PromoteScreen .step { height: auto; }
    PromoteScreen .row { height: auto; }
    PromoteScreen .row Label { width: 14; padding: 1 1 0 0; }
    PromoteScreen .row Input { width: 1fr; }
    PromoteScreen RadioSet { layout: horizontal; width: 1fr; }
    PromoteScreen #plan { height: auto; max-height: 16; margin: 1 0; }
    PromoteScreen #progress-log { height: 14; }
    PromoteScreen #error { color: $error; height: auto; }
    PromoteScreen .buttons { height: auto; margin-top: 1; }
    PromoteScreen .buttons Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("escape", "close", "close", show=False),
        Binding("y", "confirm", "confirm", show=False),
        Binding("n", "back", "back", show=False),
    ]

    def __init__(self, ws: Workspace, run_id: int) -> None:
        super().__init__()
        self.ws = ws
        self.run_id = run_id
        self.step = "form"  # form | planning | confirm | running | finished
        self.prepared: Prepared | None = None
        self.result: PromoteResult | None = None

    # Layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        from golf_task.validate import DEFAULT_SOTA

        with Vertical():
            yield Static(f"[b]Promote run #{self.run_id}[/] to a records folder", id="title")
            with Vertical(id="form", classes="step"):
                yield from self._row("seeds", "seeds", "42,1337,2025")
                with Horizontal(classes="row"):
                    yield Label("track")
                    with RadioSet(id="track"):
                        yield RadioButton("record (10 min, 16 MB)", value=True, id="record")
                        yield RadioButton("non-record", id="non-record")
                yield from self._row("name", "name", "", placeholder=f"default: run{self.run_id}")
                yield from self._row("author", "author", os.environ.get("HELM_AUTHOR", ""))
                yield from self._row("github id", "github", os.environ.get("HELM_GITHUB_ID", ""))
                yield from self._row("SOTA bpb", "sota", f"{DEFAULT_SOTA}")
                with Horizontal(classes="buttons"):
                    yield Button("Plan (enter)", variant="primary", id="plan-btn")
                    yield Button("Close (esc)", id="close-btn")
            yield Static("", id="plan")
            yield Static("", id="error")
            with Vertical(id="confirm", classes="step"):
                yield Static("", id="question")
                with Horizontal(classes="buttons"):
                    yield Button("Yes, go (y)", variant="error", id="yes-btn")
                    yield Button("Back (n)", id="no-btn")
            with Vertical(id="progress", classes="step"):
                yield Log(id="progress-log", max_lines=2000)
                with Horizontal(classes="buttons"):
                    yield Button("Close (esc)", id="done-btn")

    def _row(self, label: str, ident: str, value: str, *, placeholder: str = "") -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(label)
            yield Input(value=value, placeholder=placeholder, id=ident)

    def on_mount(self) -> None:
        self._show("form")
        self.query_one("#seeds", Input).focus()

    def _show(self, step: str) -> None:
        self.step = step
        self.query_one("#form").display = step in ("form", "planning")
        self.query_one("#confirm").display = step == "confirm"
        self.query_one("#progress").display = step in ("running", "finished")
        self.query_one("#plan").display = step in ("confirm", "running", "finished")

    # Step 1: the form -> a plan -----------------------------------------------------------
    def _options(self) -> Any:
        from helm.promote.promote import PromoteOptions

        def entry(ident: str) -> str:
            return self.query_one(f"#{ident}", Input).value.strip()

        try:
            seeds = tuple(int(s) for s in entry("seeds").split(",") if s.strip())
        except ValueError:
            raise ValueError("seeds: comma-separated integers, e.g. 42,1337,2025") from None
        sota_text = entry("sota")
        try:
            sota = float(sota_text) if sota_text else None
        except ValueError:
            raise ValueError(f"SOTA: {sota_text!r} is not a number") from None
        pressed = self.query_one("#track", RadioSet).pressed_button
        track = pressed.id if pressed is not None and pressed.id else "record"
        return PromoteOptions(
            seeds=seeds,
            track=track,
            name=entry("name") or None,
            author=entry("author") or None,
            github_id=entry("github") or None,
            sota=sota,
        )

    @on(Button.Pressed, "#plan-btn")
    @on(Input.Submitted)
    def action_plan(self) -> None:
        if self.step != "form":
            return
        try:
            opts = self._options()
        except ValueError as exc:
            self._error(str(exc))
            return
        self._error("")
        self.step = "planning"
        self.query_one("#plan", Static).update("planning ...")
        self._prepare(opts)

    @work(thread=True, exclusive=True, group="promote-plan", exit_on_error=False)
    def _prepare(self, opts: Any) -> None:
        from helm.promote.promote import prepare

        try:
            prepared = prepare(self.ws, self.run_id, opts)
        except Exception as exc:  # every failure is a message on the form, never a crash
            self.app.call_from_thread(self._planning_failed, str(exc))
            return
        self.app.call_from_thread(self._planned, prepared)

    def _planning_failed(self, message: str) -> None:
        self._show("form")
        self._error(message)

    def _planned(self, prepared: Prepared) -> None:
        self.prepared = prepared
        plan = prepared.plan
        self.query_one("#plan", Static).update(
            f"{plan.describe()}\nfolder: {prepared.target}\n"
            "pre-flight: the run's own log passes the validator's rules"
        )
        n = len(plan.to_queue)
        question = (
            f"Queue {n} run(s) on {plan.gpus} GPU(s) each, about {plan.gpu_hours:.2f} GPU-hours "
            f"(at most {plan.gpu_hours_max:.2f}), then write and validate the folder?"
            if n
            else "Every seed has a result already: write and validate the folder?"
        )
        self.query_one("#question", Static).update(question)
        self._show("confirm")
        self.query_one("#no-btn", Button).focus()

    # Step 2: confirmation -----------------------------------------------------------------
    @on(Button.Pressed, "#yes-btn")
    def action_confirm(self) -> None:
        if self.step != "confirm" or self.prepared is None:
            return
        self._show("running")
        self._execute(self.prepared)

    @on(Button.Pressed, "#no-btn")
    def action_back(self) -> None:
        if self.step == "confirm":
            self.prepared = None
            self._show("form")
            self.query_one("#seeds", Input).focus()

    # Step 3: the promotion ----------------------------------------------------------------
    @work(thread=True, exclusive=True, group="promote-run", exit_on_error=False)
    def _execute(self, prepared: Prepared) -> None:
        from helm.promote.promote import execute

        def on_event(event: Event) -> None:
            self.app.call_from_thread(self._log, event.text)

        try:
            result = execute(self.ws, prepared, on_event)
        except Exception as exc:
            self.app.call_from_thread(self._finished, None, str(exc))
            return
        self.app.call_from_thread(self._finished, result, None)

    def _log(self, line: str) -> None:
        if self.is_attached:  # closed mid-promotion: the runs go on, the log has no reader
            self.query_one("#progress-log", Log).write_line(line)

    def _finished(self, result: PromoteResult | None, error: str | None) -> None:
        self.result = result
        self.step = "finished"
        if not self.is_attached:
            what = f"wrote {result.folder}" if result else f"promotion stopped: {error}"
            self.app.notify(what, severity="information" if result else "error", timeout=8)
            return
        if result is not None:
            from helm.promote.render import render_report

            for line in render_report(result.report).splitlines():
                self._log(line)
            self._log(f"wrote {result.folder}")
        else:
            self._log(f"stopped: {error}")
            self._error(error or "")
        self.query_one("#done-btn", Button).focus()

    # Closing ------------------------------------------------------------------------------
    @on(Button.Pressed, "#close-btn")
    @on(Button.Pressed, "#done-btn")
    def action_close(self) -> None:
        if self.step == "running":
            self.notify("the promotion is running; its runs keep going if you close", timeout=4)
        self.dismiss(self.result)

    def _error(self, message: str) -> None:
        self.query_one("#error", Static).update(message)
