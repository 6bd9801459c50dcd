"""The ``P`` wizard: promote a run to a records folder, asking before any GPU time is spent.

Three steps on one modal screen: the form (seeds, track, name, author, SOTA) -> the plan
(which seeds are reused, which would be queued, the GPU-hours, whether a record is within
reach of the rules at all, the pre-flight validation of the run's own log) with an explicit
confirmation -> the progress of the promotion and the validator's verdict. Planning and
promoting run in thread workers (``helm.promote`` blocks on the store and on git); nothing is
queued until the operator confirms on the plan step.

The track is chosen for the operator until they choose it: as the wizard opens, a worker
judges the record rules from the runs already scored (``helm.promote.feasibility``) and
selects non-record when a record is out of reach, saying why under the choice.

The progress step keeps one live line per seed (the tenth of the run it reached, replaced in
place) above a log of what happened (queued, each state change, the score, the verdict), each
thing told once and in one place.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Log, RadioButton, RadioSet, Static

from helm.tui import commands as cmds

if TYPE_CHECKING:
    from helm.promote.feasibility import Feasibility
    from helm.promote.promote import Event, Prepared, PromoteResult
    from helm.workspace import Workspace

# The input that holds the option a PromoteError names (``exc.field``).
FIELD_INPUT = {"author": "author", "github_id": "github", "name": "name", "seeds": "seeds"}


class ChoiceButton(RadioButton):
    """A radio button whose glyph, not only its colour, says whether it is chosen.

    Textual draws ``▐●▌`` for both states and tells them apart by the dot's colour alone
    (``$text-success`` against ``$panel-darken-2`` on ``$panel``); in tmux or a 256-colour
    terminal those come out alike and both choices look selected. ``○`` is the one not chosen.
    """

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name
        return "●" if self.value else "○"


class PromoteScreen(ModalScreen["PromoteResult | None"]):
    """Dismisses with the ``PromoteResult`` once a folder is written, else with None."""

    CONTEXT = cmds.PROMOTE
    BINDINGS = cmds.bindings_for(cmds.PROMOTE)
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
    PromoteScreen #reach { height: auto; padding: 0 0 0 14; color: $text-muted; }
    PromoteScreen #reach.-out { color: $warning; }
    PromoteScreen #plan { height: auto; max-height: 20; margin: 1 0; }
    PromoteScreen #seed-status { height: auto; }
    PromoteScreen #progress-log { height: 14; }
    PromoteScreen #error { color: $error; height: auto; }
    PromoteScreen .buttons { height: auto; margin-top: 1; }
    PromoteScreen .buttons Button { margin-right: 2; }
    """

    def __init__(self, ws: Workspace, run_id: int) -> None:
        super().__init__()
        self.ws = ws
        self.run_id = run_id
        self.step = "form"  # form | planning | confirm | running | finished
        self.prepared: Prepared | None = None
        self.result: PromoteResult | None = None
        self.feasibility: Feasibility | None = None
        self.track_chosen = False  # the operator pressed a track: it is no longer defaulted
        self._track_set = "record"  # the track the wizard itself selected last
        self.seed_lines: dict[int, str] = {}  # the progress step's live line per seed

    # Layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        from golf_task.validate import DEFAULT_SOTA

        with Vertical():
            yield Static(f"[b]Promote run #{self.run_id}[/] to a records folder", id="title")
            with Vertical(id="form", classes="step"):
                yield from self._row("Seeds", "seeds", "42,1337,2025")
                with Horizontal(classes="row"):
                    yield Label("Track")
                    with RadioSet(id="track"):
                        yield ChoiceButton("record (10 min, 16 MB)", value=True, id="record")
                        yield ChoiceButton("non-record", id="non-record")
                yield Static("checking whether a record is within reach ...", id="reach")
                yield from self._row("Name", "name", "", placeholder=f"default: run{self.run_id}")
                yield from self._row("Author", "author", os.environ.get("HELM_AUTHOR", ""))
                yield from self._row("GitHub id", "github", os.environ.get("HELM_GITHUB_ID", ""))
                yield from self._row("SOTA bpb", "sota", f"{DEFAULT_SOTA}")
                with Horizontal(classes="buttons"):
                    yield Button("Plan (enter)", variant="primary", id="plan-btn")
                    yield Button(f"Close ({self.key('promote_close')})", id="close-btn")
            yield Static("", id="plan")
            yield Static("", id="error")
            with Vertical(id="confirm", classes="step"):
                yield Static("", id="question")
                with Horizontal(classes="buttons"):
                    yield Button(
                        f"Yes, go ({self.key('promote_confirm')})", variant="error", id="yes-btn"
                    )
                    yield Button(f"Back ({self.key('promote_back')})", id="no-btn")
            with Vertical(id="progress", classes="step"):
                yield Static("", id="seed-status")
                yield Log(id="progress-log", max_lines=2000)
                with Horizontal(classes="buttons"):
                    yield Button(f"Close ({self.key('promote_close')})", id="done-btn")

    def key(self, command_id: str) -> str:
        """The key the operator presses for a command now (their ``[keys]`` applied)."""
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        return cmds.display_key(cmds.key_of(cmds.BY_ID[command_id], keymap))

    def _row(self, label: str, ident: str, value: str, *, placeholder: str = "") -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(label)
            yield Input(value=value, placeholder=placeholder, id=ident)

    def on_mount(self) -> None:
        self._show("form")
        self.query_one("#seeds", Input).focus()
        self._assess()

    def _show(self, step: str) -> None:
        self.step = step
        self.query_one("#form").display = step in ("form", "planning")
        self.query_one("#confirm").display = step == "confirm"
        self.query_one("#progress").display = step in ("running", "finished")
        self.query_one("#plan").display = step in ("confirm", "running", "finished")
        self.query_one("#error").display = step in ("form", "planning", "confirm")

    # Step 0: can a record pass at all? (judged as the wizard opens) ----------------------
    @work(thread=True, exclusive=True, group="promote-assess", exit_on_error=False)
    def _assess(self) -> None:
        from golf_task.validate import DEFAULT_SOTA
        from helm.promote.feasibility import assess
        from helm.promote.plan import plan_promotion

        try:
            plan = plan_promotion(self.ws, self.run_id)
            feas = assess(self.ws, plan, DEFAULT_SOTA)
        except Exception as exc:  # the plan step says it again, with the form's values
            self.app.call_from_thread(self._reach, None, str(exc), None)
            return
        self.app.call_from_thread(self._reach, feas, None, plan.run.get("agent"))

    def _reach(self, feas: Feasibility | None, error: str | None, agent: str | None) -> None:
        if not self.is_attached:
            return
        reach = self.query_one("#reach", Static)
        if feas is None:
            reach.update(f"cannot judge the record rules yet: {error}")
            return
        self.feasibility = feas
        if agent:
            self.query_one("#name", Input).placeholder = f"default: {agent}_run{self.run_id}"
        out = feas.reachable is False
        reach.set_class(out, "-out")
        if out and not self.track_chosen:
            self._set_track("non-record")
            reach.update(f"{feas.verdict}. Non-record is chosen; choose record to try anyway.")
        else:
            reach.update(feas.verdict)

    def _set_track(self, track: str) -> None:
        """Select ``track`` for the operator (their own choice is never overridden)."""
        self._track_set = track
        self.query_one(f"#{track}", RadioButton).value = True

    @on(RadioSet.Changed, "#track")
    def _track_changed(self, event: RadioSet.Changed) -> None:
        if event.pressed.id != self._track_set:  # not the wizard's own selection
            self.track_chosen = True

    # Step 1: the form -> a plan -----------------------------------------------------------
    def _options(self) -> Any:
        from helm.promote.promote import PromoteOptions

        def entry(ident: str) -> str:
            return self.query_one(f"#{ident}", Input).value.strip()

        try:
            seeds = tuple(int(s) for s in entry("seeds").split(",") if s.strip())
        except ValueError:
            raise ValueError("Seeds: comma-separated integers, e.g. 42,1337,2025") from None
        sota_text = entry("sota")
        try:
            sota = float(sota_text) if sota_text else None
        except ValueError:
            raise ValueError(f"SOTA: {sota_text!r} is not a number") from None
        track = None  # left to the plan: record unless the rules rule it out
        if self.track_chosen:
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
            self.app.call_from_thread(self._planning_failed, exc)
            return
        self.app.call_from_thread(self._planned, prepared)

    def _planning_failed(self, exc: Exception) -> None:
        self._show("form")
        self._error(str(exc))  # in words, never a flag: the option is named by its input
        field = getattr(exc, "field", None)
        if field in FIELD_INPUT:
            self.query_one(f"#{FIELD_INPUT[field]}", Input).focus()

    def _planned(self, prepared: Prepared) -> None:
        self.prepared = prepared
        plan = prepared.plan
        if not self.track_chosen:  # the form shows the track the plan defaulted to
            self._set_track(prepared.track)
        self.query_one("#plan", Static).update(
            f"{prepared.describe()}\nfolder: {prepared.target}\n"
            "pre-flight: the run's own log passes the validator's rules"
        )
        n = len(plan.to_queue)
        question = (
            f"Queue {n} run(s) on {plan.gpus} GPU(s) each, about {plan.gpu_hours:.2f} GPU-hours "
            f"(at most {plan.gpu_hours_max:.2f}), then write and validate the folder?"
            if n
            else "Every seed has a result already: write and validate the folder?"
        )
        if prepared.warning:
            question = f"{prepared.warning[0].upper()}{prepared.warning[1:]}. {question}"
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
            self.app.call_from_thread(self._event, event)

        try:
            result = execute(self.ws, prepared, on_event)
        except Exception as exc:
            self.app.call_from_thread(self._finished, None, str(exc))
            return
        self.app.call_from_thread(self._finished, result, None)

    def _event(self, event: Event) -> None:
        """A seed's steps replace its live line; every other event is a line of the log."""
        if event.kind != "step" or event.seed is None:
            self._log(event.text)
            return
        self.seed_lines[event.seed] = event.text
        if self.is_attached:
            lines = [self.seed_lines[s] for s in sorted(self.seed_lines)]
            self.query_one("#seed-status", Static).update("\n".join(lines))

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
        if result is not None:  # "wrote <folder>" is already in the log (its event)
            from helm.promote.render import render_report

            for line in render_report(result.report).splitlines():
                self._log(line)
        else:  # told once, in the log, where the operator is reading
            self._log(f"stopped: {error}")
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
