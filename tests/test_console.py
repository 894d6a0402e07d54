"""The console driven like an operator would (Textual's pilot), against a real ZooKeeper."""

from __future__ import annotations

import pytest

from neti_core.operator_actions import ReadOnlyError
from neti_core.schema import AuditEntry, PhaseRecord, RejectAllOverride
from screens.confirm import ConfirmScreen
from screens.fleet import FleetScreen
from screens.help import HelpScreen
from tests.fixtures.console import cell, instance_id, pilot_test, wait_until

SIZE = (170, 45)


async def loaded(pilot, rows: int) -> FleetScreen:
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                     and app.screen.table.row_count == rows, what=f"{rows} rows in the fleet table")
    return app.screen


def audit(zk, paths) -> list[AuditEntry]:
    names = sorted(zk.get_children(paths.audit)) if zk.exists(paths.audit) else []
    return [AuditEntry.from_json(zk.get(f"{paths.audit}/{n}")[0]) for n in names]


@pilot_test
async def test_the_fleet_follows_zookeeper_live_and_updates_rows_in_place(console, seeder):
    seeder.seed(5)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, 5)
        assert cell(app, instance_id(3), "state") == "in sync"
        await pilot.press("down", "down")
        under_cursor = screen.table.cursor_row_key()
        seeder.publish(3, error="apply failed, previous rules kept")
        await wait_until(pilot, lambda: cell(app, instance_id(3), "state") == "error")
        assert screen.table.cursor_row_key() == under_cursor, "a live change keeps the operator's place"
        assert "1 errors" in str(screen.query_one("#header").render())

        seeder.add_member(6)
        await wait_until(pilot, lambda: screen.table.row_count == 6)
        assert cell(app, instance_id(6), "state") == "no agent"
        assert cell(app, instance_id(1), "state") == "lagging 1"
        seeder.publish(6, membership_version=seeder.cversion())
        await wait_until(pilot, lambda: cell(app, instance_id(6), "state") == "in sync")
        seeder.leave(2)
        await wait_until(pilot, lambda: cell(app, instance_id(2), "state") == "not in party")


@pilot_test
async def test_flipping_reject_all_on_a_host_writes_the_control_node_and_an_audit_entry(console, seeder, zk,
                                                                                         zk_paths):
    seeder.seed(3)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, 3)
        await pilot.press("down")
        target = screen.table.cursor_row_key()
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.focused.id == "cancel", "focus starts on Cancel"
        assert "on 1 of 1 host" in str(app.screen.query_one("#summary").render())
        await pilot.press("enter")  # a stray Enter cancels
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen))
        assert not zk.exists(f"{zk_paths.control_reject_all}/{target}")

        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#why")
        await pilot.press(*"canary")
        await pilot.click("#confirm")
        path = f"{zk_paths.control_reject_all}/{target}"
        await wait_until(pilot, lambda: zk.exists(path) is not None, what="the override node")
        override = RejectAllOverride.from_json(zk.get(path)[0])
        assert (override.value, override.who, override.why) == (True, "tester", "canary")
        (entry,) = audit(zk, zk_paths)
        assert (entry.action, entry.target, entry.after) == ("reject_all.set", target, True)
        assert entry.who == "tester"
        await wait_until(pilot, lambda: cell(app, target, "want") == "on (host)")
        assert cell(app, target, "state") == "reject_all pending"


@pilot_test
async def test_a_bulk_flip_can_be_a_canary_of_the_selection(console, seeder, zk, zk_paths):
    seeder.seed(10)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, 10)
        await pilot.press("asterisk")
        assert screen.selected == {instance_id(n) for n in range(1, 11)}
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#percent")
        await pilot.press("end", "backspace", "backspace", "backspace", "3", "0")
        await wait_until(pilot, lambda: "on 3 of 10 hosts (canary 30%)"
                         in str(app.screen.query_one("#summary").render()))
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.exists(zk_paths.control_reject_all) is not None
                         and len(zk.get_children(zk_paths.control_reject_all)) == 3)
        assert sorted(zk.get_children(zk_paths.control_reject_all)) == [instance_id(n) for n in (1, 2, 3)]
        (entry,) = audit(zk, zk_paths)
        assert entry.extra["canary_percent"] == 30 and entry.extra["selected"] == 10


@pilot_test
async def test_read_only_offers_no_write_binding_and_the_core_refuses_writes(console, seeder, zk, zk_paths):
    seeder.seed(2)
    app = console(readonly=True)
    writes = {"reject_on", "reject_off", "reject_clear", "fleet_default", "maxchange", "next_phase",
              "previous_phase"}
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 2)
        for mode in ("fleet", "phases"):
            await app.switch_mode(mode)
            await pilot.pause()
            actions = {active.binding.action for active in app.screen.active_bindings.values()}
            assert not actions & writes, f"write bindings offered on {mode}"
        await app.switch_mode("fleet")
        await pilot.press("enter")
        await pilot.pause()
        actions = {active.binding.action for active in app.screen.active_bindings.values()}
        assert not actions & writes, "write bindings offered on the host screen"
        await pilot.press("o", "f", "c", "F", "M")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert not any("reject_all" in title or "maxchange" in title for title in titles)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "reject_all on" not in str(app.screen.query_one("Static").render())
        with pytest.raises(ReadOnlyError):
            app.control.set_host_reject_all([instance_id(1)], True)
    assert not zk.exists(zk_paths.control), "nothing was written"


@pilot_test
async def test_filter_and_sort(console, seeder):
    seeder.seed(12, vpc_every=4)
    seeder.publish(7, error="boom")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, 12)
        table = screen.table
        await pilot.press("slash", *"side:vpc", "enter")
        await wait_until(pilot, lambda: table.row_count == 3)
        assert set(table.row_keys_in_order()) == {instance_id(4), instance_id(8), instance_id(12)}
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == 12)
        await pilot.press("slash", *"!state:sync", "enter")
        await wait_until(pilot, lambda: table.row_keys_in_order() == [instance_id(7)])
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == 12)

        await pilot.press("S")
        assert table.row_keys_in_order()[0] == instance_id(7), "worst state first"
        await pilot.press("O")
        overlays = [cell(app, key, "overlay") for key in table.row_keys_in_order()]
        assert overlays[:3] == ["192.168.0.2", "192.168.0.3", "192.168.0.4"]
        assert overlays.index("192.168.0.13") > overlays.index("192.168.0.9"), "IPs sort as numbers"
        await pilot.press("O")
        assert table.row_keys_in_order()[0] == instance_id(12), "the same key again reverses"


@pilot_test
async def test_a_phase_move_is_refused_while_its_guard_fails(console, seeder, zk, zk_paths):
    seeder.seed(3)
    seeder.publish(2, error="apply failed")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 3)
        await pilot.press("3")
        await pilot.pause(0.2)
        await pilot.press("n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen), "no dialog for a move that is refused"
        assert any("no agent in error" in n.message for n in app._notifications)
        assert not zk.exists(zk_paths.control_phase)

        seeder.publish(2, error=None)
        await wait_until(pilot, lambda: app.fleet.summary.errors == 0)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.query_one("#confirm").disabled, "the phase's name must be typed first"
        await pilot.click("#typed")
        await pilot.press(*"register")
        assert not app.screen.query_one("#confirm").disabled
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.exists(zk_paths.control_phase) is not None)
        assert PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0]).phase == "register"
        assert audit(zk, zk_paths)[-1].action == "phase.move"
        await wait_until(pilot, lambda: app.fleet.phase is not None and app.fleet.phase.phase == "register")


@pilot_test
async def test_the_audit_screen_and_host_history_show_operator_actions(console, seeder):
    seeder.seed(2)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 2)
        app.control.set_host_reject_all([instance_id(2)], True, why="canary")
        await wait_until(pilot, lambda: len(app.fleet.audit) == 1)
        await pilot.press("4")
        await wait_until(pilot, lambda: app.screen.query_one("#audit").row_count == 1)
        row = [str(c) for c in app.screen.query_one("#audit").get_row_at(0)]
        assert row[2:5] == ["tester", "reject_all.set", instance_id(2)] and row[-1] == "canary"
        await pilot.press("1", "down", "enter")
        await wait_until(pilot, lambda: app.screen.query_one("#history").row_count == 1)


@pilot_test
async def test_maxchange_as_a_share_of_the_fleet_from_the_console(console, seeder, zk, zk_paths):
    """Unset, the header shows the agents' default; the field takes a share, says what it means
    at today's fleet size, and refuses what the agents would refuse, writing nothing."""
    seeder.seed(12)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 12)
        assert "maxchange 10% (default)" in str(app.screen.query_one("#header").render())
        await pilot.press("M")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "MaxChangeScreen")
        await pilot.press("ctrl+u", *"150%", "enter")  # over 100%: refused, the field stays open
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "MaxChangeScreen" and zk.exists(zk_paths.maxchange) is None
        await pilot.press("ctrl+u", *"25%", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        summary = str(app.screen.query_one("#summary").render())
        assert "maxchange: unset (10%) → 25%" in summary and "at 12 members, 3 may go at once" in summary
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.exists(zk_paths.maxchange) is not None
                         and zk.get(zk_paths.maxchange)[0] == b"25%")
        await wait_until(pilot, lambda: "maxchange 25% " in str(app.screen.query_one("#header").render()))
        assert [(e.action, e.after) for e in audit(zk, zk_paths)] == [("maxchange.set", "25%")]


@pilot_test
async def test_fleet_default_and_maxchange_from_the_console(console, seeder, zk, zk_paths):
    seeder.seed(4)
    zk.create(zk_paths.maxchange, b"20")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 4)
        await pilot.press("F")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ChoiceScreen")
        await pilot.press("enter")  # the first choice: on
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        summary = str(app.screen.query_one("#summary").render())
        assert "fleet default reject_all: unset → on" in summary and "all 4 hosts" in summary
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: app.fleet.defaults is not None
                         and app.fleet.defaults.reject_all is True)
        await wait_until(pilot, lambda: cell(app, instance_id(1), "want") == "on (fleet)")

        await pilot.press("M")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "MaxChangeScreen")
        await pilot.press("backspace", "backspace", "5", "0", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "maxchange: 20 → 50" in str(app.screen.query_one("#summary").render())
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.get(zk_paths.maxchange)[0] == b"50")
        assert [e.action for e in audit(zk, zk_paths)] == ["defaults.reject_all", "maxchange.set"]
