"""Snapshots of the console's main screens (pytest-textual-snapshot), on fixed data and a fixed clock.

The data is real: written to the test's ZooKeeper the way agents and operators write it, and read
back through the live view; the EC2 inventory is a fixed list handed to the view (moto's instance
ids are random). Update with ``pytest --snapshot-update`` after checking the differences by eye.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from neti_core.aws import Instance
from neti_core.members import Side
from neti_core.operator_actions import FleetControl
from neti_core.schema import GuardState, PhaseRecord
from screens.audit import AuditScreen
from screens.confirm import ConfirmScreen
from screens.fleet import FleetScreen
from screens.help import HelpScreen
from screens.host import HostScreen
from screens.phases import PhasesScreen
from screens.unregistered import UnregisteredScreen
from tests.fixtures.console import FIXED_NOW, console_config, instance_id, wait_until

SIZE = (150, 36)
NARROW, WIDE = (80, 24), (200, 50)  # a laptop or phone terminal, a big monitor
SIZES = pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "200x50"])
OPENS = {"2": UnregisteredScreen, "3": PhasesScreen, "4": AuditScreen, "question_mark": HelpScreen,
         "o": ConfirmScreen, "open": HostScreen}
NAMES = {1: "web-01", 2: "web-02", 3: "web-03", 4: "vpc-web-01", 5: "db-01", 6: "db-02", 7: "cache-01",
         8: "cache-02", 9: "batch-01", 10: "batch-02", 11: "search-01", 12: "vpc-search-01"}


@pytest.fixture
def mixed_fleet(seeder, zk, zk_paths):
    """Twelve hosts, one in each state the console knows, and two instances outside Neti."""
    for n in range(1, 13):
        seeder.add_member(n, Side.VPC if n in (4, 12) else Side.EC2)
    version = seeder.cversion()
    for n in range(1, 13):
        if n != 8:
            seeder.publish(n, membership_version=version, members=12, applied_at=FIXED_NOW - 60 * n)
    seeder.publish(3, error="apply failed, previous rules kept: iptables-restore exited 4")
    seeder.publish(5, membership_version=version - 2)
    seeder.publish(6, guard=GuardState(blocked_removals=31, maxchange=20, since=FIXED_NOW - 300))
    control = FleetControl(zk, zk_paths, "alice", clock=lambda: FIXED_NOW - 600)
    control.set_maxchange(20, why="default")
    control.set_host_reject_all([instance_id(7), instance_id(9), instance_id(11)], True, why="canary tier")
    seeder.publish(7, reject_all=True, reject_all_source="host", deadman="pending")
    seeder.publish(9, reject_all=True, reject_all_source="host", deadman="confirmed")
    seeder.publish(10, drift_repairs=2, drift_detected=True)
    phase = PhaseRecord("register", "alice", FIXED_NOW - 86400, "EC2 fleet on Neti")
    zk.create(zk_paths.control_phase, phase.to_json())
    instances = [Instance(instance_id(n), NAMES[n], host.member.side, host.member.private, host.member.public,
                          "running", {"Name": NAMES[n]}) for n, host in seeder.hosts.items()]
    for k in (1, 2):
        name = f"legacy-batch-{k}"
        instances.append(Instance(f"i-0abc{k:013x}", name, Side.EC2, IPv4Address(f"10.1.9.{k}"),
                                  IPv4Address(f"54.9.9.{k}"), "running", {"Name": name}))
    return instances


@pytest.fixture
def operator_config(zk_server, zk_paths, tmp_path):
    """The console as production runs it: with the operator's ZooKeeper credentials (so the header
    has no ``unauthenticated`` part; ``test_console_trust_header`` shows the one without)."""
    secret = tmp_path / "alice.secret"
    secret.write_text("snapshot-secret\n")
    secret.chmod(0o600)
    return console_config(zk_server.hosts, zk_paths.prefix, zk_identity="alice", zk_secret_file=str(secret))


@pytest.fixture
def operator_app(console, operator_config):
    return console(ec2=True, poll_ec2=False, operator="alice", config=operator_config)


def ready(instances, *then: str):
    """Load the fixed fleet, then press keys, each time waiting until the screen it opens is up."""
    async def run_before(pilot) -> None:
        app = pilot.app
        app.live.submit_instances(instances)
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 14 and len(app.fleet.audit) == 2
                         and app.fleet.summary.inventory_known and app.screen.settled, timeout=20)
        for key in then:
            await pilot.press("enter" if key == "open" else key)
            expected = OPENS.get(key)
            if expected is not None:
                await wait_until(pilot, lambda expected=expected: isinstance(app.screen, expected))
            await pilot.pause(0.2)
        await pilot.pause(0.6)  # the phases screen recomputes its guards twice a second
    return run_before


def test_fleet_screen(snap_compare, operator_app, mixed_fleet):
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=ready(mixed_fleet))


def test_fleet_bulk_confirmation(snap_compare, operator_app, mixed_fleet):
    keys = ("slash", *"batch", "enter", "asterisk", "o")
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=ready(mixed_fleet, *keys))


def test_host_detail(snap_compare, operator_app, mixed_fleet):
    keys = ("slash", *"cache-01", "enter", "open")
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=ready(mixed_fleet, *keys))


def test_unregistered_screen(snap_compare, operator_app, mixed_fleet):
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=ready(mixed_fleet, "2"))


def test_phases_screen(snap_compare, operator_app, mixed_fleet):
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=ready(mixed_fleet, "3", "down"))


def test_audit_screen(snap_compare, operator_app, mixed_fleet):
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=ready(mixed_fleet, "4"))


def test_help_screen(snap_compare, operator_app, mixed_fleet):
    run_before = ready(mixed_fleet, "question_mark")
    assert snap_compare(operator_app, terminal_size=SIZE, run_before=run_before)


@SIZES
def test_fleet_screen_at_terminal_sizes(snap_compare, operator_app, mixed_fleet, size):
    """NAME, SIDE, RA WANT/APPLIED and STATE on screen at 80 columns; everything at 200."""
    assert snap_compare(operator_app, terminal_size=size, run_before=ready(mixed_fleet))


@SIZES
def test_host_detail_at_terminal_sizes(snap_compare, operator_app, mixed_fleet, size):
    keys = ("slash", *"cache-01", "enter", "open")
    assert snap_compare(operator_app, terminal_size=size, run_before=ready(mixed_fleet, *keys))


@SIZES
def test_phases_screen_at_terminal_sizes(snap_compare, operator_app, mixed_fleet, size):
    assert snap_compare(operator_app, terminal_size=size, run_before=ready(mixed_fleet, "3", "down"))


@SIZES
def test_audit_screen_at_terminal_sizes(snap_compare, operator_app, mixed_fleet, size):
    assert snap_compare(operator_app, terminal_size=size, run_before=ready(mixed_fleet, "4"))
