"""The cursor is the operator's: it starts on the first row and stays on the host they chose while
the fleet streams in, re-sorts and loses rows; ``o`` then names that host, not whatever slid under
the cursor."""

from __future__ import annotations

from screens.confirm import ConfirmScreen
from screens.cursor import cursor_index, neighbour
from screens.fleet import FleetScreen
from tests.fixtures.console import cell, instance_id, pilot_test, wait_until

SIZE = (170, 40)


def test_the_neighbour_of_a_lost_host_is_the_next_row_that_stays_else_the_one_above():
    order = ["a", "b", "c", "d", "e"]
    assert neighbour(order, "b") == "c"
    assert neighbour(order, "b", leaving={"c", "d"}) == "e"
    assert neighbour(order, "e") == "d"
    assert neighbour(order, "d", leaving={"e", "c"}) == "b"
    assert neighbour(["a"], "a") is None
    assert neighbour(order, "zz") is None
    assert cursor_index(None, 5) == 0 and cursor_index(3, 5) == 3 and cursor_index(7, 5) == 4
    assert cursor_index(None, 0) == 0


def key_under_cursor(app) -> str | None:
    return app.screen.table.cursor_row_key()


@pilot_test
async def test_the_cursor_starts_on_the_first_row_and_stays_on_the_operators_host(console, seeder):
    seeder.seed(6, start=10)  # hosts 10..15; hosts 1..5 (which sort first) arrive later
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 6)
        screen: FleetScreen = app.screen
        for n in (3, 1, 2):
            seeder.add_member(n)
        await wait_until(pilot, lambda: screen.table.row_count == 9 and screen.settled, what="9 rows")
        assert screen.table.cursor_row == 0 and key_under_cursor(app) == instance_id(1), \
            "the cursor starts on the first row, whatever order the rows came in"

        await pilot.press("down", "down", "down", "down")
        chosen = instance_id(11)
        assert key_under_cursor(app) == chosen
        # Rows arrive above it, another host changes state, the operator re-sorts by state.
        for n in (4, 5):
            seeder.add_member(n)
        seeder.publish(12, error="apply failed, previous rules kept")
        await wait_until(pilot, lambda: screen.table.row_count == 11 and cell(app, instance_id(12), "state")
                         == "error" and screen.settled, what="11 rows and host 12 in error")
        assert key_under_cursor(app) == chosen
        await pilot.press("S")
        await wait_until(pilot, lambda: screen.table.row_keys_in_order()[0] == instance_id(12))
        assert key_under_cursor(app) == chosen, "a re-sort keeps the cursor on the host"
        seeder.publish(13, membership_version=seeder.cversion() - 3)  # lagging: moves in the state order
        await wait_until(pilot, lambda: cell(app, instance_id(13), "state").startswith("lagging")
                         and screen.settled)
        assert key_under_cursor(app) == chosen

        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        summary = str(app.screen.query_one("#summary").render())
        assert chosen in summary and "on 1 of 1 host" in summary, summary
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen))

        await pilot.press("G")
        assert screen.table.cursor_row == 10
        await pilot.press("g")
        assert screen.table.cursor_row == 0
        await pilot.press("end")
        assert screen.table.cursor_row == 10
        await pilot.press("home")
        assert screen.table.cursor_row == 0


@pilot_test
async def test_when_the_operators_host_leaves_the_view_the_cursor_moves_to_a_neighbour_and_says_so(
        console, seeder):
    seeder.seed(6)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 6)
        screen: FleetScreen = app.screen
        screen.set_filter("!error")
        await pilot.press("down", "down")
        assert key_under_cursor(app) == instance_id(3)
        seeder.publish(3, error="apply failed, previous rules kept")
        seeder.publish(4, error="apply failed, previous rules kept")
        await wait_until(pilot, lambda: screen.table.row_count == 4 and screen.settled, what="3 and 4 gone")
        assert key_under_cursor(app) == instance_id(5), "the next host below that is still shown"
        messages = [n.message for n in app._notifications]
        assert any(m == f"{instance_id(3)} left the view; the cursor moved to {instance_id(5)}"
                   for m in messages), messages
        await pilot.press("up")
        assert key_under_cursor(app) == instance_id(2)


@pilot_test
async def test_a_click_chooses_the_host_too(console, seeder):
    seeder.seed(6, start=10)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 6 and app.screen.settled)
        screen: FleetScreen = app.screen
        await pilot.click("#fleet", offset=(8, 4))  # the header is line 0: the fourth row
        await wait_until(pilot, lambda: screen.table.chosen_key == instance_id(13), what="host 13 chosen")
        seeder.add_member(1)  # sorts first: every row moves down one
        await wait_until(pilot, lambda: screen.table.row_count == 7 and screen.settled)
        assert key_under_cursor(app) == instance_id(13) and screen.table.cursor_row == 4
