"""The audit log: every operator action (who, when, what, target, before → after, why), newest first."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from neti_core.fleet import FleetSnapshot
from screens.cells import when
from screens.context import context
from screens.widgets import ConnectionBanner, HeaderBar

COLUMNS = (("seq", "SEQ"), ("when", "WHEN"), ("who", "WHO"), ("action", "ACTION"), ("target", "TARGET"),
           ("change", "BEFORE → AFTER"), ("why", "WHY"))


def short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AuditScreen(Screen[Any]):
    def __init__(self) -> None:
        super().__init__()
        self._newest = -2

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield Static(id="audit-summary")
        table: DataTable[Any] = DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        ctx = context(self)
        ctx.fleet_signal.subscribe(self, lambda batch: self._show(batch.snapshot))
        self._show(ctx.fleet)

    def _show(self, snapshot: FleetSnapshot) -> None:
        ctx = context(self)
        self.query_one(HeaderBar).show(snapshot, operator=ctx.operator, readonly=ctx.readonly)
        self.query_one(ConnectionBanner).show(snapshot, ctx.now())
        newest = snapshot.audit[-1].seq if snapshot.audit else -1
        if newest == self._newest:
            return
        self._newest = newest
        summary = f"{len(snapshot.audit):,} most recent of {snapshot.audit_total:,} audit entries"
        self.query_one("#audit-summary", Static).update(f"{summary} (audit/entry-<seq>)")
        table = self.query_one("#audit", DataTable)
        table.clear()
        for record in reversed(snapshot.audit):
            entry = record.entry
            cells = (str(record.seq), when(entry.when), entry.who, entry.action, entry.target,
                     f"{short(entry.before)} → {short(entry.after)}", entry.why or "-")
            table.add_row(*(Text(cell, no_wrap=True) for cell in cells), key=str(record.seq))
