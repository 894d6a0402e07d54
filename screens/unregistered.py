"""Running EC2 instances that are not in Neti: the original ``neti_util.py`` report, live."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from neti_core.fleet import FleetSnapshot
from screens.cells import age
from screens.context import context
from screens.host import HostScreen
from screens.widgets import ConnectionBanner, HeaderBar

COLUMNS = (("name", "NAME"), ("instance", "INSTANCE"), ("side", "SIDE"), ("private", "PRIVATE"),
           ("public", "PUBLIC"), ("version", "NETI TAG"))


class UnregisteredScreen(Screen[Any]):
    BINDINGS = [
        Binding("g", "poll", "Poll EC2 now"),
        Binding("enter", "open", "Detail", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[tuple[str, ...], ...] | None = None

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield Static(id="inventory")
        table: DataTable[Any] = DataTable(id="unregistered", cursor_type="row", zebra_stripes=True)
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
        now = ctx.now()
        self.query_one(HeaderBar).show(snapshot, operator=ctx.operator, readonly=ctx.readonly)
        self.query_one(ConnectionBanner).show(snapshot, now)
        ec2 = snapshot.ec2
        rows = snapshot.unregistered
        if not ec2.configured:
            line = ("[b red]No EC2 API configured[/] (aws_region / ec2_endpoint_url): "
                    "unregistered instances unknown")
        elif ec2.last_ok is None:
            line = f"EC2 inventory: {ec2.error or 'first poll in progress…'}"
        else:
            clean = "[b green]clean: every running instance runs Neti[/]" if not rows else \
                f"[b red]{len(rows)}[/] running instances not in Neti"
            line = (f"{clean} · {ec2.instances:,} running (ignored patterns left out) · "
                    f"polled {age(now - ec2.last_ok)} ago")
            if ec2.malformed:
                line += f" · {len(ec2.malformed)} malformed instances skipped"
        self.query_one("#inventory", Static).update(line)
        shown = tuple((r.key, r.name, r.side, r.private_ip, r.public_ip, r.version) for r in rows)
        if shown == self._shown:
            return
        self._shown = shown
        table = self.query_one("#unregistered", DataTable)
        table.clear()
        for row in rows:
            cells = (row.name or "-", row.key, row.side, row.private_ip or "-", row.public_ip or "-",
                     row.version or "-")
            table.add_row(*(Text(cell, no_wrap=True) for cell in cells), key=row.key)

    def action_poll(self) -> None:
        context(self).poll_ec2_now()
        self.notify("polling EC2…")

    def action_open(self) -> None:
        table = self.query_one("#unregistered", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.app.push_screen(HostScreen(key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(HostScreen(event.row_key.value))
