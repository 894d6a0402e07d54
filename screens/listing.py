"""The frame the list views share: header, connection banner, a summary line and a table, redrawn
from each fleet batch. A view says what its columns are (with priorities, ``screens.fit``) and how
to fill the summary and rows; the frame shows the columns that fit the terminal."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from neti_core.fleet import FleetSnapshot
from screens.context import context
from screens.cursor import OperatorCursor
from screens.fit import Column, visible_columns
from screens.widgets import ConnectionBanner, FitFooter, HeaderBar


class ListingScreen(Screen[Any]):
    TABLE_ID: ClassVar[str]
    SUMMARY_ID: ClassVar[str]
    COLUMNS: ClassVar[tuple[Column, ...]]
    _rows: list[tuple[str, tuple[str, ...]]] = []
    _columns: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield Static(id=self.SUMMARY_ID)
        yield OperatorCursor(id=self.TABLE_ID, cursor_type="row", zebra_stripes=True)
        yield FitFooter()

    def on_mount(self) -> None:
        ctx = context(self)
        ctx.fleet_signal.subscribe(self, lambda batch: self._show(batch.snapshot))
        self._show(ctx.fleet)

    @property
    def table(self) -> OperatorCursor:
        return self.query_one(f"#{self.TABLE_ID}", OperatorCursor)

    @property
    def summary(self) -> Static:
        return self.query_one(f"#{self.SUMMARY_ID}", Static)

    def _show(self, snapshot: FleetSnapshot) -> None:
        ctx = context(self)
        now = ctx.now()
        self.query_one(HeaderBar).show(snapshot, operator=ctx.operator, readonly=ctx.readonly)
        self.query_one(ConnectionBanner).show(snapshot, now)
        self.show_rows(snapshot, now)
        table = self.table
        if table.chosen_key is not None and table.chosen_key not in table.rows:
            table.chosen_key = None  # its row is gone (e.g. the instance registered): back to the top
        table.place_cursor()

    def show_rows(self, snapshot: FleetSnapshot, now: float) -> None:
        """Fill the summary line and the table (``fill``, only when what they show has changed)."""
        raise NotImplementedError

    def fill(self, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        """Show ``rows`` (key, one text per column of COLUMNS) in the columns that fit."""
        self._rows = rows
        table = self.table
        widths = {column.key: max((cell_len(cells[i]) for _, cells in rows), default=0)
                  for i, column in enumerate(self.COLUMNS)}
        shown = visible_columns(self.COLUMNS, widths, (self.size.width or self.app.size.width) - 3)
        if shown != self._columns:
            self._columns = shown
            table.clear(columns=True)
            for column in self.COLUMNS:
                if column.key in shown:
                    table.add_column(column.label, key=column.key)
        else:
            table.clear()
        indices = [i for i, column in enumerate(self.COLUMNS) if column.key in shown]
        for key, cells in rows:
            table.add_row(*(Text(cells[i], no_wrap=True) for i in indices), key=key)

    def on_resize(self) -> None:
        if self._rows or not self._columns:
            self.fill(self._rows)
            self.table.place_cursor()
