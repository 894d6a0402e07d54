"""The fleet: every member and every unregistered instance, live, filtered, sorted, selectable.

A batch from the live view updates only the rows it names, cell by cell (``update_cell``); the
table is rebuilt only when the filter changes. Rows are ordered by the model's values (an IP
sorts as a number, a state by severity), not by the text in the cells.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Input

from neti_core.fleet import FleetBatch, FleetSnapshot, HostRow, RuleState
from neti_core.fleet.query import SORTS, compile_filter
from screens.actions import WriteActions, host_label
from screens.cells import (
    AGE_COLUMN,
    COLUMN_KEYS,
    FLEET_COLUMNS,
    Cell,
    age_cell,
    column_widths,
    fleet_cells,
    to_text,
)
from screens.context import context
from screens.cursor import neighbour
from screens.fit import Part, visible_columns
from screens.fleet_table import FleetTable
from screens.host import HostScreen
from screens.widgets import ConnectionBanner, FitFooter, HeaderBar

# The table's vertical scrollbar and a column of slack, so the last column is never half-cut.
SCROLLBAR_WIDTH = 3
AGE_REFRESH_SECONDS = 5.0
FILTER_DEBOUNCE_SECONDS = 0.15
# A repaint of a 10,000-row DataTable after any update_cell costs ~50-100 ms (every visible cell is
# re-rendered), so during a storm (10,000 agents republishing) batches are merged and applied at
# most five times a second; after a quiet spell a change is applied at once.
MIN_APPLY_SECONDS = 0.2
# DataTable.remove_row renumbers every row (O(rows)); past this many removals, rebuilding is cheaper.
MAX_REMOVALS_IN_PLACE = 200


class FleetScreen(WriteActions):
    BINDINGS = [
        Binding("enter", "open", "Host detail", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("space", "toggle_select", "Select", show=False),
        Binding("asterisk", "select_shown", "Select all shown (again: none)", show=False),
        Binding("escape", "clear", "Clear filter / selection", show=False),
        Binding("N", "sort('name')", "Sort", key_display="N…"),
        Binding("I", "sort('instance')", "Sort by instance id", show=False),
        Binding("S", "sort('state')", "Sort by state, worst first", show=False),
        Binding("A", "sort('age')", "Sort by last apply, oldest first", show=False),
        Binding("V", "sort('version')", "Sort by version", show=False),
        Binding("O", "sort('overlay')", "Sort by overlay IP", show=False),
        Binding("D", "sort('side')", "Sort by side", show=False),
        Binding("o", "reject_on", "reject_all on"),
        Binding("f", "reject_off", "reject_all off"),
        Binding("c", "reject_clear", "clear override", show=False),
        Binding("F", "fleet_default", "Fleet-wide reject_all default", show=False),
        Binding("M", "maxchange", "Set maxchange", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._rows_seen: Mapping[str, HostRow] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._filter_text = ""
        self._predicate = compile_filter("")
        self.sort_column, self.sort_reverse = "name", False
        self.selected: set[str] = set()
        self._last_seq = 0
        self._populated = False
        self._filter_timer: Timer | None = None
        self._apply_timer: Timer | None = None
        self._last_apply = 0.0
        self._last_received = 0
        self._pending: FleetSnapshot | None = None
        self._pending_keys: set[str] = set()
        self._pending_full = False
        self.painted: tuple[int, float] = (0, 0.0)  # (batch seq, perf_counter) of the last paint
        self._shown = tuple(range(len(FLEET_COLUMNS)))  # indices of the columns on screen

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield FleetTable(id="fleet", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="filter: words, field:value (side state version ip want applied), !negate",
                    id="filter")
        yield FitFooter()

    @property
    def table(self) -> FleetTable:
        return self.query_one("#fleet", FleetTable)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        ctx = context(self)
        ctx.fleet_signal.subscribe(self, self._on_fleet)
        self.set_interval(AGE_REFRESH_SECONDS, self._refresh_ages)
        self._show(ctx.fleet, None)

    # --- live updates --------------------------------------------------------------------------

    def _on_fleet(self, batch: FleetBatch) -> None:
        if batch.seq == self._last_received + 1 and self._populated:
            self._pending_keys |= batch.changed_keys | batch.removed_keys
        else:
            self._pending_full = True  # missed a batch: diff the whole snapshot instead
        self._last_received = batch.seq
        self._pending = batch.snapshot
        wait = self._last_apply + MIN_APPLY_SECONDS - time.monotonic()
        if wait <= 0:
            self._apply_pending()
        elif self._apply_timer is None:
            self._apply_timer = self.set_timer(wait, self._apply_pending)

    def _apply_pending(self) -> None:
        self._apply_timer = None
        snapshot, self._pending = self._pending, None
        if snapshot is None:
            return
        keys = None if self._pending_full else frozenset(self._pending_keys)
        self._pending_keys, self._pending_full = set(), False
        self._last_apply = time.monotonic()
        self._show(snapshot, keys)

    def _show(self, snapshot: FleetSnapshot, keys: frozenset[str] | None) -> None:
        self._last_seq = snapshot.seq
        if not self._populated:
            if snapshot.zk.loaded or snapshot.rows:
                self._rebuild(snapshot.rows)
        else:
            self._apply(snapshot.rows, keys)
        # A selected host that is gone (terminated) is no longer a target: the count says so.
        kept = {key for key in self.selected
                if key in snapshot.rows and snapshot.rows[key].state is not RuleState.LEAVING}
        if kept != self.selected:
            self._set_selected(kept)
        self._update_chrome(snapshot)
        self.call_after_refresh(self._mark_painted, snapshot.seq)

    @property
    def settled(self) -> bool:
        """True when the table shows the app's latest snapshot and it has been painted."""
        seq = context(self).fleet.seq
        return self._pending is None and self._last_seq == seq and self.painted[0] == seq

    def _mark_painted(self, seq: int) -> None:
        self.painted = (seq, time.perf_counter())

    def _visible(self, row: HostRow | None) -> bool:
        return row is not None and (self._predicate is None or self._predicate(row))

    def _apply(self, rows: Mapping[str, HostRow], keys: frozenset[str] | None) -> None:
        previous = self._rows_seen
        if keys is None:
            keys = frozenset({k for k, v in rows.items() if previous.get(k) is not v}
                             | (previous.keys() - rows.keys()))
        leaving = {key for key in keys if key in self._cells and not self._visible(rows.get(key))}
        self._keep_cursor_off(leaving, previous, rows)
        if len(leaving) > MAX_REMOVALS_IN_PLACE:
            self._rebuild(rows)
            return
        table, now = self.table, context(self).now()
        sort_key = SORTS[self.sort_column][1]
        resort = False
        for key in keys:
            row = rows.get(key)
            old_cells = self._cells.get(key)
            if not self._visible(row):
                if old_cells is not None:
                    table.remove_row(key)
                    del self._cells[key]
                continue
            assert row is not None
            cells = fleet_cells(row, now, key in self.selected)
            if old_cells is None:
                table.add_row(*(to_text(cells[column]) for column in self._shown), key=key)
                resort = True
            else:
                for column in self._shown:
                    if old_cells[column] != cells[column]:
                        table.update_cell(key, COLUMN_KEYS[column], to_text(cells[column]))
                before = previous.get(key)
                resort = resort or before is None or sort_key(before) != sort_key(row)
            self._cells[key] = cells
        self._rows_seen = rows
        if resort:
            self._sort_table()
        table.place_cursor()

    def _keep_cursor_off(self, leaving: set[str], before: Mapping[str, HostRow],
                         after: Mapping[str, HostRow]) -> None:
        """The operator's host is about to leave the view: move the choice to its neighbour, and say so."""
        table = self.table
        lost = table.chosen_key
        if lost is None or lost not in leaving:
            return
        table.chosen_key = neighbour(table.row_keys_in_order(), lost, leaving)
        was = host_label(before[lost]) if lost in before else lost
        now = table.chosen_key
        where = "the first row" if now is None else host_label(after[now]) if now in after else now
        self.notify(f"{was} left the view; the cursor moved to {where}", title="cursor moved")

    def _rebuild(self, rows: Mapping[str, HostRow]) -> None:
        """Fill the table from scratch (first data, or a new filter)."""
        table = self.table
        now = context(self).now()
        shown = [row for row in rows.values() if self._visible(row)]
        shown.sort(key=SORTS[self.sort_column][1], reverse=self.sort_reverse)
        self._cells = {row.key: fleet_cells(row, now, row.key in self.selected) for row in shown}
        self._shown = self._columns_that_fit()
        keys = [COLUMN_KEYS[column] for column in self._shown]
        if [column.value for column in table.columns] != keys:
            table.clear(columns=True)
            for column in self._shown:
                table.add_column(FLEET_COLUMNS[column].label, key=COLUMN_KEYS[column])
        else:
            table.clear()
        for key, cells in self._cells.items():
            table.add_row(*(to_text(cells[column]) for column in self._shown), key=key)
        self._rows_seen = rows
        self._populated = True
        if table.chosen_key not in self._cells:
            table.chosen_key = None  # filtered out by the operator's own filter: back to the top
        table.place_cursor()

    def _sort_table(self) -> None:
        sort_key, rows = SORTS[self.sort_column][1], self._rows_seen
        self.table.sort_by_key(lambda key: sort_key(rows[key]), reverse=self.sort_reverse)

    def _columns_that_fit(self) -> tuple[int, ...]:
        widths = column_widths(self._cells.values())
        available = (self.size.width or self.app.size.width) - SCROLLBAR_WIDTH
        keys = visible_columns(FLEET_COLUMNS, widths, available)
        return tuple(COLUMN_KEYS.index(key) for key in keys)

    def on_resize(self) -> None:
        self._refit()

    def _refit(self) -> None:
        """Show the columns that fit now (after a resize, or when the values have grown or shrunk)."""
        if self._populated and self._columns_that_fit() != self._shown:
            self._rebuild(self._rows_seen)

    def _refresh_ages(self) -> None:
        self._refit()
        if AGE_COLUMN not in self._shown:
            return
        now, table, rows = context(self).now(), self.table, self._rows_seen
        for key, cells in self._cells.items():
            row = rows.get(key)
            if row is None or row.applied_at is None:
                continue
            cell = age_cell(row, now)
            if cell != cells[AGE_COLUMN]:
                table.update_cell(key, COLUMN_KEYS[AGE_COLUMN], to_text(cell))
                self._cells[key] = (*cells[:AGE_COLUMN], cell)

    def _update_chrome(self, snapshot: FleetSnapshot | None = None) -> None:
        ctx = context(self)
        snapshot = snapshot or ctx.fleet
        extra = [Part(f"shown {len(self._cells):,}", f"{len(self._cells):,} shown", 1)]
        if self._filter_text:
            extra.append(Part(f"filter [b]{escape(self._filter_text)}[/]", "[b]filtered[/]"))
        if self.selected:
            count = f"{len(self.selected):,}"
            extra.append(Part(f"[b yellow]{count} selected[/]", f"[b yellow]{count} sel[/]"))
        arrow = "↓" if not self.sort_reverse else "↑"
        extra.append(Part(f"sort {SORTS[self.sort_column][0]} {arrow}", f"{self.sort_column} {arrow}", 1))
        self.query_one(HeaderBar).show(snapshot, operator=ctx.operator, readonly=ctx.readonly, extra=extra)
        self.query_one(ConnectionBanner).show(snapshot, ctx.now())

    # --- navigation, filter, sort, selection ------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(HostScreen(event.row_key.value))

    def action_open(self) -> None:
        key = self.table.cursor_row_key()
        if key is not None:
            self.app.push_screen(HostScreen(key))

    def action_filter(self) -> None:
        """A new filter starts empty (the one in force stays until the new text replaces it)."""
        field = self.query_one("#filter", Input)
        with field.prevent(Input.Changed):
            field.value = ""
        field.display = True
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DEBOUNCE_SECONDS, lambda: self.set_filter(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.set_filter(event.value)
            if not event.value:
                event.input.display = False
            self.table.focus()

    def set_filter(self, text: str) -> None:
        text = text.strip()
        if text == self._filter_text:
            return
        self._filter_text, self._predicate = text, compile_filter(text)
        self._rebuild(context(self).fleet.rows)
        self._update_chrome()

    def action_clear(self) -> None:
        field = self.query_one("#filter", Input)
        if field.has_focus or (self._filter_text and not self.selected):
            field.value = ""
            field.display = False
            self.set_filter("")
            self.table.focus()
        elif self.selected:
            self._set_selected(set())

    def action_sort(self, column: str) -> None:
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._sort_table()
        self._update_chrome()

    def action_toggle_select(self) -> None:
        key = self.table.cursor_row_key()
        if key is None:
            return
        self._set_selected(self.selected ^ {key})
        self.table.action_cursor_down()

    def action_select_shown(self) -> None:
        shown = set(self._cells)
        self._set_selected(set() if shown <= self.selected else self.selected | shown)

    def _set_selected(self, selected: set[str]) -> None:
        changed = self.selected ^ selected
        self.selected = selected
        for key in changed & self._cells.keys():
            mark = ("●" if key in selected else " ", "bold yellow")
            self.table.update_cell(key, "mark", to_text(mark))
            self._cells[key] = (mark, *self._cells[key][1:])
        self._update_chrome()

    def target_rows(self) -> list[HostRow]:
        rows = context(self).fleet.rows
        if self.selected:
            return [rows[k] for k in self.table.row_keys_in_order() if k in self.selected and k in rows]
        key = self.table.cursor_row_key()
        return [rows[key]] if key is not None and key in rows else []
