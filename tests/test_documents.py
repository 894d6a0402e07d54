"""The one decoder of each ZooKeeper document, per kind of garbage, and fail-static as pure logic."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

import pytest

from agent.control_watch import DEFAULT_GUARD_LIMIT, Slot, next_slot, restore_slot, snapshot_of
from agent.last_good import load_last_good, save_last_good
from neti_core.aws import Instance
from neti_core.errors import MalformedEntryError
from neti_core.fleet.state import RuleState, build_row
from neti_core.members import Side
from neti_core.phases import PHASES
from neti_core.schema import (
    MAX_DOCUMENT_BYTES,
    PHASE_KEYS,
    AgentStatus,
    AuditEntry,
    FleetDefaults,
    PhaseRecord,
    RejectAllOverride,
    decode_interval,
    decode_maxchange,
)

BIG = json.dumps({"value": True, "who": "x", "when": 1, "why": "x" * MAX_DOCUMENT_BYTES}).encode()
GARBAGE = {
    "not JSON": (b"{nope", "not JSON"),
    "wrong JSON type": (b"[]", "expected a JSON object"),
    "oversized": (BIG, "more than the"),
    "empty": (b"  ", "empty"),
}


@pytest.mark.parametrize("kind", [RejectAllOverride, FleetDefaults, PhaseRecord, AgentStatus, AuditEntry])
@pytest.mark.parametrize("garbage", GARBAGE, ids=list(GARBAGE))
def test_every_json_document_names_what_is_wrong(kind, garbage):
    data, fragment = GARBAGE[garbage]
    with pytest.raises(MalformedEntryError, match=fragment):
        kind.from_json(data)


@pytest.mark.parametrize(("kind", "document", "fragment"), [
    (RejectAllOverride, {"who": "x", "when": 1}, "missing 'value'"),
    (RejectAllOverride, {"value": "false", "who": "x", "when": 1}, "'value' has the wrong type"),
    (FleetDefaults, {"reject_all": False}, "missing 'who'"),
    (FleetDefaults, {"reject_all": 0, "who": "x", "when": 1}, "'reject_all' has the wrong type"),
    (PhaseRecord, {"phase": "rollout", "who": "x", "when": 1}, "unknown phase 'rollout'"),
    (PhaseRecord, {"phase": 3, "who": "x", "when": 1}, "'phase' has the wrong type"),
    (AuditEntry, {"who": "x", "when": 1, "action": "a"}, "missing 'target'"),
])
def test_missing_and_wrong_typed_fields(kind, document, fragment):
    with pytest.raises(MalformedEntryError, match=fragment):
        kind.from_json(json.dumps(document))


def test_the_status_carries_its_problems_and_self_heals():
    status = AgentStatus("i-0123456789abcdef0", "192.168.0.1", "ec2", "1", True, "fleet", 3, 2, "h",
                         problems=("control/defaults ignored (not JSON)",), self_heals=2)
    assert AgentStatus.from_json(status.to_json()) == status
    doc = json.loads(status.to_json())
    with pytest.raises(MalformedEntryError, match="'problems' has the wrong type"):
        AgentStatus.from_json(json.dumps(doc | {"problems": [1]}))


@pytest.mark.parametrize(("text", "value"), [(b"0", 0), (b" 20\n", 20), (b"5000", 5000)])
def test_maxchange_good(text, value):
    assert decode_maxchange(text) == value


@pytest.mark.parametrize("text", [b"lots", b"-1", b"2.5", b"", b"1e3", "٣".encode(), b"9" * 70_000, None])
def test_maxchange_garbage(text):
    with pytest.raises(MalformedEntryError, match="maxchange"):
        decode_maxchange(text)


@pytest.mark.parametrize(("text", "value"), [(b"1", 1.0), (b"0.25", 0.25), (b"3600", 3600.0)])
def test_interval_good(text, value):
    assert decode_interval(text) == value


@pytest.mark.parametrize("text", [b"soon", b"-1", b"3601", b"nan", b"inf", b""])
def test_interval_garbage_is_refused_not_clamped(text):
    with pytest.raises(MalformedEntryError, match="interval"):
        decode_interval(text)


def test_the_phase_keys_are_the_procedures():
    assert tuple(phase.key for phase in PHASES) == PHASE_KEYS


class _Stat:
    def __init__(self, mzxid: int) -> None:
        self.mzxid = mzxid


def _fleet(value: bool) -> bytes:
    return FleetDefaults(value, "ops", 1.0).to_json()


def test_garbage_keeps_the_last_good_value_and_its_instruction_token():
    good = next_slot("fleet", restore_slot("fleet", None)[0], _fleet(True), _Stat(7))
    bad = next_slot("fleet", good, b"not json", _Stat(8))
    assert (bad.value, bad.version) == (good.value, 7)
    assert "keeping the last good value" in bad.problem
    absent = next_slot("fleet", bad, None, None)  # deleted: a definite "not set", no problem
    assert (absent.value, absent.problem) == (None, None)


def test_garbage_before_any_good_value_says_what_stands_in():
    bad = next_slot("fleet", restore_slot("fleet", None)[0], b"[]", _Stat(1))
    assert bad.value is None and "never read a good one, using neti.yml's reject_all" in bad.problem
    mc = next_slot("maxchange", restore_slot("maxchange", None)[0], b"lots", _Stat(1))
    assert mc.value == DEFAULT_GUARD_LIMIT and "using the default 10%" in mc.problem


def test_last_good_values_survive_a_restart_and_a_damaged_file_is_ignored(tmp_path):
    path = tmp_path / "state" / "last-good.json"
    good = next_slot("fleet", Slot(None), _fleet(True), _Stat(9))
    save_last_good(path, {"fleet": {"data": good.data, "version": good.version}})
    saved, notes = load_last_good(path)
    restored, note = restore_slot("fleet", saved["fleet"])
    assert notes == [] and note is None and restored.value.reject_all is True and restored.version == 9
    slots = {key: restore_slot(key, saved.get(key))[0] for key in ("host", "fleet", "maxchange", "interval")}
    assert snapshot_of(slots).reject_all(False)[:2] == (True, "fleet")
    path.write_text('{"fleet": {"data": "not json", "version": 1}, "host": 3}')
    saved, notes = load_last_good(path)
    assert "entry 'host' unreadable" in notes[0]
    assert restore_slot("fleet", saved["fleet"])[1].startswith("saved last good fleet unreadable")


def test_a_registered_instance_without_agent_is_no_agent_not_unregistered():
    instance = Instance("i-0123456789abcdef0", "web", Side.EC2, IPv4Address("10.0.0.1"), None, "running", {})
    kwargs = {"member": None, "status": None, "override": None, "instance": instance, "defaults": None,
              "cversion": 3}
    assert build_row(instance.instance_id, **kwargs).state is RuleState.UNREGISTERED
    row = build_row(instance.instance_id, registered=True, **kwargs)
    assert row.state is RuleState.NO_AGENT and "no agent status" in row.detail
