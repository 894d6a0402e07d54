"""Widgets the screens share: a DataTable fast enough for 10,000 rows, the header, the banner.

``FleetTable`` exists because of a measurement: with 10,000 rows x 12 columns, DataTable's own
width pass (``_update_dimensions``) measures every new cell through Rich, 1.3-1.9 s before the
first paint; the cells here are one-line strings or ``Text``, whose width is their cell length,
which brings the first paint of 10,000 rows to ~0.4 s. It also sorts by a function of the row key
(the model's rows, not the cells' text), which DataTable's ``sort`` cannot do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Region, Size
from textual.widgets import DataTable, Static
from textual.widgets._data_table import RowKey, TwoWayDict

from neti_core.fleet import FleetSnapshot, ZkState
from screens.cells import age


class _UnitRowOffsets:
    """DataTable's line -> (row key, line in row) map when every row is one line high: computed on
    demand, instead of DataTable's list of all 10,000 rows rebuilt after every cell update."""

    def __init__(self, table: FleetTable) -> None:
        self._locations = table._row_locations
        self._count = len(table.rows)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, y: int) -> tuple[RowKey, int]:
        key = self._locations.get_key(y)
        if key is None:
            raise IndexError(y)
        return key, 0

    def clear(self) -> None:
        """DataTable.clear() clears the list; there is nothing to clear here."""


class FleetTable(DataTable[Any]):
    """A DataTable for one-line rows at fleet scale: a fast width pass, O(1) row offsets, and
    sorting by row key. Rows are always added without labels and one line high."""

    @property
    def _y_offsets(self) -> _UnitRowOffsets:  # type: ignore[override]
        return _UnitRowOffsets(self)

    def _get_row_region(self, row_index: int) -> Region:
        if not self.is_valid_row_index(row_index):
            return Region(0, 0, 0, 0)
        width = sum(column.get_render_width(self) for column in self.columns.values())
        y = row_index + (self.header_height if self.show_header else 0)
        return Region(0, y, max(self.size.width, width + self._row_label_column_width), 1)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        new_rows = list(new_rows)
        rows = self.rows
        if any(rows[k].label is not None or rows[k].height != 1 for k in new_rows if k in rows):
            super()._update_dimensions(new_rows)
            return
        columns = self.ordered_columns
        widths = [column.content_width for column in columns]
        keys = [column.key for column in columns]
        for row_key in new_rows:
            row = self._data.get(row_key)
            if row is None:
                continue
            for index, key in enumerate(keys):
                value = row.get(key)
                width = value.cell_len if isinstance(value, Text) else cell_len(str(value))
                widths[index] = max(widths[index], width)
        for column, width in zip(columns, widths, strict=True):
            column.content_width = width
        header_height = self.header_height if self.show_header else 0
        total = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(total + self._row_label_column_width, self._total_row_height + header_height)

    def sort_by_key(self, key: Callable[[str], Any], reverse: bool = False) -> None:
        """Order the rows by ``key(row_key)`` (keeps the cursor on the same row)."""
        current = self.cursor_row_key()
        ordered = sorted(self._data, key=lambda row_key: key(row_key.value), reverse=reverse)
        self._row_locations = TwoWayDict({row_key: index for index, row_key in enumerate(ordered)})
        self._update_count += 1
        self.refresh()
        if current is not None:
            self.move_cursor(row=self.get_row_index(current), animate=False)

    def cursor_row_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # the cursor is past the end while rows are being replaced
            return None

    def row_keys_in_order(self) -> list[str]:
        locations = self._row_locations
        return [locations.get_key(index).value for index in range(len(locations))]  # type: ignore[union-attr]


class HeaderBar(Static):
    """k9s-like header: where we are, who we are, and the counts that matter during a migration."""

    _shown = ""

    def show(self, snapshot: FleetSnapshot, *, operator: str, readonly: bool, extra: str = "") -> None:
        s = snapshot.summary
        mode = "[b red]READ-ONLY[/]" if readonly else "[b green]read-write[/]"
        phase = snapshot.phase.phase if snapshot.phase else "prepare"
        registered = f"[b]{s.registered:,}[/]/{s.total:,} registered"
        neti = f"[b]{s.percent_in_neti:g}%[/] in Neti" if s.inventory_known else "[dim]EC2 unknown[/]"
        errors = f"[b red]{s.errors} errors[/]" if s.errors else "0 errors"
        lag = f"[yellow]{s.lagging} lagging[/]" if s.lagging else "0 lagging"
        maxchange = "-" if snapshot.maxchange is None else str(snapshot.maxchange)
        who = f"operator [b]{operator}[/] {mode}"
        text = (f"[b]neti[/] · phase [b]{phase}[/] · {who} · maxchange {maxchange}\n"
                f"{registered} · {neti} · reject_all on [b]{s.reject_on:,}[/] · {errors} · {lag}"
                f" · guard {s.guard} · no agent {s.no_agent}{extra}")
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # two lines, always: no layout pass for the whole screen


class ConnectionBanner(Static):
    """Shown only when ZooKeeper or the EC2 API is unreachable: the data on screen may be stale."""

    _shown: str | None = None

    def show(self, snapshot: FleetSnapshot, now: float) -> None:
        problems = []
        zk = snapshot.zk
        if zk.state is not ZkState.CONNECTED:
            since = f" for {age(now - zk.since)}" if zk.since else ""
            what = "connecting to" if zk.state is ZkState.CONNECTING else f"{zk.state.value}:"
            problems.append(f"ZooKeeper {what} {zk.hosts}{since} — reconnecting; data may be stale")
        ec2 = snapshot.ec2
        if ec2.configured and ec2.error:
            last = f"last good inventory {age(now - ec2.last_ok)} ago" if ec2.last_ok else "no inventory yet"
            problems.append(f"EC2 API: {ec2.error} — {last}; retrying")
        text = "\n".join(problems)
        if text != self._shown:
            self._shown = text
            self.update(text)
            self.display = bool(problems)
