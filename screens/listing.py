"""The frame the list views share: header, connection banner, a summary line and a table, redrawn
from each fleet batch. A view says what its columns are and how to fill the summary and rows."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from neti_core.fleet import FleetSnapshot
from screens.context import context
from screens.cursor import OperatorCursor
from screens.widgets import ConnectionBanner, FitFooter, HeaderBar


class ListingScreen(Screen[Any]):
    TABLE_ID: ClassVar[str]
    SUMMARY_ID: ClassVar[str]
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]]

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield Static(id=self.SUMMARY_ID)
        table = OperatorCursor(id=self.TABLE_ID, cursor_type="row", zebra_stripes=True)
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        yield table
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
        """Fill the summary line and the table (only when what they show has changed)."""
        raise NotImplementedError
