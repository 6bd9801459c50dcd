"""k9s / lazygit movement on whatever has the focus: one implementation for every screen.

The registry binds ``j``/``k``, ``g``/``G``, Home/End and PageUp/PageDown once, on the app
(``app.move('down')`` ...), so the same keys move a pane's cursor, the help table, a
dialog's list, the run detail's log and the diff. Each widget kind has its own verbs
(a table moves its cursor, a log scrolls), mapped here; a widget that takes text (an
``Input``) is never a target, so the app declines the key and the text box gets it.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.widgets import DataTable, Input, OptionList, TextArea

WHERE = ("down", "up", "top", "bottom", "page_down", "page_up")


def target(widget: Widget | None) -> Widget | None:
    """The widget the movement keys act on, or None (nothing focused, or it takes text)."""
    if widget is None or isinstance(widget, Input | TextArea):
        return None
    if isinstance(widget, DataTable | OptionList | ScrollView) or widget.allow_vertical_scroll:
        return widget
    return None


def _verbs(w: Widget) -> dict[str, Callable[[], object]]:
    if isinstance(w, DataTable):
        # scroll_top/bottom move a row cursor to the first/last row (DataTable's own
        # Home/End only scroll sideways: the "End scrolls the feed sideways").
        return {
            "down": w.action_cursor_down,
            "up": w.action_cursor_up,
            "top": w.action_scroll_top,
            "bottom": w.action_scroll_bottom,
            "page_down": w.action_page_down,
            "page_up": w.action_page_up,
        }
    if isinstance(w, OptionList):
        return {
            "down": w.action_cursor_down,
            "up": w.action_cursor_up,
            "top": w.action_first,
            "bottom": w.action_last,
            "page_down": w.action_page_down,
            "page_up": w.action_page_up,
        }
    # A log, the diff, any scrolling container: no cursor, the view moves (no animation:
    # a key held down must not queue up animations).
    return {
        "down": lambda: w.scroll_down(animate=False),
        "up": lambda: w.scroll_up(animate=False),
        "top": lambda: w.scroll_home(animate=False, x_axis=False),
        "bottom": lambda: w.scroll_end(animate=False, x_axis=False),
        "page_down": lambda: w.scroll_page_down(animate=False),
        "page_up": lambda: w.scroll_page_up(animate=False),
    }


def move(widget: Widget, where: str) -> bool:
    """Move ``widget`` (see ``WHERE``); False when it is not a movement target."""
    w = target(widget)
    if w is None:
        return False
    verb = _verbs(w).get(where)
    if verb is None:
        raise ValueError(f"unknown movement {where!r} (one of {', '.join(WHERE)})")
    verb()
    return True
