"""The cursor is the operator's: it stays on the host they put it on, not on a row index.

A live table re-sorts, gains and loses rows many times a second; a cursor that stays on an index
drifts to whatever host slides under it, and an operator who presses ``o`` flips a host they never
chose. So a table remembers the host the operator chose (None: the top row, until they move),
puts the cursor back on it after every change, and when that host leaves the view moves to its
nearest neighbour and says so. The choice of neighbour is a pure function, tested without a UI.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from textual import events
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist


def neighbour(order: Sequence[str], lost: str, leaving: Collection[str] = ()) -> str | None:
    """The row that takes ``lost``'s place: the next one below that stays, else the nearest above."""
    try:
        index = order.index(lost)
    except ValueError:
        return None
    for key in order[index + 1:]:
        if key not in leaving and key != lost:
            return key
    for key in reversed(order[:index]):
        if key not in leaving:
            return key
    return None


def cursor_index(order_index: int | None, row_count: int) -> int:
    """Where the cursor goes: the chosen host's row, else the first row."""
    if row_count == 0:
        return 0
    return 0 if order_index is None else min(order_index, row_count - 1)


class OperatorCursor(DataTable[Any]):
    """A DataTable whose cursor records the host the operator moved to (``chosen_key``).

    Only the operator's own moves (keys, clicks) change ``chosen_key``; moves the program makes to
    keep the cursor in place do not. ``Home``/``End`` and ``g``/``G`` (as in k9s and less) go to the
    first and last row.
    """

    BINDINGS = [
        Binding("home,g", "cursor_first", "First row", show=False),
        Binding("end,G", "cursor_last", "Last row", show=False),
    ]

    chosen_key: str | None = None

    def _remember(self) -> None:
        if self.row_count:
            self.chosen_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def action_cursor_up(self) -> None:
        super().action_cursor_up()
        self._remember()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self._remember()

    def action_page_up(self) -> None:
        super().action_page_up()
        self._remember()

    def action_page_down(self) -> None:
        super().action_page_down()
        self._remember()

    def action_cursor_first(self) -> None:
        self.move_cursor(row=0, animate=False)
        self._remember()

    def action_cursor_last(self) -> None:
        self.move_cursor(row=max(0, self.row_count - 1), animate=False)
        self._remember()

    def on_click(self, event: events.Click) -> None:
        self.call_later(self._remember)  # after DataTable's own click handler moved the cursor

    def place_cursor(self) -> None:
        """Put the cursor back on the chosen host (or the first row) after rows changed."""
        key = self.chosen_key
        index = None
        if key is not None:
            try:
                index = self.get_row_index(key)
            except RowDoesNotExist:  # gone: the caller moved the choice to a neighbour already
                index = None
        row = cursor_index(index, self.row_count)
        if self.row_count and self.cursor_row != row:
            self.move_cursor(row=row, animate=False)
