"""A DataTable for one-line rows at fleet scale (10,000 rows), measured into shape.

* Widths: DataTable measures every new cell through Rich (1.3-1.9 s before the first paint of
  10,000 rows x 12 columns). Cells here are one-line strings or ``Text``, whose width is their
  cell length: first paint ~0.4 s. Widths are kept as per-column counts of cell widths, so a
  column follows its current content (it narrows when a wide value goes) and the layout depends
  only on what is shown, never on the order updates came in (snapshot tests rely on that).
* Row offsets: DataTable rebuilds a list of every row's lines after each cell update, an O(rows)
  cost on every repaint; with one-line rows the offset of row i is i.
* Sorting by a function of the row key (the model's values: an IP as a number, a state by
  severity), which DataTable's ``sort`` (by cell values) cannot do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Region, Size
from textual.widgets._data_table import TwoWayDict  # private: see the textual pin in pyproject.toml
from textual.widgets.data_table import ColumnKey, RowKey

from screens.cursor import OperatorCursor


def _width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else cell_len(str(value))


class _UnitRowOffsets:
    """Line -> (row key, line within the row) when every row is one line: computed on demand."""

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
        """DataTable.clear() clears its list; there is nothing to clear here."""


class FleetTable(OperatorCursor):
    """Rows are always added one line high and without labels; the cursor follows the operator's host
    (``screens.cursor``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._widths: dict[ColumnKey, Counter[int]] = {}
        self._label_widths: dict[ColumnKey, int] = {}

    # --- widths ----------------------------------------------------------------------------------

    def add_column(self, label: Any, *, width: int | None = None, key: str | None = None,
                   default: Any = None) -> ColumnKey:
        column_key = super().add_column(label, width=width, key=key, default=default)
        self._widths[column_key] = Counter()
        self._label_widths[column_key] = self.columns[column_key].content_width
        return column_key

    def add_row(self, *cells: Any, height: int | None = 1, key: str | None = None,
                label: Any = None) -> RowKey:
        row_key = super().add_row(*cells, height=height, key=key, label=label)
        for column_key, value in self._data[row_key].items():
            self._widths[column_key][_width(value)] += 1
        return row_key

    def update_cell(self, row_key: RowKey | str, column_key: ColumnKey | str, value: Any, *,
                    update_width: bool = False) -> None:
        row = self._data.get(RowKey(row_key) if isinstance(row_key, str) else row_key)
        column = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        old = None if row is None else row.get(column)
        super().update_cell(row_key, column_key, value)
        before, after = _width(old), _width(value)
        if before != after:
            counts = self._widths[column]
            counts[before] -= 1
            counts[after] += 1
            if not counts[before]:
                del counts[before]
            self._require_update_dimensions = True
            self.check_idle()

    def remove_row(self, row_key: RowKey | str) -> None:
        row = self._data.get(RowKey(row_key) if isinstance(row_key, str) else row_key, {})
        for column_key, value in row.items():
            counts = self._widths[column_key]
            counts[_width(value)] -= 1
            if not counts[_width(value)]:
                del counts[_width(value)]
        super().remove_row(row_key)

    def clear(self, columns: bool = False) -> FleetTable:
        super().clear(columns)
        if columns:
            self._widths.clear()
            self._label_widths.clear()
        else:
            self._widths = {key: Counter() for key in self._widths}
        return self

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        for column_key, column in self.columns.items():
            widths = self._widths.get(column_key)
            column.content_width = max(self._label_widths.get(column_key, 0), *(widths or [0]))
        header_height = self.header_height if self.show_header else 0
        total = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(total + self._row_label_column_width, self._total_row_height + header_height)

    # --- one-line rows -----------------------------------------------------------------------------

    @property
    def _y_offsets(self) -> _UnitRowOffsets:  # type: ignore[override]
        return _UnitRowOffsets(self)

    def _get_row_region(self, row_index: int) -> Region:
        if not self.is_valid_row_index(row_index):
            return Region(0, 0, 0, 0)
        width = sum(column.get_render_width(self) for column in self.columns.values())
        y = row_index + (self.header_height if self.show_header else 0)
        return Region(0, y, max(self.size.width, width + self._row_label_column_width), 1)

    # --- order -------------------------------------------------------------------------------------

    def sort_by_key(self, key: Callable[[str], Any], reverse: bool = False) -> None:
        """Order the rows by ``key(row_key)`` (the cursor stays on the operator's host)."""
        ordered = sorted(self._data, key=lambda row_key: key(row_key.value), reverse=reverse)
        self._row_locations = TwoWayDict({row_key: index for index, row_key in enumerate(ordered)})
        self._update_count += 1
        self.refresh()
        self.place_cursor()

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
