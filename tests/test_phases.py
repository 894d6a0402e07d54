"""Migration phases: guards computed from live data, one phase at a time (pure, no I/O)."""

from __future__ import annotations

import pytest

from neti_core.phases import PHASES, check_move, current_key, get_phase
from tests.fixtures.console import pure_snapshot


def failing(phase: str, snapshot) -> list[str]:
    return [c.label for c in get_phase(phase).guard(snapshot) if not c.ok]


def test_the_procedure_follows_the_original_readme_in_order():
    keys = [p.key for p in PHASES]
    assert keys == ["prepare", "register", "overlay", "vpc-pilot", "reject-canary", "reject-rollout",
                    "reject-everywhere", "open-security-groups", "migrate"]
    assert current_key(pure_snapshot(1)) == "prepare"


def test_reject_all_everywhere_cannot_be_declared_while_instances_are_unregistered():
    snapshot = pure_snapshot(4, reject_all=True, unregistered=2)
    verdict = check_move("reject-rollout", "reject-everywhere", snapshot)
    assert not verdict.allowed
    assert any("2 unregistered: legacy0, legacy1" in reason for reason in verdict.reasons)


def test_reject_all_everywhere_cannot_be_declared_while_hosts_run_without_it():
    snapshot = pure_snapshot(4, reject_all=True, status_changes={3: {"reject_all": False}})
    assert "every host runs with reject_all on" in failing("reject-everywhere", snapshot)
    assert check_move("reject-rollout", "reject-everywhere", pure_snapshot(4, reject_all=True)).allowed


def test_without_an_inventory_unregistered_hosts_are_unknown_not_zero():
    snapshot = pure_snapshot(4, reject_all=True, inventory=False)
    verdict = check_move("reject-rollout", "reject-everywhere", snapshot)
    assert not verdict.allowed and any("unknown: not polled yet" in r for r in verdict.reasons)


def test_no_phase_moves_on_stale_data():
    snapshot = pure_snapshot(3, connected=False)
    assert "live data from ZooKeeper" in failing("register", snapshot)


def test_canary_needs_a_vpc_host_in_sync_and_rollout_a_confirmed_canary():
    assert "a VPC host is registered and in sync" in failing("reject-canary", pure_snapshot(3))
    assert check_move("vpc-pilot", "reject-canary", pure_snapshot(3, vpc=1)).allowed
    pending = pure_snapshot(3, status_changes={1: {"reject_all": True, "reject_all_source": "config",
                                                   "deadman": "pending"}})
    assert not check_move("reject-canary", "reject-rollout", pending).allowed
    confirmed = pure_snapshot(3, status_changes={1: {"reject_all": True, "deadman": "confirmed"}})
    assert check_move("reject-canary", "reject-rollout", confirmed).allowed


def test_errors_hold_the_procedure():
    snapshot = pure_snapshot(3, status_changes={2: {"error": "apply failed"}})
    assert "no agent in error or held by the mass-change guard" in failing("register", snapshot)


@pytest.mark.parametrize(("current", "target", "allowed"), [
    ("prepare", "overlay", False),      # no skipping
    ("overlay", "register", True),      # one step back is a rollback, always allowed
    ("overlay", "prepare", False),      # back one at a time
    ("overlay", "overlay", False),
])
def test_moves_go_one_phase_at_a_time(current, target, allowed):
    assert check_move(current, target, pure_snapshot(2)).allowed is allowed


def test_unknown_phases_are_refused():
    with pytest.raises(KeyError):
        check_move("prepare", "yolo", pure_snapshot(1))
