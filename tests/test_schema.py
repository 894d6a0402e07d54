"""The JSON documents in ZooKeeper: round-trips, and strict refusal of anything else."""

from __future__ import annotations

import pytest

from neti_core.errors import MalformedEntryError
from neti_core.schema import (
    AgentStatus,
    AuditEntry,
    FleetDefaults,
    GuardState,
    PhaseRecord,
    RejectAllOverride,
    effective_reject_all,
)

STATUS = AgentStatus("i-0123456789abcdef0", "192.168.1.2", "vpc", "0.1.0", True, "host", 7, 40,
                     "0123456789abcdef", 1.5, 2.5, None, GuardState(3, 2, 10.0), "pending", 1,
                     "198.51.100.1", "10.0.0.1", "restore", 0, 2)


@pytest.mark.parametrize("document", [
    STATUS, RejectAllOverride(True, "ana", 5.0, "canary"), FleetDefaults(False, "bo", 6.0),
    FleetDefaults(), PhaseRecord("reject-rollout", "cy", 7.0),
    AuditEntry("dee", 8.0, "reject_all", "i-1", False, True),
])
def test_round_trip(document):
    assert type(document).from_json(document.to_json()) == document


@pytest.mark.parametrize(("cls", "text"), [
    (AgentStatus, STATUS.to_json().replace(b'"vpc"', b'"classic"')),
    (AgentStatus, STATUS.to_json().replace(b'"192.168.1.2"', b'"192.168.1.2; reboot"')),
    (AgentStatus, STATUS.to_json().replace(b'"pending"', b'"maybe"')),
    (AgentStatus, STATUS.to_json().replace(b'"members":40', b'"members":"40"')),
    (RejectAllOverride, b'{"value": "true", "who": "a", "when": 1}'),
    (RejectAllOverride, b'{"who": "a", "when": 1}'),
    (FleetDefaults, b'{"reject_all": 1}'),
    (PhaseRecord, b'{"phase": "x", "who": "a", "when": NaN}'),
    (PhaseRecord, b"[1, 2]"),
    (PhaseRecord, b"\xff"),
])
def test_anything_else_is_a_typed_error(cls, text):
    with pytest.raises(MalformedEntryError):
        cls.from_json(text)


def test_reject_all_precedence_host_then_fleet_then_config():
    host, fleet = RejectAllOverride(False, "a", 1.0), FleetDefaults(True, "b", 2.0)
    assert effective_reject_all(host, fleet, True) == (False, "host")
    assert effective_reject_all(None, fleet, False) == (True, "fleet")
    assert effective_reject_all(None, FleetDefaults(), True) == (True, "config")
