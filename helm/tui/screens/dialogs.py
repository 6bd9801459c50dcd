"""Small modal screens: confirm, broadcast composer, pin, swarm control.

Each dialog only collects what the operator wants and dismisses with it; the app does the
work in a worker. That keeps dialogs trivially testable and free of store access.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static

from helm.tui import commands as cmds
from helm.tui import composer
from helm.tui.ops import PinRequest, parse_pin


class Dialog(ModalScreen):
    """Escape closes any dialog with no result. Keys come from the registry (``DIALOG``)."""

    CONTEXT = cmds.DIALOG
    BINDINGS = cmds.bindings_for(cmds.DIALOG)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def key(self, command_id: str) -> str:
        """The key the user presses for a command now (their ``[keys]`` applied)."""
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        return cmds.display_key(cmds.key_of(cmds.BY_ID[command_id], keymap))


class ConfirmScreen(Dialog):
    """Destructive actions ask first; ``y`` confirms, ``n`` or ``escape`` declines (the
    focused button answers ``enter``: "No" has the focus, so a stray enter declines)."""

    CONTEXT = cmds.CONFIRM
    BINDINGS = cmds.bindings_for(cmds.CONFIRM)

    def __init__(self, question: str, *, yes: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} ({self.key('confirm_yes')})", variant="error", id="yes")
                yield Button(f"No ({self.key('confirm_no')})", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


@dataclass(frozen=True)
class BroadcastRequest:
    text: str
    targets: tuple[str, ...] | None  # None: every agent


class BroadcastScreen(Dialog):
    """A one-line composer; ``enter`` sends. Targets are optional; saved texts can be re-used.

    It says who is listening (``composer``): the sweep agents follow only their grammar,
    coding agents read prose; it suggests what those present can follow and checks the
    text against the grammar as it is typed. ``present`` are the agents (name, driver,
    state) and ``runs`` the leaderboard's (their ``env`` names the knobs to suggest); by
    default both come from the app's last snapshot.
    """

    def __init__(
        self,
        agents: list[str],
        saved: list[str],
        *,
        present: Sequence[composer.AgentLike] | None = None,
        runs: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(classes="dialog")
        self.agents = agents
        self.saved = saved
        self._present = present
        self._runs = runs
        self.suggestions: list[composer.Suggestion] = []

    def _snapshot_parts(self) -> tuple[Sequence[composer.AgentLike], Sequence[Mapping[str, Any]]]:
        snap = getattr(self.app, "snapshot", None)
        present = self._present if self._present is not None else getattr(snap, "agents", ())
        runs = self._runs if self._runs is not None else getattr(snap, "leaderboard", ())
        return present, runs

    def _audience(self) -> composer.Audience:
        present, _ = self._snapshot_parts()
        return composer.audience(present, self._targets() or None)

    def compose(self) -> ComposeResult:
        present, runs = self._snapshot_parts()
        aud = composer.audience(present)
        self.suggestions = composer.suggestions(aud, runs)
        example = self.suggestions[0].text if self.suggestions else "sweep KEY=a,b"
        with Vertical(classes="box wide"):
            yield Label("Broadcast a directive  [dim](enter sends · esc closes)[/]")
            yield Input(placeholder=f"e.g. {example}", id="text")
            yield Input(
                placeholder=f"to: all {len(self.agents)} agents (or a1,a2)",
                id="targets",
            )
            yield Static(composer.describe(aud), id="audience", classes="hint", markup=False)
            yield Static("", id="verdict", markup=False)
            if self.saved:
                yield Label("[dim]earlier directives (enter re-uses)[/]")
                yield OptionList(*[t[:200] for t in self.saved], id="saved")
            if self.suggestions:
                yield Label("[dim]suggestions for the agents present (enter fills)[/]")
                yield OptionList(*[self._option(s) for s in self.suggestions], id="suggestions")

    @staticmethod
    def _option(s: composer.Suggestion) -> Text:
        who = "all agents" if s.who == composer.SWEEP else "prose readers only"
        return Text.assemble(s.text[:160], (f"  · {who}", "dim"))

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    def _targets(self) -> tuple[str, ...]:
        raw = self.query_one("#targets", Input).value
        return tuple(n.strip() for n in raw.replace(" ", ",").split(",") if n.strip())

    @on(Input.Changed)
    def _changed(self) -> None:
        """Who can follow the text, for the agents it would go to now."""
        text = self.query_one("#text", Input).value
        self.query_one("#verdict", Static).update(composer.verdict(text, self._audience()))

    @on(OptionList.OptionSelected, "#saved")
    def _reuse(self, event: OptionList.OptionSelected) -> None:
        self._fill(self.saved[event.option_index])

    @on(OptionList.OptionSelected, "#suggestions")
    def _suggest(self, event: OptionList.OptionSelected) -> None:
        self._fill(self.suggestions[event.option_index].text)

    def _fill(self, text: str) -> None:
        box = self.query_one("#text", Input)
        box.value = text
        box.focus()

    @on(Input.Submitted)
    def _send(self) -> None:
        text = self.query_one("#text", Input).value.strip()
        if not text:
            self.notify("the directive is empty", severity="warning")
            self.query_one("#text", Input).focus()
            return
        names = self._targets()
        unknown = sorted(set(names) - set(self.agents))
        if unknown:
            self.notify(f"unknown agent(s): {', '.join(unknown)}", severity="error")
            return
        self.dismiss(BroadcastRequest(text, names or None))


class PinScreen(Dialog):
    """One line says what to pin: a PR number, ``run N``, a file path, or empty = selected run."""

    def __init__(self, selected_run: int | None) -> None:
        super().__init__(classes="dialog")
        self.selected_run = selected_run

    def compose(self) -> ComposeResult:
        hint = f"empty: run #{self.selected_run}" if self.selected_run else "nothing selected"
        with Vertical(classes="box wide"):
            yield Label("Pin the base every agent builds on")
            yield Input(placeholder=f"374 · owner/repo#374 · run 12 · path/file.py · {hint}")
            yield Static(self._preview(""), id="preview", classes="hint")

    def _preview(self, text: str) -> str:
        req = parse_pin(text, self.selected_run)
        return f"→ pin {req.describe()}" if req else "→ type a PR number, run N or a file path"

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#preview", Static).update(self._preview(event.value))

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        req: PinRequest | None = parse_pin(event.value, self.selected_run)
        if req is None:
            self.notify("nothing to pin", severity="warning")
            return
        self.dismiss(req)


@dataclass(frozen=True)
class SwarmRequest:
    action: str  # add | stop | stop_all
    count: int = 0
    driver: str = "sweep"
    agent: str | None = None


class SwarmScreen(Dialog):
    """Grow the swarm, or stop the selected agent or all of them (both confirmed after)."""

    def __init__(self, selected_agent: str | None, running: int) -> None:
        super().__init__(classes="dialog")
        self.selected_agent = selected_agent
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide"):
            yield Label(f"Swarm: {self.running} agents running")
            with Horizontal(classes="row"):
                yield Input("1", id="count", type="integer", classes="narrow")
                yield Input("sweep", id="driver", placeholder="sweep|claude|codex|opencode|CMD")
                yield Button("Add", id="add", variant="primary")
            with Horizontal(classes="buttons"):
                if self.selected_agent:
                    yield Button(f"Stop {self.selected_agent}", id="stop", variant="error")
                yield Button("Stop all", id="stop_all", variant="error")

    def on_mount(self) -> None:
        self.query_one("#count", Input).focus()

    def _add(self) -> None:
        try:
            count = int(self.query_one("#count", Input).value or "0")
        except ValueError:
            count = 0
        driver = self.query_one("#driver", Input).value.strip() or "sweep"
        if count < 1:
            self.notify("add at least one agent", severity="warning")
            return
        self.dismiss(SwarmRequest("add", count=count, driver=driver))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._add()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add":
            self._add()
        elif event.button.id == "stop":
            self.dismiss(SwarmRequest("stop", agent=self.selected_agent))
        elif event.button.id == "stop_all":
            self.dismiss(SwarmRequest("stop_all"))
