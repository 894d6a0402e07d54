"""Undo from the audit log against a real ZooKeeper: a revert restores the before-value in one write
audited as "revert of entry N", and is refused (writing nothing) once the value has changed since."""

from __future__ import annotations

import pytest

from neti_core.fleet.treeread import audit_seq
from neti_core.operator_actions import FleetControl, ReadOnlyError
from neti_core.revert_plan import RevertRefused, recorded_value, revert_slots, shown, slot_document
from neti_core.schema import AuditEntry, FleetDefaults, PhaseRecord, RejectAllOverride
from tests.fixtures.console import FIXED_NOW, instance_id, pure_snapshot


def entries(zk, paths) -> list[tuple[int, AuditEntry]]:
    names = sorted(zk.get_children(paths.audit)) if zk.exists(paths.audit) else []
    return [(audit_seq(n), AuditEntry.from_json(zk.get(f"{paths.audit}/{n}")[0])) for n in names]


def last_seq(zk, paths) -> int:
    return entries(zk, paths)[-1][0]


@pytest.fixture
def alice(zk, zk_paths):
    return FleetControl(zk, zk_paths, "alice", clock=lambda: FIXED_NOW)


@pytest.fixture
def bob(zk, zk_paths):
    return FleetControl(zk, zk_paths, "bob", clock=lambda: FIXED_NOW + 60)


def override(zk, paths, n: int) -> RejectAllOverride | None:
    path = f"{paths.control_reject_all}/{instance_id(n)}"
    return RejectAllOverride.from_json(zk.get(path)[0]) if zk.exists(path) else None


def test_reverting_a_host_flip_removes_the_override_it_created_and_is_audited(alice, bob, zk, zk_paths):
    alice.set_host_reject_all([instance_id(1)], True, why="oops, wrong host")
    seq = last_seq(zk, zk_paths)
    plan = bob.plan_revert(seq)
    assert plan.lines() == [f"{instance_id(1)}: on → unset"]
    result = bob.revert(seq, why="mistaken flip")
    assert override(zk, zk_paths, 1) is None
    revert_seq, entry = entries(zk, zk_paths)[-1]
    assert result.changed == (instance_id(1),) and len(result.audit_paths) == 1
    assert (entry.who, entry.action, entry.target, entry.before, entry.after) == (
        "bob", "reject_all.set", instance_id(1), True, None)
    assert entry.why == f"revert of entry {seq}: mistaken flip" and entry.extra["revert_of"] == seq
    # A revert is an entry like any other: reverting it puts the flip back (redo).
    bob.revert(revert_seq)
    assert override(zk, zk_paths, 1).value is True


def test_a_revert_is_refused_after_a_newer_change_and_names_who_made_it(alice, bob, zk, zk_paths):
    alice.set_host_reject_all([instance_id(2)], True)
    seq = last_seq(zk, zk_paths)
    bob.set_host_reject_all([instance_id(2)], False, why="not yet")
    newer = last_seq(zk, zk_paths)
    with pytest.raises(RevertRefused) as refused:
        alice.revert(seq)
    assert str(refused.value) == (f"{instance_id(2)} has changed since entry {seq}: it is off, not on "
                                  f"(changed by bob at 2023-11-14 22:14:20Z, entry {newer})")
    assert len(entries(zk, zk_paths)) == 2, "nothing written"
    assert override(zk, zk_paths, 2).value is False
    # Changed with no audit record (by hand in ZooKeeper): still refused, and says so.
    zk.delete(f"{zk_paths.control_reject_all}/{instance_id(2)}")
    with pytest.raises(RevertRefused, match="changed without an audit record"):
        alice.revert(newer)


def test_a_bulk_flip_is_reverted_host_by_host_in_one_write(alice, bob, zk, zk_paths):
    alice.set_host_reject_all([instance_id(3)], False)
    alice.set_host_reject_all([instance_id(n) for n in (3, 4, 5)], True)
    seq = last_seq(zk, zk_paths)
    bob.revert(seq)
    assert override(zk, zk_paths, 3).value is False, "host 3 had an override before: restored"
    assert override(zk, zk_paths, 4) is None and override(zk, zk_paths, 5) is None
    _, entry = entries(zk, zk_paths)[-1]
    assert entry.extra["instance_ids"] == [instance_id(n) for n in (3, 4, 5)]
    assert entry.before == {instance_id(n): True for n in (3, 4, 5)}
    assert entry.after == {instance_id(3): False, instance_id(4): None, instance_id(5): None}


def test_fleet_default_maxchange_and_phase_are_revertible(alice, bob, zk, zk_paths):
    alice.set_fleet_reject_all(True)
    default_seq = last_seq(zk, zk_paths)
    alice.set_maxchange(20)
    alice.set_maxchange(50)
    maxchange_seq = last_seq(zk, zk_paths)
    alice.move_phase("register", pure_snapshot(3, inventory=False))
    phase_seq = last_seq(zk, zk_paths)

    bob.revert(default_seq)
    assert FleetDefaults.from_json(zk.get(zk_paths.control_defaults)[0]).reject_all is None
    bob.revert(maxchange_seq)
    assert zk.get(zk_paths.maxchange)[0] == b"20"
    bob.revert(phase_seq)
    record = PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0])
    assert (record.phase, record.who, record.why) == ("prepare", "bob", f"revert of entry {phase_seq}")
    with pytest.raises(RevertRefused, match="it is prepare, not register"):
        bob.revert(phase_seq)


def test_read_only_refuses_and_unknown_entries_are_refused(zk, zk_paths, alice):
    alice.set_maxchange(20)
    seq = last_seq(zk, zk_paths)
    with pytest.raises(ReadOnlyError):
        FleetControl(zk, zk_paths, "carol", readonly=True).revert(seq)
    with pytest.raises(RevertRefused, match="audit entry 999 does not exist"):
        alice.revert(999)


def test_the_plan_of_an_entry_is_pure():
    entry = AuditEntry("alice", FIXED_NOW, "reject_all.set", "2 hosts", {"i-1": None, "i-2": False}, True,
                       extra={"instance_ids": ["i-1", "i-2"]})
    assert revert_slots(entry) == {"i-1": (None, True), "i-2": (False, True)}
    with pytest.raises(RevertRefused, match="cannot be reverted"):
        revert_slots(AuditEntry("alice", FIXED_NOW, "registry.repair", "x"))
    with pytest.raises(RevertRefused, match="malformed"):
        revert_slots(AuditEntry("alice", FIXED_NOW, "reject_all.set", "i-1", "malformed", True))
    assert [shown(v) for v in (None, True, False, 20, "vpc")] == ["unset", "on", "off", "20", "vpc"]


def test_a_nodes_value_reads_back_as_the_audit_records_it_and_is_written_back_the_same():
    """What a revert compares (the value now) and writes (the value before) round-trip through
    the node for every revertible kind; garbage reads as "malformed", never as a value."""
    cases = [("reject_all.set", True), ("reject_all.set", False), ("defaults.reject_all", True),
             ("defaults.reject_all", None), ("maxchange.set", 20), ("maxchange.set", "10%"),
             ("phase.move", "register")]
    for action, value in cases:
        assert recorded_value(action, slot_document(action, value, "bob", FIXED_NOW, "why")) == value
    assert recorded_value("maxchange.set", b"150%") == "malformed"
    assert recorded_value("reject_all.set", b"{not json") == "malformed"
    assert recorded_value("phase.move", None) is None
