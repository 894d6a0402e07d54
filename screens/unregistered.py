"""Running EC2 instances that are not in Neti: the original ``neti_util.py`` report, live."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable

from neti_core.fleet import FleetSnapshot
from screens.cells import age
from screens.context import context
from screens.fit import Column
from screens.host import HostScreen
from screens.listing import ListingScreen

COLUMNS = (Column("name", "NAME"), Column("instance", "INSTANCE"), Column("side", "SIDE"),
           Column("private", "PRIVATE", 2), Column("public", "PUBLIC", 1), Column("version", "NETI TAG", 3))


class UnregisteredScreen(ListingScreen):
    BINDINGS = [
        Binding("p", "poll", "Poll EC2 now"),
        Binding("enter", "open", "Detail", show=False),
    ]

    TABLE_ID = "unregistered"
    SUMMARY_ID = "inventory"
    COLUMNS = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[tuple[str, ...], ...] | None = None

    def show_rows(self, snapshot: FleetSnapshot, now: float) -> None:
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
        self.summary.update(line)
        shown = tuple((r.key, r.name, r.side, r.private_ip, r.public_ip, r.version) for r in rows)
        if shown == self._shown:
            return
        self._shown = shown
        self.fill([(row.key, (row.name or "-", row.key, row.side, row.private_ip or "-", row.public_ip or "-",
                              row.version or "-")) for row in rows])

    def action_poll(self) -> None:
        context(self).poll_ec2_now()
        self.notify("polling EC2…")

    def action_open(self) -> None:
        table = self.table
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.app.push_screen(HostScreen(key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(HostScreen(event.row_key.value))
