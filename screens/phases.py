"""Migration phases: the original README's procedure, each phase's guard computed from live data.

Moving forward needs the next phase's guard to pass and its name typed; a failing guard is shown
check by check and the move is refused (here, and again by ``neti_core.operator_actions``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from neti_core.fleet import FleetBatch, FleetSnapshot
from neti_core.phases import PHASES, Check, check_move, current_key, phase_index
from screens.actions import WriteActions
from screens.cells import when
from screens.confirm import ChangePlan, Confirmed, ConfirmScreen
from screens.context import context
from screens.progress import MigrationProgress
from screens.widgets import ConnectionBanner, FitFooter, HeaderBar

REFRESH_SECONDS = 0.5


def check_line(check: Check) -> Text:
    mark = Text("✓ ", style="bold green") if check.ok else Text("✗ ", style="bold red")
    line = mark + Text(check.label) + (Text(f" — {check.detail}", style="dim") if check.detail else Text(""))
    if check.remedy and not check.ok:
        line += Text(f"\n    → {check.remedy}", style="yellow")
    return line


class PhasesScreen(WriteActions):
    BINDINGS = [
        Binding("n", "next_phase", "Next phase"),
        Binding("b", "previous_phase", "Back one phase"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._checks: dict[str, tuple[Check, ...]] = {}
        self._dirty = True

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield MigrationProgress(id="progress")
        table: DataTable[Any] = DataTable(id="phases", cursor_type="row")
        for key, label in (("at", " "), ("n", "#"), ("phase", "PHASE"), ("title", "WHAT"),
                           ("guard", "GUARD")):
            table.add_column(label, key=key)
        yield table
        with VerticalScroll(id="phase-detail"):
            yield Static(id="detail")
        yield FitFooter()

    def on_mount(self) -> None:
        ctx = context(self)
        ctx.fleet_signal.subscribe(self, self._on_fleet)
        self.set_interval(REFRESH_SECONDS, self._refresh_if_dirty)
        self._refresh()
        self.query_one("#phases", DataTable).move_cursor(row=phase_index(current_key(ctx.fleet)))

    def _on_fleet(self, batch: FleetBatch) -> None:
        self._dirty = True  # guards walk every row: recompute at most twice a second
        ctx = context(self)
        self.query_one(ConnectionBanner).show(batch.snapshot, ctx.now())

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._refresh()

    def _refresh(self) -> None:
        self._dirty = False
        ctx = context(self)
        snapshot = ctx.fleet
        self.query_one(HeaderBar).show(snapshot, operator=ctx.operator, readonly=ctx.readonly)
        self.query_one(ConnectionBanner).show(snapshot, ctx.now())
        self.query_one(MigrationProgress).show(snapshot, ctx.trends, ctx.now())
        current = phase_index(current_key(snapshot))
        self._checks = {phase.key: phase.guard(snapshot) for phase in PHASES}
        table = self.query_one("#phases", DataTable)
        cursor = table.cursor_row
        table.clear()
        for index, phase in enumerate(PHASES):
            checks = self._checks[phase.key]
            failing = sum(not c.ok for c in checks)
            guard = Text(f"✗ {failing} failing", style="red") if failing else Text("✓ ready", style="green")
            at = Text("▶", style="bold yellow") if index == current else Text("✓" if index < current else "")
            table.add_row(at, str(index + 1), phase.key, phase.title, guard, key=phase.key)
        table.move_cursor(row=cursor, animate=False)
        self._show_detail(snapshot)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(context(self).fleet)

    def _show_detail(self, snapshot: FleetSnapshot) -> None:
        table = self.query_one("#phases", DataTable)
        if not table.row_count or not self._checks:
            return
        phase = PHASES[min(table.cursor_row, len(PHASES) - 1)]
        record = snapshot.phase
        moved = "" if record is None else (f"Current phase {record.phase} since {when(record.when)} by "
                                            f"{record.who}" + (f" — {record.why}" if record.why else ""))
        parts = [Text(f"{phase.key}: {phase.title}", style="bold"), Text(phase.steps), Text(""),
                 Text("Guard to enter this phase:", style="bold"),
                 *(check_line(check) for check in self._checks[phase.key])]
        if moved:
            parts += [Text(""), Text(moved, style="dim")]
        self.query_one("#detail", Static).update(Group(*parts))

    def _move(self, step: int) -> None:
        ctx = context(self)
        here = current_key(ctx.fleet)
        index = phase_index(here) + step
        if not 0 <= index < len(PHASES):
            self.notify("no phase that way", severity="warning")
            return
        target = PHASES[index].key
        verdict = check_move(here, target, ctx.fleet)
        if not verdict.allowed:
            self.notify("\n".join(verdict.reasons), title=f"refused: {here} → {target}", severity="error",
                        timeout=10)
            return
        plan = ChangePlan(title="Move the migration phase", verb=f"phase {here} → {target}"
                          + (" (rollback)" if verdict.backward else ""),
                          scope="the whole fleet: the procedure step everyone works to", typed=target)

        def write(confirmed: Confirmed | None) -> None:
            if confirmed is None or ctx.control is None:
                return
            control = ctx.control
            self.run_write(f"phase {here} → {target}",
                           lambda: control.move_phase(target, ctx.fleet, confirmed.why))

        self.app.push_screen(ConfirmScreen(plan), write)

    def action_next_phase(self) -> None:
        self._move(+1)

    def action_previous_phase(self) -> None:
        self._move(-1)

    def on_write_done(self, message: Any) -> None:
        super().on_write_done(message)
        self._dirty = True
