"""Keyed DataTable updates: touch only the cells that changed, keep the cursor on its row.

Rebuilding a table every second makes the cursor jump and costs a full re-layout; instead
each row has a stable key (``agent:a1``, ``run:42``) and a refresh updates changed cells in
place. Only when the set or the order of rows changes is the body rebuilt, and then the
cursor returns to the row it was on. Callers wrap several tables in ``app.batch_update()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

Row = tuple[str, Sequence[Any]]  # (key, cells in column order)


def _sig(cell: Any) -> Any:
    """What makes a cell look different: Rich ``Text`` equality ignores its base style."""
    if isinstance(cell, Text):
        return (cell.plain, str(cell.style), tuple(cell.spans))
    return cell


class KeyedTable(DataTable[Any]):
    """A DataTable fed whole lists of keyed rows; it works out the minimal update itself."""

    def __init__(self, columns: Sequence[str], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_labels = list(columns)
        self._order: list[str] = []
        self._cells: dict[str, tuple[Any, ...]] = {}

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

    def sync(self, rows: Sequence[Row]) -> None:
        """Make the table show ``rows`` (in order) with the fewest changes."""
        self._ensure_columns()
        order = [k for k, _ in rows]
        if order == self._order:
            for key, cells in rows:
                old = self._cells.get(key, ())
                sigs = tuple(_sig(c) for c in cells)
                if sigs == old:
                    continue
                for i, (label, new) in enumerate(zip(self._column_labels, cells, strict=False)):
                    if i >= len(old) or sigs[i] != old[i]:
                        self.update_cell(key, label, new)
                self._cells[key] = sigs
            return
        selected = self.selected_key
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._order = order
        self._cells = {k: tuple(_sig(c) for c in cells) for k, cells in rows}
        if selected is not None:
            with contextlib.suppress(RowDoesNotExist):
                self.move_cursor(row=self.get_row_index(selected), animate=False, scroll=False)
