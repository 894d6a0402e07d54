"""The audit log: every operator action (who, when, what, target, before → after, why), newest first."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from neti_core.fleet import FleetSnapshot
from neti_core.revert_plan import shown
from screens.cells import when
from screens.context import context
from screens.fit import Column
from screens.listing import ListingScreen
from screens.revert import RevertActions

COLUMNS = (Column("seq", "SEQ"), Column("when", "WHEN", 2), Column("who", "WHO"), Column("action", "ACTION"),
           Column("target", "TARGET", 1), Column("change", "BEFORE → AFTER"), Column("why", "WHY", 3))


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

    def on_resize(self) -> None:
        self._newest = -2  # the BEFORE → AFTER width depends on the terminal's: redraw
        self.show_rows(context(self).fleet, context(self).now())

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
        limit = 40 if self.app.size.width >= 120 else 16  # BEFORE → AFTER stays on an 80-column screen
        rows = []
        for record in reversed(snapshot.audit):
            entry = record.entry
            change = f"{short(entry.before, limit)} → {short(entry.after, limit)}"
            rows.append((str(record.seq), (str(record.seq), when(entry.when), entry.who, entry.action,
                                           entry.target, change, entry.why or "-")))
        self.fill(rows)
