"""Operator actions against a real ZooKeeper: control nodes and their audit records, read-only."""

from __future__ import annotations

import pytest

from neti_core.operator_actions import (
    CHUNK,
    FleetControl,
    PhaseMoveRefused,
    ReadOnlyError,
    default_operator,
)
from neti_core.schema import AuditEntry, FleetDefaults, PhaseRecord, RejectAllOverride
from tests.fixtures.console import FIXED_NOW, instance_id, pure_snapshot


def audit(zk, paths) -> list[AuditEntry]:
    if not zk.exists(paths.audit):
        return []
    return [AuditEntry.from_json(zk.get(f"{paths.audit}/{name}")[0])
            for name in sorted(zk.get_children(paths.audit))]


@pytest.fixture
def control(zk, zk_paths):
    return FleetControl(zk, zk_paths, "alice", clock=lambda: FIXED_NOW)


def test_a_host_flip_writes_the_override_and_its_audit_record(control, zk, zk_paths):
    result = control.set_host_reject_all([instance_id(1)], True, why="canary")
    data, _ = zk.get(f"{zk_paths.control_reject_all}/{instance_id(1)}")
    assert RejectAllOverride.from_json(data) == RejectAllOverride(True, "alice", FIXED_NOW, "canary")
    (entry,) = audit(zk, zk_paths)
    assert (entry.who, entry.when, entry.action, entry.target) == ("alice", FIXED_NOW, "reject_all.set",
                                                                   instance_id(1))
    assert (entry.before, entry.after, entry.why) == (None, True, "canary")
    assert result.changed == (instance_id(1),) and len(result.audit_paths) == 1

    again = control.set_host_reject_all([instance_id(1)], True)
    assert again.unchanged == (instance_id(1),) and not again.audit_paths
    assert len(audit(zk, zk_paths)) == 1, "no change, no audit record"

    control.set_host_reject_all([instance_id(1)], None, why="done")
    assert not zk.exists(f"{zk_paths.control_reject_all}/{instance_id(1)}")
    last = audit(zk, zk_paths)[-1]
    assert (last.action, last.before, last.after) == ("reject_all.clear", True, None)


def test_a_bulk_flip_is_written_in_chunks_each_with_its_audit_record(control, zk, zk_paths):
    ids = [instance_id(n) for n in range(1, CHUNK * 2 + 51)]
    control.set_host_reject_all(ids[:3], True)
    result = control.set_host_reject_all(ids, True, why="tier web", extra={"canary_percent": 100})
    assert len(result.changed) == len(ids) - 3 and len(result.unchanged) == 3
    assert len(zk.get_children(zk_paths.control_reject_all)) == len(ids)
    bulk = audit(zk, zk_paths)[1:]
    assert len(bulk) == 3
    assert sum(len(e.extra["instance_ids"]) for e in bulk) == len(ids) - 3
    assert bulk[0].target == f"{CHUNK - 3} hosts" and bulk[0].extra["canary_percent"] == 100


def test_read_only_refuses_every_write_before_touching_zookeeper(zk, zk_paths):
    control = FleetControl(zk, zk_paths, "bob", readonly=True)
    snapshot = pure_snapshot(1)
    for write in (lambda: control.set_host_reject_all([instance_id(1)], True),
                  lambda: control.set_fleet_reject_all(True),
                  lambda: control.set_maxchange(50),
                  lambda: control.move_phase("register", snapshot)):
        with pytest.raises(ReadOnlyError):
            write()
    assert not zk.exists(zk_paths.prefix), "nothing at all was written"


def test_fleet_default_and_maxchange(control, zk, zk_paths):
    control.set_fleet_reject_all(True, why="all tiers done")
    assert FleetDefaults.from_json(zk.get(zk_paths.control_defaults)[0]).reject_all is True
    control.set_fleet_reject_all(None)
    assert FleetDefaults.from_json(zk.get(zk_paths.control_defaults)[0]).reject_all is None
    zk.create(zk_paths.maxchange, b"20", makepath=True)
    control.set_maxchange(60, why="planned rack move")
    assert zk.get(zk_paths.maxchange)[0] == b"60"
    actions = [(e.action, e.before, e.after) for e in audit(zk, zk_paths)]
    assert actions == [("defaults.reject_all", None, True), ("defaults.reject_all", True, None),
                       ("maxchange.set", 20, 60)]
    with pytest.raises(ValueError, match="whole number"):
        control.set_maxchange(-1)
    control.set_maxchange("15%", why="a share scales with the fleet")
    assert zk.get(zk_paths.maxchange)[0] == b"15%"
    assert control.set_maxchange("15%").changed == (), "the same share again changes nothing"
    assert audit(zk, zk_paths)[-1].before == 60 and audit(zk, zk_paths)[-1].after == "15%"
    with pytest.raises(ValueError, match="over 100%"):
        control.set_maxchange("150%")


def test_a_phase_move_is_refused_while_its_guard_fails(control, zk, zk_paths):
    with pytest.raises(PhaseMoveRefused) as refused:
        control.move_phase("register", pure_snapshot(0))
    assert "hosts registered in Neti" in str(refused.value)
    assert not zk.exists(zk_paths.control_phase) and not audit(zk, zk_paths)

    control.move_phase("register", pure_snapshot(3), why="EC2 fleet is on Neti")
    record = PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0])
    assert (record.phase, record.who, record.why) == ("register", "alice", "EC2 fleet is on Neti")
    (entry,) = audit(zk, zk_paths)
    assert (entry.action, entry.before, entry.after) == ("phase.move", None, "register")
    assert all(check["ok"] for check in entry.extra["checks"])
    with pytest.raises(PhaseMoveRefused, match="one at a time"):
        control.move_phase("vpc-pilot", pure_snapshot(3))
    control.move_phase("prepare", pure_snapshot(0), why="rollback")
    assert PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0]).phase == "prepare"


def test_the_operator_is_the_sudo_user_before_the_user(monkeypatch):
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("SUDO_USER", "carol")
    assert default_operator() == "carol"
    monkeypatch.delenv("SUDO_USER")
    assert default_operator() == "root"
