"""Undo from the console's audit view, driven like an operator would (Textual's pilot)."""

from __future__ import annotations

from neti_core.fleet.treeread import audit_seq
from neti_core.operator_actions import FleetControl
from neti_core.schema import AuditEntry
from screens.audit import AuditScreen
from screens.revert import RevertScreen
from tests.fixtures.console import FIXED_NOW, instance_id, pilot_test, wait_until

SIZE = (150, 40)


def newest_entry(zk, paths) -> tuple[int, AuditEntry]:
    name = max(zk.get_children(paths.audit))
    return audit_seq(name), AuditEntry.from_json(zk.get(f"{paths.audit}/{name}")[0])


@pilot_test
async def test_an_audit_entry_is_reverted_after_a_confirmation_that_shows_the_change(console, seeder, zk,
                                                                                     zk_paths):
    seeder.seed(3)
    FleetControl(zk, zk_paths, "alice", clock=lambda: FIXED_NOW).set_host_reject_all(
        [instance_id(2)], True, why="wrong host")
    seq, _ = newest_entry(zk, zk_paths)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(app.screen, AuditScreen)
                         and app.screen.table.row_count == 1)
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, RevertScreen), what="the revert confirmation")
        summary = str(app.screen.query_one("#summary").render())
        assert f"{instance_id(2)}: on → unset" in summary, summary
        assert "reject_all.set by alice" in summary
        assert app.focused.id == "cancel", "focus starts on Cancel"
        await pilot.click("#why")
        await pilot.press(*"flipped the wrong host")
        await pilot.click("#confirm")
        path = f"{zk_paths.control_reject_all}/{instance_id(2)}"
        await wait_until(pilot, lambda: zk.exists(path) is None, what="the override removed")
        revert_seq, entry = newest_entry(zk, zk_paths)
        assert revert_seq > seq
        assert (entry.who, entry.before, entry.after) == ("tester", True, None)
        assert entry.why == f"revert of entry {seq}: flipped the wrong host"
        await wait_until(pilot, lambda: app.screen.table.row_count == 2, what="the revert in the audit view")


@pilot_test
async def test_a_revert_is_refused_after_a_newer_change_and_the_console_says_who(console, seeder, zk,
                                                                               zk_paths):
    seeder.seed(3)
    FleetControl(zk, zk_paths, "alice", clock=lambda: FIXED_NOW).set_host_reject_all([instance_id(1)], True)
    FleetControl(zk, zk_paths, "bob", clock=lambda: FIXED_NOW).set_host_reject_all([instance_id(1)], False)
    newer, _ = newest_entry(zk, zk_paths)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(app.screen, AuditScreen)
                         and app.screen.table.row_count == 2)
        await pilot.press("down", "u")  # alice's entry, the older one
        await wait_until(pilot, lambda: any("refused" in n.message for n in app._notifications),
                         what="the refusal")
        (message,) = [n.message for n in app._notifications if "refused" in n.message]
        assert f"it is off, not on (changed by bob at 2023-11-14 22:13:20Z, entry {newer})" in message
        assert not isinstance(app.screen, RevertScreen)
        assert newest_entry(zk, zk_paths)[0] == newer, "nothing written"


@pilot_test
async def test_a_read_only_console_offers_no_undo(console, seeder, zk, zk_paths):
    seeder.seed(1)
    FleetControl(zk, zk_paths, "alice", clock=lambda: FIXED_NOW).set_maxchange(30)
    app = console(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(app.screen, AuditScreen)
                         and app.screen.table.row_count == 1)
        assert "revert" not in {active.binding.action for active in app.screen.active_bindings.values()}
        await pilot.press("u")
        await pilot.pause(0.5)
        assert not isinstance(app.screen, RevertScreen)
        assert zk.get(zk_paths.maxchange)[0] == b"30"
