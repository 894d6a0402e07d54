"""Words an on-call engineer reads: plain help, the footer's keys, a focused button that shows it."""

from __future__ import annotations

from textual.widgets import Static

from screens.confirm import ConfirmScreen
from screens.fleet import FleetScreen
from screens.help import HelpScreen
from tests.fixtures.console import pilot_test, wait_until


@pilot_test
async def test_help_is_plain_words_and_the_footer_names_what_f_does(console, seeder):
    seeder.seed(2)
    app = console()
    async with app.run_test(size=(120, 50)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 2)
        descriptions = {active.binding.key: active.binding.description
                        for active in app.screen.active_bindings.values() if active.binding.show}
        assert descriptions["f"] == "reject_all off" and descriptions["o"] == "reject_all on"
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = "\n".join(str(static.render()) for static in app.screen.query(Static))
        assert "``" not in text and ":class:" not in text
        assert "field:value  matches one field: name, id, side" in text
        assert ("g home / G end", "First / last row") in app.screen.keys


@pilot_test
async def test_the_focused_dialog_button_is_marked_by_its_label_not_only_colour(console, seeder):
    seeder.seed(2)
    app = console()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 2)
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        cancel, confirm = app.screen.query_one("#cancel"), app.screen.query_one("#confirm")
        await wait_until(pilot, lambda: str(cancel.label) == "▸ Cancel ◂")
        assert str(confirm.label) == "Confirm"
        confirm.focus()
        await wait_until(pilot, lambda: str(confirm.label) == "▸ Confirm ◂" and str(cancel.label) == "Cancel")
