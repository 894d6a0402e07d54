"""Fitting a view into the terminal it gets: which table columns to show and how to word the header.

An on-call engineer may be on an 80-column laptop terminal or a phone: the columns they act on
(NAME, SIDE, RA WANT/APPLIED, STATE) must stay on screen, so the others go first, least important
first, and come back when there is room. Header lines abbreviate their parts before dropping any,
instead of being cut at the edge. Both are pure functions of what is shown and the width; a view
adds a column or a header indication by giving it a priority (0: never dropped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text

CELL_PADDING = 2  # DataTable pads every cell by one column on each side


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    priority: int = 0  # 0: always shown; the highest number is dropped first


def visible_columns(columns: Sequence[Column], widths: Mapping[str, int], available: int) -> tuple[str, ...]:
    """The keys of the columns to show, in their order: drop the least important until they fit."""
    def width(column: Column) -> int:
        return max(widths.get(column.key, 0), cell_len(column.label)) + CELL_PADDING

    shown = list(columns)
    total = sum(width(column) for column in shown)
    drop_order = sorted(reversed(columns), key=lambda column: -column.priority)  # ties: rightmost first
    for column in drop_order:
        if total <= available or column.priority == 0:
            break
        shown.remove(column)
        total -= width(column)
    return tuple(column.key for column in shown)


@dataclass(frozen=True, slots=True)
class Part:
    """One item of a header line (Rich markup), with a shorter wording and a priority."""

    full: str
    short: str | None = None
    priority: int = 0  # 0: never dropped (it may still be abbreviated)


SEPARATOR = " · "


def _length(markup: str) -> int:
    return Text.from_markup(markup).cell_len


def fit_line(parts: Sequence[Part], width: int) -> str:
    """Join the parts; while too wide, abbreviate (least important first), then drop parts."""
    words: list[str | None] = [part.full for part in parts]

    def total() -> int:
        shown = [word for word in words if word]
        return sum(_length(word) for word in shown) + len(SEPARATOR) * max(0, len(shown) - 1)

    order = sorted(range(len(parts)), key=lambda i: (-parts[i].priority, -i))
    for index in order:
        if total() <= width:
            break
        if parts[index].short is not None:
            words[index] = parts[index].short
    for index in order:
        if total() <= width:
            break
        if parts[index].priority:
            words[index] = None
    return SEPARATOR.join(word for word in words if word)
