"""The one command registry: every key, help line, footer entry and palette hit comes from here.

A command has a stable id (what a user's keymap names), a default key, a description, the
action it runs (a Textual action string resolved on the screen that binds it) and the
contexts (screens) where it applies. Screens build their ``BINDINGS`` from the registry,
the help screen lists it, the footer shows the bindings it produced and the palette provider
searches it, so a command added here is everywhere at once and nowhere else needs editing.

The user keymap (``[keys]`` in ``<home>/config.toml``: ``broadcast = "B"``) goes through
Textual's own keymap by binding id, so a remap changes the key everywhere, footer included.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from textual.screen import Screen

APP = "app"
MAIN = "main"
DETAIL = "detail"
PLOT = "plot"
VIEW = "view"  # read-only screens opened from main (diff, plot): they only go back
HELP = "help"  # the help screen (?)
DIALOG = "dialog"  # every small dialog (broadcast, pin, swarm, confirm)
CONFIRM = "confirm"  # the yes/no question before anything destructive
PROMOTE = "promote"  # the promotion wizard (P): form -> plan -> progress
SETUP = "setup"  # the host setup dialog (S on the fleet pane): confirm -> progress

MOVE = "app.move"  # resolved on the app: it moves whatever widget has the focus


@dataclass(frozen=True)
class Command:
    """One operator command; ``contexts`` are the screens whose bindings include it."""

    id: str
    key: str
    description: str
    action: str
    contexts: tuple[str, ...]
    show: bool = True  # in the footer (the help screen and palette list every command)
    priority: bool = False  # wins over a focused widget's own binding of the same key
    palette: bool = True

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            priority=self.priority,
            id=self.id,
        )


def _move(ident: str, key: str, description: str, where: str) -> Command:
    """A movement key: app-wide and priority (a DataTable's own ``home`` scrolls sideways),
    but the app declines it while an Input has the focus, so typing and editing still work."""
    return Command(ident, key, description, f"{MOVE}('{where}')", (APP,), False, True, False)


REGISTRY: tuple[Command, ...] = (
    # Movement (k9s / lazygit): the focused table, log, list or help moves.
    _move("cursor_down", "j", "down (also ↓)", "down"),
    _move("cursor_up", "k", "up (also ↑)", "up"),
    _move("top", "g,home", "first row / top", "top"),
    _move("bottom", "G,end", "last row / bottom", "bottom"),
    _move("page_down", "pagedown", "page down", "page_down"),
    _move("page_up", "pageup", "page up", "page_up"),
    # The main screen.
    Command("pane_agents", "1", "agents & jobs", "focus_pane('agents')", (MAIN,), show=False),
    Command("pane_leaderboard", "2", "leaderboard", "focus_pane('leaderboard')", (MAIN,), False),
    Command("pane_feed", "3", "feed", "focus_pane('feed')", (MAIN,), show=False),
    Command("pane_fleet", "4", "fleet", "focus_pane('fleet')", (MAIN,), show=False),
    Command("next_pane", "tab", "next pane", "app.focus_next", (MAIN,), show=False, palette=False),
    Command("zoom", "z", "zoom pane", "zoom", (MAIN, DETAIL), show=False),
    Command("open", "enter", "run detail", "open_detail", (MAIN,), show=False),
    # The run detail's tabs.
    Command("tab_log", "1", "log tab", "show_tab('tab-log')", (DETAIL,), show=False),
    Command("tab_diff", "2", "diff tab", "show_tab('tab-diff')", (DETAIL,), show=False),
    Command("prev_tab", "left_square_bracket", "prev tab", "cycle_tab(-1)", (DETAIL,)),
    Command("next_tab", "right_square_bracket", "next tab", "cycle_tab(1)", (DETAIL,)),
    # Steering and views.
    Command("broadcast", "b", "broadcast", "app.broadcast", (APP,)),
    Command("pin", "p", "pin base", "pin", (MAIN, DETAIL)),
    Command("diff", "d", "diff", "diff", (MAIN, DETAIL)),
    Command("mark", "m", "mark for diff", "mark", (MAIN, DETAIL), show=False),
    Command("promote", "P", "promote", "promote", (MAIN, DETAIL), show=False),
    Command("cancel", "c", "cancel job", "cancel", (MAIN, DETAIL)),
    Command("swarm", "s", "swarm", "swarm", (MAIN,)),
    Command("host_setup", "S", "set up the host (fleet pane)", "host_setup", (MAIN,), False),
    Command("community", "a", "community PRs (audits)", "community", (MAIN,), show=False),
    Command("filter", "slash", "filter", "filter", (MAIN,)),
    Command("plot", "v", "progress plot", "app.plot", (APP,), show=False),
    Command("spend", "dollar_sign", "money per improvement", "app.spend", (APP,), show=False),
    Command("refresh_rate", "r", "refresh rate", "app.cycle_rate", (APP,), show=False),
    Command("pause", "space", "pause / resume", "app.toggle_pause", (APP,), show=False),
    Command("theme", "T", "change theme", "app.change_theme", (APP,), show=False),
    Command(
        "back", "escape", "back / unzoom / clear", "app.back", (MAIN, DETAIL, VIEW), False, False
    ),
    Command("help", "question_mark", "help", "app.help", (APP,)),
    Command("palette", "ctrl+p", "command palette", "app.command_palette", (APP,), False, True),
    Command("quit", "q", "quit", "app.quit", (APP,)),
    # Help and the dialogs (enter in a dialog's input is the input's own submit).
    Command("help_close", "escape,question_mark,q", "close help", "dismiss", (HELP,), False),
    Command("dialog_close", "escape", "close", "dismiss_none", (DIALOG,), False, palette=False),
    Command("confirm_yes", "y", "yes", "answer(True)", (CONFIRM,), palette=False),
    Command("confirm_no", "n", "no", "answer(False)", (CONFIRM,), palette=False),
    # The promotion wizard (helm/tui/screens/promote.py; keys from its author, helper D).
    Command("promote_confirm", "y", "yes, queue and promote", "confirm", (PROMOTE,)),
    Command("promote_back", "n", "back to the form", "back", (PROMOTE,)),
    Command("promote_close", "escape", "close the wizard", "close", (PROMOTE,)),
    # The host setup dialog (helm/tui/screens/host_setup.py).
    Command("setup_start", "y", "yes, run host setup", "start", (SETUP,)),
    Command("setup_cancel", "escape", "interrupt setup / close", "cancel", (SETUP,)),
)
"""Every command, in the order the help screen shows them."""

BY_ID: dict[str, Command] = {c.id: c for c in REGISTRY}


def commands_for(context: str) -> list[Command]:
    return [c for c in REGISTRY if context in c.contexts]


def bindings_for(context: str) -> list[Binding]:
    """The ``BINDINGS`` of the screen (or app) that owns ``context``."""
    return [c.binding() for c in commands_for(context)]


# Keymap ---------------------------------------------------------------------------------
class KeymapError(ValueError):
    """The ``[keys]`` table of config.toml is unreadable or names an unknown command."""


def load_keymap(config_path: Path) -> dict[str, str]:
    """The ``[keys]`` table: command id -> key(s); missing file means no overrides."""
    try:
        data = tomllib.loads(config_path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KeymapError(f"{config_path}: {exc}") from exc
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise KeymapError(f"{config_path}: [keys] must be a table of command id = key")
    unknown = sorted(k for k in keys if k not in BY_ID)
    if unknown:
        raise KeymapError(f"{config_path}: unknown command id(s) in [keys]: {', '.join(unknown)}")
    bad = sorted(k for k, v in keys.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise KeymapError(f"{config_path}: [keys] values must be key names: {', '.join(bad)}")
    return {k: v.strip() for k, v in keys.items()}


def key_of(command: Command, keymap: dict[str, str]) -> str:
    """The key the user actually presses for ``command`` (keymap first)."""
    return keymap.get(command.id, command.key)


def display_key(key: str) -> str:
    """A key as the help screen shows it (``question_mark`` -> ``?``)."""
    names = {
        "question_mark": "?",
        "slash": "/",
        "space": "space",
        "escape": "esc",
        "left_square_bracket": "[",
        "right_square_bracket": "]",
        "pagedown": "pgdn",
        "pageup": "pgup",
        "dollar_sign": "$",
    }
    return ",".join(names.get(k.strip(), k.strip()) for k in key.split(","))


# Palette ----------------------------------------------------------------------------------
def context_of(screen: Screen[object]) -> str:
    return getattr(screen, "CONTEXT", MAIN)


def palette_commands(screen: Screen[object]) -> Iterable[Command]:
    """Commands that make sense on ``screen``: its own context plus the app-wide ones."""
    ctx = context_of(screen)
    return [c for c in REGISTRY if c.palette and (ctx in c.contexts or APP in c.contexts)]


class HelmCommands(Provider):
    """The command palette over the registry, limited to what applies on the current screen."""

    def _run(self, command: Command) -> None:
        self.app.call_later(self.app.run_action, command.action, self.screen)

    def _label(self, command: Command) -> str:
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        return f"{command.description} ({display_key(key_of(command, keymap))})"

    async def discover(self) -> Hits:
        for command in palette_commands(self.screen):
            yield DiscoveryHit(self._label(command), partial(self._run, command), help=command.id)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in palette_commands(self.screen):
            label = self._label(command)
            score = max(matcher.match(label), matcher.match(command.id))
            if score > 0:
                yield Hit(
                    score, matcher.highlight(label), partial(self._run, command), help=command.id
                )
