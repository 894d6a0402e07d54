"""One host in detail: its status in full, the rules it applied, reject_all, operator history."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from neti_core.fleet import FleetBatch, FleetSnapshot, HostRow
from neti_core.fleet.events import AuditAppended
from neti_core.fleet.query import on_off
from neti_core.revert_plan import shown
from screens.actions import WriteActions
from screens.cells import STATE_STYLE, age, when
from screens.context import context
from screens.fit import Part
from screens.widgets import ConnectionBanner, FitFooter, HeaderBar

ONE_COLUMN_BELOW = 110  # narrower than this, the host and agent columns are stacked


def _grid(title: str, pairs: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.title = title
    grid.title_justify = "left"
    grid.title_style = "bold underline"
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for label, value in pairs:
        grid.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    return grid


def describe(row: HostRow, snapshot: FleetSnapshot, now: float) -> tuple[Group, Group]:
    """(host and reject_all, applied rules and agent): the two columns of the detail."""
    status, override = row.status, row.override
    host = _grid("Host", [
        ("name", row.name or "-"), ("instance id", row.instance_id or "(unknown: no ip-to-id entry)"),
        ("side", row.side or "-"), ("public / private", f"{row.public_ip or '-'} / {row.private_ip or '-'}"),
        ("overlay IP", row.overlay_ip or "-"), ("in the party (ip-map)", "yes" if row.in_party else "no"),
        ("running in EC2", "yes" if row.running else ("unknown" if not snapshot.summary.inventory_known
                                                      else "not seen")),
        ("state", Text(row.state_label, style=STATE_STYLE[row.state])), ("detail", row.detail or "-"),
    ])
    fleet_default = snapshot.defaults.reject_all if snapshot.defaults else None
    reject = _grid("reject_all", [
        ("desired", f"{on_off(row.desired)} ({row.desired_source})"),
        ("applied", f"{on_off(row.applied)} ({row.applied_source or '-'})"),
        ("host override", "none" if override is None else
         f"{on_off(override.value)} by {override.who} at {when(override.when)}"
         + (f" — {override.why}" if override.why else "")),
        ("fleet default", shown(fleet_default)),
    ])
    if status is None:
        absent = Text("No agent status (status/<id> absent).", style="dim")
        return Group(host, Text(""), reject), Group(absent)
    lag = "" if snapshot.cversion is None else f" (current {snapshot.cversion}, lag {row.lag})"
    guard = "-" if status.guard is None else (f"{status.guard.blocked_removals} removals held, maxchange "
                                             f"{status.guard.maxchange}, since {when(status.guard.since)}")
    rules = _grid("Applied rules", [
        ("members", status.members), ("ruleset hash", status.ruleset_hash or "-"),
        ("membership version", f"{status.membership_version}{lag}"),
        ("pending removals (grace)", status.pending_removals), ("guard", guard),
        ("dead-man switch", status.deadman or "-"), ("drift repairs", status.drift_repairs),
        ("malformed entries skipped", status.malformed_entries), ("backend", status.backend or "-"),
    ])
    agent = _grid("Agent status", [
        ("version", status.version), ("applied at", when(status.applied_at)),
        ("age", age(None if status.applied_at is None else now - status.applied_at)),
        ("apply time", "-" if status.apply_ms is None else f"{status.apply_ms:g} ms"),
        ("error", Text(status.error, style="bold red") if status.error else "-"),
    ])
    return Group(host, Text(""), reject), Group(rules, Text(""), agent)


class HostScreen(WriteActions):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("o", "reject_on", "reject_all on"),
        Binding("f", "reject_off", "reject_all off"),
        Binding("c", "reject_clear", "clear override", show=False),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self._row: HostRow | None = None
        self._audit_seq = -1

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="detail"):
            with Horizontal(id="host-columns"):
                yield Static(id="host")
                yield Static(id="agent")
            yield Static(Text("Operator actions on this host", style="bold underline"))
            table: DataTable[Any] = DataTable(id="history", cursor_type="row", show_cursor=False)
            for key, label in (("when", "WHEN"), ("who", "WHO"), ("action", "ACTION"), ("change", "CHANGE"),
                               ("why", "WHY")):
                table.add_column(label, key=key)
            yield table
        yield FitFooter()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < ONE_COLUMN_BELOW, "narrow")  # the two columns stacked

    def on_mount(self) -> None:
        ctx = context(self)
        ctx.fleet_signal.subscribe(self, self._on_fleet)
        self._render_all(ctx.fleet)

    def _on_fleet(self, batch: FleetBatch) -> None:
        snapshot = batch.snapshot
        if snapshot.rows.get(self.key) is not self._row or batch.of(AuditAppended):
            self._render_all(snapshot)
        else:
            self._chrome(snapshot)

    def _chrome(self, snapshot: FleetSnapshot) -> None:
        ctx = context(self)
        self.query_one(HeaderBar).show(snapshot, operator=ctx.operator, readonly=ctx.readonly,
                                       extra=[Part(f"host [b]{self.key}[/]", f"[b]{self.key}[/]")])
        self.query_one(ConnectionBanner).show(snapshot, ctx.now())

    def _render_all(self, snapshot: FleetSnapshot) -> None:
        self._chrome(snapshot)
        row = self._row = snapshot.rows.get(self.key)
        if row is None:
            gone = Text(f"{self.key} is no longer in the fleet view.", style="bold red")
            left, right = Group(gone), Group()
        else:
            left, right = describe(row, snapshot, context(self).now())
        self.query_one("#host", Static).update(left)
        self.query_one("#agent", Static).update(right)
        history = snapshot.history(self.key)
        newest = history[-1].seq if history else -1
        if newest == self._audit_seq:
            return
        self._audit_seq = newest
        table = self.query_one("#history", DataTable)
        table.clear()
        for record in reversed(history):
            entry = record.entry
            before = entry.before.get(self.key) if isinstance(entry.before, dict) else entry.before
            change = f"{shown(before)} → {shown(entry.after)}"
            cells = (when(entry.when), entry.who, entry.action, change, entry.why or "-")
            table.add_row(*(Text(cell, no_wrap=True) for cell in cells), key=str(record.seq))

    def target_rows(self) -> list[HostRow]:
        return [self._row] if self._row is not None else []
