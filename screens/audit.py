"""The audit log: every operator action (who, when, what, target, before → after, why), newest first."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding

from neti_core.fleet import FleetSnapshot
from neti_core.revert_plan import shown
from screens.cells import when
from screens.listing import ListingScreen
from screens.revert import RevertActions

COLUMNS = (("seq", "SEQ"), ("when", "WHEN"), ("who", "WHO"), ("action", "ACTION"), ("target", "TARGET"),
           ("change", "BEFORE → AFTER"), ("why", "WHY"))


def short(value: Any, limit: int = 40) -> str:
    text = shown(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AuditScreen(RevertActions, ListingScreen):
    BINDINGS = [Binding("u", "revert", "Undo entry")]
    TABLE_ID = "audit"
    SUMMARY_ID = "audit-summary"
    COLUMNS = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._newest = -2

    def selected_seq(self) -> int | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else int(key)

    def show_rows(self, snapshot: FleetSnapshot, now: float) -> None:
        newest = snapshot.audit[-1].seq if snapshot.audit else -1
        if newest == self._newest:
            return
        self._newest = newest
        summary = f"{len(snapshot.audit):,} most recent of {snapshot.audit_total:,} audit entries"
        self.summary.update(f"{summary} (audit/entry-<seq>)")
        table = self.table
        table.clear()
        for record in reversed(snapshot.audit):
            entry = record.entry
            cells = (str(record.seq), when(entry.when), entry.who, entry.action, entry.target,
                     f"{short(entry.before)} → {short(entry.after)}", entry.why or "-")
            table.add_row(*(Text(cell, no_wrap=True) for cell in cells), key=str(record.seq))
