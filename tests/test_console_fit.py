"""Any terminal: at 80 columns the columns on-call acts on stay on screen and the header lines fit;
lower-priority columns come back when there is room."""

from __future__ import annotations

from rich.text import Text

from screens.cells import FLEET_COLUMNS
from screens.fit import Column, Part, fit_line, visible_columns
from screens.fleet import FleetScreen
from tests.fixtures.console import pilot_test, wait_until

KEY_COLUMNS = {"name", "side", "want", "applied", "state"}


def test_columns_are_dropped_least_important_first_and_only_as_needed():
    columns = (Column("a", "A"), Column("b", "B", 2), Column("c", "C"), Column("d", "D", 1),
               Column("e", "E", 2))
    widths = dict.fromkeys("abcde", 8)  # each column 10 wide with its padding
    assert visible_columns(columns, widths, 50) == ("a", "b", "c", "d", "e")
    assert visible_columns(columns, widths, 49) == ("a", "b", "c", "d")  # ties: the rightmost goes first
    assert visible_columns(columns, widths, 30) == ("a", "c", "d")
    assert visible_columns(columns, widths, 5) == ("a", "c"), "priority 0 is never dropped"


def test_every_fleet_column_that_matters_has_priority_zero():
    assert {column.key for column in FLEET_COLUMNS if column.priority == 0} == KEY_COLUMNS | {"mark"}


def test_header_parts_abbreviate_before_any_is_dropped():
    parts = [Part("phase register", "register"), Part("operator alice", "alice", 2),
             Part("maxchange 20", "maxch 20", 1)]
    assert fit_line(parts, 80) == "phase register · operator alice · maxchange 20"
    assert fit_line(parts, 40) == "phase register · alice · maxchange 20"
    assert fit_line(parts, 35) == "phase register · alice · maxch 20"
    assert fit_line(parts, 30) == "register · alice · maxch 20"
    assert fit_line(parts, 20) == "register · maxch 20"
    assert fit_line([Part("[b]12[/] errors", "[b]12[/] err")], 6) == "[b]12[/] err", "markup is not counted"


@pilot_test
async def test_at_80_columns_the_key_columns_are_shown_and_the_rest_come_back_at_200(console, seeder):
    seeder.seed(30, vpc_every=4)
    app = console()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 30 and app.screen.settled)
        screen: FleetScreen = app.screen
        shown = {column.value for column in screen.table.columns}
        assert shown >= KEY_COLUMNS and "instance" not in shown and "private" not in shown
        assert screen.table.virtual_size.width <= 80, "no horizontal scrolling needed for what is shown"
        header = screen.query_one("#header")
        for line in str(header.render()).splitlines():
            assert Text.from_markup(line).cell_len <= 78, line

        await pilot.resize_terminal(120, 40)
        await wait_until(pilot, lambda: "overlay" in {c.value for c in screen.table.columns},
                         what="more columns at 120")
        assert {column.value for column in screen.table.columns} >= KEY_COLUMNS
        assert screen.table.virtual_size.width <= 120
        for line in str(header.render()).splitlines():
            assert Text.from_markup(line).cell_len <= 118, line

        await pilot.resize_terminal(200, 50)
        await wait_until(pilot, lambda: len(screen.table.columns) == len(FLEET_COLUMNS), what="all columns")
        await pilot.resize_terminal(80, 24)
        await wait_until(pilot, lambda: "instance" not in {c.value for c in screen.table.columns})
