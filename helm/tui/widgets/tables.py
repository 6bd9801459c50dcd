"""Keyed DataTable updates: touch only the cells that changed, follow the newest rows.

Rebuilding a table every second makes the cursor jump and costs a full re-layout; instead
each row has a stable key (``agent:a1``, ``run:42``) and a refresh updates changed cells in
place. Only when the set or the order of rows changes is the body rebuilt. Callers wrap
several tables in ``app.batch_update()``.

Where a rebuild leaves the view is what makes a live table trustworthy (issue 16: the feed
kept its cursor on the post it started on, and the view followed that post down, so new
posts piled up above the screen while the ages kept ticking). The rule is k9s' and
toolong's: a table whose cursor is on the first row and which is scrolled to the top
*follows*, and stays on the first (newest, best) row; once the user has moved the cursor or
scrolled, the rows they look at stay where they are on screen.

Column widths are computed from the rows shown, on every change: DataTable's auto width only
grows when rows are added and never when a cell is updated in place, so ``waiting`` then
``training`` showed as ``trainin`` and one long cell once seen kept its column wide forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

Row = tuple[str, Sequence[Any]]  # (key, cells in column order)


def _sig(cell: Any) -> Any:
    """What makes a cell look different: Rich ``Text`` equality ignores its base style."""
    if isinstance(cell, Text):
        return (cell.plain, str(cell.style), tuple(cell.spans))
    return cell


def _width(cell: Any) -> int:
    """The cells a value takes on screen, as DataTable renders it (strings are markup)."""
    if isinstance(cell, Text):
        plain = cell.plain
    elif isinstance(cell, str):
        plain = Text.from_markup(cell).plain if "[" in cell else cell
    elif isinstance(cell, float):
        plain = f"{cell:.2f}"
    else:
        plain = str(cell)
    if "\n" in plain:
        return max(cell_len(line) for line in plain.split("\n"))
    return cell_len(plain)


@dataclass(frozen=True)
class _View:
    """Where the user was looking before a rebuild."""

    follow: bool  # cursor on the first row, scrolled to the top
    key: str | None  # the row under the cursor
    row: int  # its index
    offset: int  # its line in the view (row - first row shown)
    top: str | None  # the first row shown
    y: int  # the scroll offset


class KeyedTable(DataTable[Any]):
    """A DataTable fed whole lists of keyed rows; it works out the minimal update itself."""

    def __init__(self, columns: Sequence[str], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_labels = list(columns)
        self._label_widths = tuple(cell_len(label) for label in self._column_labels)
        self._order: list[str] = []
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._widths: dict[str, tuple[int, ...]] = {}  # per row, each cell's width

    def _ensure_columns(self) -> None:
        # The first snapshot can land before this table's own mount event has run.
        if not self.columns:
            for label in self._column_labels:
                self.add_column(label, key=label)

    def on_mount(self) -> None:
        self._ensure_columns()

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    @property
    def following(self) -> bool:
        """True while the table stays on its first row as rows come and go."""
        return self.cursor_row <= 0 and round(self.scroll_y) == 0

    def sync(self, rows: Sequence[Row]) -> None:
        """Make the table show ``rows`` (in order) with the fewest changes."""
        self._ensure_columns()
        n = len(self._column_labels)
        order = [k for k, _ in rows]
        if order == self._order:
            changed = False
            for key, cells in rows:
                old = self._cells.get(key, ())
                sigs = tuple(_sig(c) for c in cells)
                if sigs == old:
                    continue
                widths = list(self._widths.get(key, ()))
                widths += [0] * (n - len(widths))
                for i, (label, new) in enumerate(zip(self._column_labels, cells, strict=False)):
                    if i >= len(old) or sigs[i] != old[i]:
                        self.update_cell(key, label, new)
                        widths[i] = _width(new)
                self._cells[key] = sigs
                self._widths[key] = tuple(widths)
                changed = True
            if changed:
                self._fit_columns()
            return
        view = self._view()
        self.clear()
        cells_of: dict[str, tuple[Any, ...]] = {}
        widths_of: dict[str, tuple[int, ...]] = {}
        for key, cells in rows:
            self.add_row(*cells, key=key)
            sigs = tuple(_sig(c) for c in cells)
            cells_of[key] = sigs
            if sigs == self._cells.get(key):
                widths_of[key] = self._widths[key]
            else:
                widths = tuple(_width(c) for c in cells[:n])
                widths_of[key] = widths + (0,) * (n - len(widths))
        self._order, self._cells, self._widths = order, cells_of, widths_of
        self._fit_columns()
        self._restore(view)

    # Widths -----------------------------------------------------------------------------
    def _fit_columns(self) -> None:
        """Each column as wide as its label or its widest cell shown, no wider."""
        widths = [max(col) for col in zip(self._label_widths, *self._widths.values(), strict=True)]
        changed = False
        for column, width in zip(self.ordered_columns, widths, strict=False):
            if column.content_width != width:
                column.content_width = width
                changed = True
        if changed:
            # The virtual width follows on idle, as after ``update_cell(update_width=True)``.
            self._require_update_dimensions = True
            self.refresh()
            self.check_idle()

    # The view across a rebuild ----------------------------------------------------------
    def _body_height(self) -> int:
        header = self.header_height if self.show_header else 0
        return max(1, self.size.height - header - self.scrollbar_size_horizontal)

    def _view(self) -> _View:
        y, row = round(self.scroll_y), max(self.cursor_row, 0)
        return _View(
            follow=self.following,
            key=self.selected_key,
            row=row,
            offset=row - y,
            top=self._order[y] if y < len(self._order) else None,
            y=y,
        )

    def _restore(self, view: _View) -> None:
        """Back to what the user looked at: the first row if following, else their rows."""
        if view.follow or not self._order:
            return  # clear() left the cursor on the first row and the view at the top
        index = {k: i for i, k in enumerate(self._order)}
        body = self._body_height()
        last = len(self._order) - 1
        row = index.get(view.key, min(view.row, last)) if view.key else min(view.row, last)
        if 0 <= view.offset < body:  # the cursor was in view: keep it on the same line
            y = row - view.offset
        else:  # scrolled away from the cursor: keep the first row shown
            y = index.get(view.top, view.y) if view.top else view.y
        y = max(0, min(y, len(self._order) - body))
        # The new height is measured on idle; set it now so the scroll is not cut short.
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(self.virtual_size.width, len(self._order) + header)
        self.move_cursor(row=row, animate=False, scroll=False)
        self.scroll_to(y=y, animate=False, force=True, immediate=True)
        # clear() and the cursor move scroll the cursor into view after the next refresh;
        # put the view back where the user had it once they have.
        self.call_after_refresh(self._hold, y)

    def _hold(self, y: int) -> None:
        self.scroll_to(y=y, animate=False, force=True, immediate=True)
