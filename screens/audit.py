"""The audit log: every operator action (who, when, what, target, before → after, why), newest first."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from neti_core.fleet import FleetSnapshot
from screens.cells import when
from screens.listing import ListingScreen

COLUMNS = (("seq", "SEQ"), ("when", "WHEN"), ("who", "WHO"), ("action", "ACTION"), ("target", "TARGET"),
           ("change", "BEFORE → AFTER"), ("why", "WHY"))


def short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AuditScreen(ListingScreen):
    TABLE_ID = "audit"
    SUMMARY_ID = "audit-summary"
    COLUMNS = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._newest = -2

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
