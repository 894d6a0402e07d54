"""``?``: the keys of the screen underneath (only those that are active: a read-only console lists
no write keys), plus the filter language."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from neti_core.fleet.query import FIELDS

FILTER_HELP = f"""\
[b]Filter[/] (press [b]/[/]): type words; a row is shown when it matches all of them.
  [b cyan]word[/]         matches part of the name, instance id, an IP, the version or the state
  [b cyan]field:value[/]  matches one field: {", ".join(FIELDS)}
  [b cyan]!word[/]        shows only the rows that do [b]not[/] match
Examples: [b]web side:vpc[/]   [b]state:lagging[/]   [b]!state:in[/]   [b]applied:off[/]"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, title: str, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table(title=f"Keys: {self.title_text}", title_justify="left", show_header=False, box=None)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, description in self.keys:
            table.add_row(key, description)
        with VerticalScroll(id="dialog"):
            yield Static(table)
            yield Static(f"\n{FILTER_HELP}\n\n[dim]Esc or ? closes this help.[/]")

    def action_dismiss(self, result: Any = None) -> None:  # type: ignore[override]
        self.dismiss(None)
