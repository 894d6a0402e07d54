"""How values look in the console: ages, times, on/off, state colours, and the fleet table's cells.

Cells are (text, style) pairs, cheap to compare: a row is written to the table only where a pair
differs. Ages take ``now`` from the app's clock, so snapshot tests can fix it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.cells import cell_len
from rich.markup import escape
from rich.text import Text

from neti_core.fleet import HostRow, RuleState
from neti_core.fleet.query import on_off
from screens.fit import Column

Cell = tuple[str, str]

STATE_STYLE: dict[RuleState, str] = {
    RuleState.ERROR: "bold red",
    RuleState.GUARD: "bold magenta",
    RuleState.DEADMAN: "bold yellow",
    RuleState.OUT_OF_CONTACT: "bold yellow",
    RuleState.NO_AGENT: "red",
    RuleState.NOT_MEMBER: "yellow",
    RuleState.LAGGING: "yellow",
    RuleState.LEAVING: "magenta",
    RuleState.PENDING: "cyan",
    RuleState.DRIFT: "magenta",
    RuleState.UNREGISTERED: "bold red",
    RuleState.IN_SYNC: "green",
}

# Priority 0: what on-call acts on, always shown; on a narrow terminal the highest numbers go first
# (instance id, private IP, public IP, version, overlay IP, last apply age).
FLEET_COLUMNS: tuple[Column, ...] = (
    Column("mark", " "), Column("name", "NAME"), Column("instance", "INSTANCE", 7), Column("side", "SIDE"),
    Column("public", "PUBLIC", 5), Column("private", "PRIVATE", 6), Column("overlay", "OVERLAY", 3),
    Column("version", "VERSION", 4), Column("want", "RA WANT"), Column("applied", "RA APPLIED"),
    Column("state", "STATE"), Column("age", "APPLIED", 2),
)
COLUMN_KEYS = tuple(column.key for column in FLEET_COLUMNS)
AGE_COLUMN = len(FLEET_COLUMNS) - 1


def column_widths(rows: Iterable[tuple[Cell, ...]]) -> dict[str, int]:
    """The widest text of each fleet column over ``rows`` (what the table would need to show it)."""
    def width(text: str) -> int:
        return len(text) if text.isascii() else cell_len(text)

    columns = zip(*rows, strict=False)
    widest = [max(map(width, (text for text, _ in column)), default=0) for column in columns]
    widest += [0] * (len(FLEET_COLUMNS) - len(widest))
    return dict(zip(COLUMN_KEYS, widest, strict=True))


def age(seconds: float | None) -> str:
    """k9s-style age: 45s, 12m, 5h, 3d."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def reject_all_cell(value: bool | None, source: str | None) -> Cell:
    if value is None:
        return ("-", "dim") if source is None else (f"? ({source})", "dim")
    return f"{on_off(value)} ({source})", "bold" if value else ""


def fleet_cells(row: HostRow, now: float, selected: bool) -> tuple[Cell, ...]:
    mismatch = row.status is not None and row.desired is not None and (
        row.desired != row.applied or row.desired_source != row.applied_source)
    want = reject_all_cell(row.desired, row.desired_source) if (row.in_party or row.status) else ("-", "dim")
    applied = reject_all_cell(row.applied, row.applied_source)
    if mismatch:
        applied = (applied[0], "bold cyan")
    return (
        ("●" if selected else " ", "bold yellow"),
        (row.name or "-", "" if row.name else "dim"),
        (row.instance_id or row.key, "" if row.instance_id else "dim"),
        (row.side or "-", ""),
        (row.public_ip or "-", ""),
        (row.private_ip or "-", ""),
        (row.overlay_ip or "-", ""),
        (row.version or "-", ""),
        want,
        applied,
        (row.state_label, STATE_STYLE[row.state]),
        age_cell(row, now),
    )


def age_cell(row: HostRow, now: float) -> Cell:
    applied_at = row.applied_at
    return age(None if applied_at is None else now - applied_at), ""


def to_text(cell: Cell) -> Text | str:
    """A table cell: plain (escaped) text when unstyled, which costs far less memory at 10,000 rows
    than a Text object per cell; the table parses it only for the rows on screen."""
    text, style = cell
    if not style:
        # rich's escape runs a regex over every cell; only a "[" (markup) or a trailing backslash
        # needs it, and at 10,000 rows it was a tenth of the console's first full paint.
        return escape(text) if "[" in text or text.endswith("\\") else text
    return Text(text, style=style, no_wrap=True)
