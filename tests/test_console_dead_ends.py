"""Every dead end of the rehearsal has a way out, driven like an operator would (Textual's pilot,
real ZooKeeper): a rolled-back host, a host cut off from ZooKeeper, members leaving or held by the
guard, a canary and the rest, typed confirmations."""

from __future__ import annotations

from neti_core.aws import Instance
from neti_core.schema import AuditEntry, GuardState, PhaseRecord, RejectAllOverride
from screens.confirm import ConfirmScreen
from screens.fleet import FleetScreen
from tests.fixtures.console import FIXED_NOW, cell, instance_id, pilot_test, wait_until

SIZE = (170, 45)


def audit(zk, paths) -> list[AuditEntry]:
    names = sorted(zk.get_children(paths.audit)) if zk.exists(paths.audit) else []
    return [AuditEntry.from_json(zk.get(f"{paths.audit}/{n}")[0]) for n in names]


def instances_of(seeder, *numbers: int) -> list[Instance]:
    """The EC2 inventory of seeded hosts ``numbers`` (names app-00N), all running."""
    members = {n: seeder.hosts[n].member for n in numbers}
    return [Instance(instance_id(n), f"app-{n:03d}", m.side, m.private, m.public, "running",
                     {"Name": f"app-{n:03d}"}) for n, m in members.items()]


def header(app) -> str:
    return str(app.screen.query_one("#header").render())


def summary(app) -> str:
    return str(app.screen.query_one("#summary").render())


async def loaded(pilot, rows: int) -> FleetScreen:
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                     and app.screen.table.row_count == rows, what=f"{rows} rows in the fleet table")
    return app.screen


async def cursor_to(pilot, screen: FleetScreen, key: str) -> None:
    await pilot.press("home")
    for _ in range(screen.table.row_count):
        if screen.table.cursor_row_key() == key:
            return
        await pilot.press("down")
    raise AssertionError(f"{key} is not in the table")


async def dialog(pilot, *keys: str) -> ConfirmScreen:
    app = pilot.app
    await pilot.press(*keys)
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the dialog")
    return app.screen


def cut(seeder, zk_paths, n: int) -> None:
    """What ZooKeeper does when a host's session expires: its ephemeral nodes go."""
    seeder.leave(n)
    seeder.zk.delete(f"{zk_paths.status}/{instance_id(n)}")
    seeder.hosts[n].status = None


@pilot_test
async def test_a_rolled_back_host_says_so_and_o_retries_it_or_c_clears_it(console, seeder, zk, zk_paths):
    seeder.seed(3)
    target = instance_id(2)
    path = f"{zk_paths.control_reject_all}/{target}"
    zk.create(path, RejectAllOverride(True, "tester", FIXED_NOW, "canary").to_json(), makepath=True)
    seeder.publish(2, reject_all=False, reject_all_source="host", deadman="rolled_back")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, 3)
        await wait_until(pilot, lambda: cell(app, target, "state") == "deadman rolled_back")
        assert "1 rolled back (o retries, c clears)" in header(app)

        await pilot.press("3", "n")  # the next phase is refused, and the refusal says what to do
        await wait_until(pilot, lambda: any("refused" in (n.title or "") for n in app._notifications))
        refusal = next(n.message for n in app._notifications if "refused" in (n.title or ""))
        assert "o on the host retries reject_all (re-arms the dead-man switch), c clears its override" \
            in refusal

        await pilot.press("1")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen))
        await cursor_to(pilot, screen, target)
        confirm = await dialog(pilot, "o")
        assert "on 1 of 1 host" in summary(app)
        assert "rolled back by the dead-man switch: retried" in summary(app)
        version = zk.exists(path).version
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.exists(path).version == version + 1, what="the override rewritten")
        assert audit(zk, zk_paths)[-1].action == "reject_all.retry"
        assert RejectAllOverride.from_json(zk.get(path)[0]).value is True
        assert confirm is not app.screen

        seeder.publish(2, reject_all=True, reject_all_source="host", deadman="pending")  # the agent retries
        await wait_until(pilot, lambda: cell(app, target, "state") == "deadman pending")
        seeder.publish(2, deadman="rolled_back", reject_all=False)  # and is cut off again
        await wait_until(pilot, lambda: cell(app, target, "state") == "deadman rolled_back")
        await dialog(pilot, "c")
        assert "clear the reject_all override" in summary(app) and "on 1 of 1 host" in summary(app)
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.exists(path) is None, what="the override cleared")
        assert audit(zk, zk_paths)[-1].action == "reject_all.clear"


@pilot_test
async def test_a_host_cut_off_from_zookeeper_is_out_of_contact_not_unregistered(console, seeder, zk_paths):
    seeder.seed(3)
    app = console(ec2=True, poll_ec2=False)
    async with app.run_test(size=SIZE) as pilot:
        app.live.submit_instances(instances_of(seeder, 1, 2, 3))
        await loaded(pilot, 3)
        target = instance_id(2)
        await wait_until(pilot, lambda: cell(app, target, "state") == "in sync")
        overlay = cell(app, target, "overlay")
        cut(seeder, zk_paths, 2)
        await wait_until(pilot, lambda: cell(app, target, "state") == "out of contact (was in sync)")
        assert cell(app, target, "overlay") == overlay, "its last known overlay IP stays on the row"
        assert "3/3 registered" in header(app) and "1 out of contact" in header(app)
        assert app.fleet.summary.unregistered == 0

        zk_paths_ip_map = f"{zk_paths.ip_map}/{seeder.hosts[2].party_node}"
        seeder.zk.create(zk_paths_ip_map, ephemeral=True)  # healed: it rejoins with the same overlay IP
        seeder.publish(2, membership_version=seeder.cversion())
        await wait_until(pilot, lambda: cell(app, target, "state") == "in sync")
        assert "out of contact" not in header(app)


@pilot_test
async def test_leaving_and_guard_held_members_show_on_their_rows_until_released(console, seeder, zk,
                                                                               zk_paths):
    seeder.seed(4)
    zk.create(zk_paths.maxchange, b"0")
    app = console(ec2=True, poll_ec2=False)
    async with app.run_test(size=SIZE) as pilot:
        app.live.submit_instances(instances_of(seeder, 1, 2, 3, 4))
        screen = await loaded(pilot, 4)
        gone = instance_id(4)
        await pilot.press("asterisk")
        assert "4 selected" in header(app)

        # Host 4 is terminated: EC2 no longer lists it, its nodes go, every agent keeps its rules.
        app.live.submit_instances(instances_of(seeder, 1, 2, 3))
        cut(seeder, zk_paths, 4)
        for n in (1, 2, 3):
            seeder.publish(n, membership_version=seeder.cversion(), pending_removals=1)
        await wait_until(pilot, lambda: cell(app, gone, "state") == "leaving (grace)")
        assert "1 leaving (grace)" in header(app)
        assert "3 selected" in header(app), "a terminated host is no longer a target"

        for n in (1, 2, 3):  # the grace period is over, and the guard (maxchange 0) holds it
            seeder.publish(n, pending_removals=0, guard=GuardState(1, 0, FIXED_NOW))
        await wait_until(pilot, lambda: cell(app, gone, "state") == "leaving (held: M)")
        assert cell(app, instance_id(1), "state") == "guard: 1 held"
        assert "guard holds 1 removals (M releases)" in header(app)

        await pilot.press("M")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "MaxChangeScreen")
        await pilot.press("backspace", "5", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.get(zk_paths.maxchange)[0] == b"5")
        for n in (1, 2, 3):  # the agents apply the removal
            seeder.publish(n, guard=None, membership_version=seeder.cversion())
        await wait_until(pilot, lambda: screen.table.row_count == 3, what="the member gone")
        assert "leaving" not in header(app) and "guard holds" not in header(app)
        assert cell(app, instance_id(1), "state") == "in sync"


@pilot_test
async def test_a_canary_then_the_rest_and_counts_are_the_hosts_that_change(console, seeder, zk, zk_paths):
    seeder.seed(10)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 10)
        await pilot.press("asterisk")
        await dialog(pilot, "o")
        assert "on 1 of 10 hosts (canary 10%)" in summary(app), "a bulk change starts as a canary"
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: zk.exists(zk_paths.control_reject_all) is not None
                         and len(zk.get_children(zk_paths.control_reject_all)) == 1)
        await wait_until(pilot, lambda: cell(app, instance_id(1), "want") == "on (host)")

        await dialog(pilot, "o")  # the same selection again: the dialog offers the rest
        assert "on 9 of 9 hosts; the rest after the canary (1 already so)" in summary(app)
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: len(zk.get_children(zk_paths.control_reject_all)) == 10)
        await wait_until(pilot, lambda: any("9 changed;" in n.message for n in app._notifications))
        assert not any("already so;" in n.message for n in app._notifications)
        await wait_until(pilot, lambda: all(cell(app, instance_id(n), "want") == "on (host)"
                                            for n in range(1, 11)), what="every row on (host)")

        await pilot.press("o")  # nothing left to change: no dialog, it says so
        await pilot.pause(0.2)
        assert isinstance(app.screen, FleetScreen)
        assert any("already so" in n.message and "nothing to change" in n.message for n in app._notifications)


@pilot_test
async def test_typed_confirmation_starts_in_the_name_field_and_enter_confirms(console, seeder, zk, zk_paths):
    seeder.seed(3)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, 3)
        await pilot.press("3")
        # Typed straight after n, as the dialog opens: nothing is lost, nothing reaches the table.
        await pilot.press("n", *"regist")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.focused is not None and app.focused.id == "typed", "focus starts in the name field"
        await pilot.press("enter")  # not the name yet: refused, nothing written
        assert isinstance(app.screen, ConfirmScreen) and not zk.exists(zk_paths.control_phase)
        await pilot.press(*"er", "enter")
        await wait_until(pilot, lambda: zk.exists(zk_paths.control_phase) is not None)
        assert PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0]).phase == "register"
        await wait_until(pilot, lambda: app.fleet.phase is not None and app.fleet.phase.phase == "register")

        await pilot.press("b")  # back one phase: Esc cancels
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press(*"prepare", "escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0]).phase == "register"


@pilot_test
async def test_filter_reopens_empty_and_help_names_the_footers_quit_key(console, seeder):
    seeder.seed(3)
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, 3)
        await pilot.press("slash", *instance_id(2), "enter")
        await wait_until(pilot, lambda: screen.table.row_count == 1)
        await pilot.press("slash")
        field = screen.query_one("#filter")
        assert field.value == "" and field.has_focus
        assert screen.table.row_count == 1, "the filter in force stays until a new one is entered"
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.table.row_count == 3)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        keys = dict((description, key) for key, description in app.screen.keys)
        assert keys["Quit"] == "q / ^q", "the footer's q first, Textual's ^q as well"
