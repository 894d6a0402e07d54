"""Garbage in ZooKeeper never opens a host: real agents in network namespaces, real packets.

Each kind of garbage is written over a good document in turn, on one fleet (a fleet per case would
cost minutes): the outsider stays blocked, members and the ssh whitelist are let in, the agent's
status names the problem, and a good value written afterwards takes effect.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from neti_core.errors import MalformedEntryError
from neti_core.lab.state import LabState, write_state
from neti_core.members import Side
from screens.fleet import FleetScreen
from tests.fixtures.agent import _ECHO, connect_from, wait_for
from tests.fixtures.console import cell, wait_until
from tests.test_console_resilience import banner

pytestmark = pytest.mark.usefixtures("as_root")
SSH_PORT = 22
_BIG = "x" * 100_000  # well past the 64 KiB any Neti document may have


def _stamp(**fields: object) -> bytes:
    return json.dumps({"who": "test", "when": time.time(), **fields}).encode()


# (what, the garbage, a fragment of the problem the agent must report)
DEFAULTS_GARBAGE = [
    ("not JSON", b"not json", "not JSON"),
    ("wrong JSON type", b'["reject_all", false]', "expected a JSON object"),
    ("wrong-typed field", _stamp(reject_all="off"), "'reject_all' has the wrong type"),
    ("missing field", b'{"reject_all": false}', "missing 'who'"),
    ("oversized", _stamp(reject_all=False, why=_BIG), "bytes, more than"),
    ("empty", b"", "empty"),
]
OVERRIDE_GARBAGE = [
    ("not JSON", b"{value: false", "not JSON"),
    ("wrong JSON type", b"false", "expected a JSON object"),
    ("wrong-typed field", _stamp(value="false"), "'value' has the wrong type"),
    ("missing field", _stamp(why="no value"), "missing 'value'"),
    ("oversized", _stamp(value=False, why=_BIG), "bytes, more than"),
]


def _write(fleet, path: str, data: bytes) -> None:
    if fleet.zk.exists(path):
        fleet.zk.set(path, data)
    else:
        fleet.zk.create(path, data, makepath=True)


def _problem(fleet, host, fragment: str):
    return wait_for(lambda: (s := fleet.status(host)) and any(fragment in p for p in s.problems) and s,
                    timeout=30, what=f"status of {host.instance_id} names {fragment!r}")


def _closed_but_for_members(host, member, admin, outsider, overlay: str) -> None:
    assert connect_from(outsider.name, host.public) is None, "an outsider got in"
    assert connect_from(member.ns, overlay) == str(member.address), "a member was refused"
    assert connect_from(admin.name, host.public, SSH_PORT) == str(admin.address), "ssh whitelist refused"


@pytest.fixture
def guarded(agent_fleet):
    """a (reject_all on by fleet default, ssh open to admin), member b, an outsider and an admin."""
    admin = agent_fleet.add_outsider("adm")
    outsider = agent_fleet.add_outsider("out")
    a = agent_fleet.add(Side.EC2, ssh_whitelist=[f"{admin.address}/32"])
    b = agent_fleet.add(Side.EC2)
    ssh = subprocess.Popen(["ip", "netns", "exec", a.ns, sys.executable, "-c", _ECHO.format(port=SSH_PORT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: agent_fleet.converged(members=2), what="converged")
        _write(agent_fleet, agent_fleet.paths.control_defaults, _stamp(reject_all=True))
        wait_for(lambda: (s := agent_fleet.status(a)) and s.reject_all and s.deadman == "confirmed",
                 what="fleet reject_all on and confirmed")
        yield agent_fleet, a, b, admin, outsider
    finally:
        ssh.kill()
        ssh.wait(5)


def test_garbage_over_the_fleet_default_keeps_reject_all_on_until_a_good_value(guarded, console, tmp_path):
    fleet, a, b, admin, outsider = guarded
    overlay = fleet.status(a).overlay_ip
    _closed_but_for_members(a, b, admin, outsider, overlay)
    for what, garbage, fragment in DEFAULTS_GARBAGE:
        _write(fleet, fleet.paths.control_defaults, garbage)
        status = _problem(fleet, a, fragment)
        assert status.reject_all is True, what
        assert any("control/defaults" in p and "keeping the last good value" in p for p in status.problems)
        _closed_but_for_members(a, b, admin, outsider, overlay)

    _anomalies_are_shown(fleet, a, console, tmp_path)

    # A restart with garbage still there: the last good value comes from the state directory.
    a.host.kill_agent()
    a.host.start_agent()
    status = wait_for(lambda: (s := fleet.status(a)) and s.problems and s, timeout=30, what="restarted")
    assert status.reject_all is True
    assert any("keeping the last good value" in p for p in status.problems)
    _closed_but_for_members(a, b, admin, outsider, overlay)

    # A host that never read a good value uses its neti.yml, and says so.
    c = fleet.add(Side.EC2)
    status = _problem(fleet, c, "never read a good one, using neti.yml's reject_all")
    assert status.reject_all is False and status.reject_all_source == "config"

    _write(fleet, fleet.paths.control_defaults, _stamp(reject_all=False))
    wait_for(lambda: (s := fleet.status(a)) and not s.reject_all and not s.problems, what="good value")
    wait_for(lambda: connect_from(outsider.name, a.public) == str(outsider.address), timeout=10,
             what="the outsider let in by the good value")


FAKE_ID = "i-0000000000000dead"


def _anomalies_are_shown(fleet, a, console, tmp_path) -> None:
    """Garbage defaults, an unknown phase and a status node nobody owns, in the console and lab status."""
    _write(fleet, fleet.paths.control_defaults, b"not json")
    _problem(fleet, a, "not JSON")
    _write(fleet, fleet.paths.control_phase, _stamp(phase="rollout"))
    fake = replace(fleet.status(a), instance_id=FAKE_ID, overlay_ip="192.168.250.250", error=None,
                   problems=())
    fleet.zk.create(f"{fleet.paths.status}/{FAKE_ID}", fake.to_json())
    asyncio.run(_console_shows(console, a))
    report = _lab_status(fleet, tmp_path)
    problems = "\n".join(report["problems"])
    assert "control/defaults" in problems and "not JSON" in problems
    assert "unknown phase 'rollout'" in problems
    assert f"{FAKE_ID}: not in party" in problems
    row = next(h for h in report["hosts"] if h["instance_id"] == a.instance_id)
    assert row["in_sync"] is False and "control/defaults ignored" in row["error"]
    fleet.zk.delete(f"{fleet.paths.status}/{FAKE_ID}")
    fleet.zk.delete(fleet.paths.control_phase)


async def _console_shows(console, a) -> None:
    app = console()
    async with app.run_test(size=(170, 45)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.settled
                         and "unknown phase" in banner(app) and FAKE_ID in app.fleet.rows,
                         timeout=20, what="the anomalies on screen")
        assert "control/defaults" in banner(app) and "not JSON" in banner(app)
        assert cell(app, a.instance_id, "state") == "error"
        assert cell(app, FAKE_ID, "state") == "not in party"


def _lab_status(fleet, tmp_path) -> dict:
    """``neti lab status --json`` pointed at this fleet (a lab manifest naming its hosts)."""
    hosts = [{"name": h.host.instance_id[-6:], "instance_id": h.instance_id, "side": h.host.side.value,
              "private": str(h.address), "public": str(h.public), "agent": True} for h in fleet.hosts]
    state = LabState(pid=os.getpid(), mode="netns", netns_prefix="t", zk_prefix=fleet.settings["zk_prefix"],
                     phase="ready", zk_port=fleet.zk_target[1], hosts=hosts)
    write_state(tmp_path / "lab", state)
    result = subprocess.run(["neti", "lab", "--state-dir", str(tmp_path / "lab"), "status", "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr  # not every agent in sync: exit 1, and a report
    return json.loads(result.stdout)


def test_garbage_over_a_host_override_keeps_its_value(guarded):
    fleet, a, b, admin, outsider = guarded
    _write(fleet, fleet.paths.control_defaults, _stamp(reject_all=False))
    fleet.set_host_reject_all(a, True)
    wait_for(lambda: (s := fleet.status(a)) and s.reject_all and s.reject_all_source == "host",
             what="host override on")
    overlay = fleet.status(a).overlay_ip
    path = f"{fleet.paths.control_reject_all}/{a.instance_id}"
    for what, garbage, fragment in OVERRIDE_GARBAGE:
        _write(fleet, path, garbage)
        status = _problem(fleet, a, fragment)
        assert (status.reject_all, status.reject_all_source) == (True, "host"), what
        _closed_but_for_members(a, b, admin, outsider, overlay)
    assert fleet.status(b).problems == ()  # another host's override is none of b's business
    fleet.set_host_reject_all(a, False)
    wait_for(lambda: (s := fleet.status(a)) and not s.reject_all and not s.problems, what="good value")
    wait_for(lambda: connect_from(outsider.name, a.public) == str(outsider.address), timeout=10,
             what="the outsider let in by the good value")


def test_garbage_maxchange_and_interval_are_reported_and_keep_their_last_good_values(agent_fleet):
    agent_fleet.zk.ensure_path(agent_fleet.paths.prefix)
    agent_fleet.zk.create(agent_fleet.paths.maxchange, b"1")
    a, _b, c, d = (agent_fleet.add(Side.EC2) for _ in range(4))
    wait_for(lambda: agent_fleet.converged(members=4), what="converged")
    agent_fleet.set_host_reject_all(a, True)
    wait_for(lambda: agent_fleet.status(a).deadman == "confirmed", what="reject_all on a")
    overlay_a = agent_fleet.status(a).overlay_ip
    c.host.kill_agent()
    d.host.kill_agent()
    wait_for(lambda: (s := agent_fleet.status(a)) and s.guard, timeout=30, what="guard")
    for garbage, fragment in ((b"lots", "not a whole number"), (b"-1", "not a whole number"),
                              (b"2.5", "not a whole number"), (b"", "empty"),
                              (b"9" * 70_000, "bytes, more than")):
        agent_fleet.zk.set(agent_fleet.paths.maxchange, garbage)
        status = _problem(agent_fleet, a, fragment)
        assert status.guard is not None and status.guard.maxchange == 1
        assert status.guard.blocked_removals == 2 and status.members == 4
        assert connect_from(c.ns, overlay_a) == str(c.address)  # held by the guard, still let in
    for garbage, fragment in ((b"soon", "is not a number"), (b"7200", "not between 0 and 3600"),
                              (b"nan", "not between")):
        agent_fleet.zk.set(agent_fleet.paths.interval, garbage)
        _problem(agent_fleet, a, fragment)
    agent_fleet.zk.set(agent_fleet.paths.interval, b"1")
    agent_fleet.zk.set(agent_fleet.paths.maxchange, b"5")
    wait_for(lambda: (s := agent_fleet.status(a)) and s.guard is None and s.members == 2
             and not s.problems, timeout=30, what="good maxchange releases the guard")
    assert connect_from(c.ns, overlay_a) is None


def test_an_agent_restores_its_own_nodes_deleted_by_another_client(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    b = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    # An override equal to what a host already applies is applied (not "pending" forever).
    agent_fleet.set_host_reject_all(a, False)
    wait_for(lambda: agent_fleet.status(a).reject_all_source == "host", what="the override applied")
    agent_fleet.set_host_reject_all(b, True)
    wait_for(lambda: agent_fleet.status(b).deadman == "confirmed", what="reject_all on b")
    zk, paths = agent_fleet.zk, agent_fleet.paths
    overlay_a, overlay_b = agent_fleet.status(a).overlay_ip, agent_fleet.status(b).overlay_ip
    entry = next(n for n in zk.get_children(paths.ip_map) if f"|{overlay_a}|" in n)
    for path in (f"{paths.ip_map}/{entry}", f"{paths.ip_to_id}/{overlay_a}",
                 f"{paths.id_to_ip}/{a.instance_id}", f"{paths.status}/{a.instance_id}"):
        zk.delete(path)
    status = wait_for(lambda: (s := agent_fleet.status(a)) and s.self_heals >= 4 and s, timeout=10,
                      what="a restored its nodes")
    assert status.overlay_ip == overlay_a
    assert zk.get(f"{paths.ip_to_id}/{overlay_a}")[0].decode() == a.instance_id
    assert zk.get(f"{paths.id_to_ip}/{a.instance_id}")[0].decode() == overlay_a
    assert [n for n in zk.get_children(paths.ip_map) if f"|{overlay_a}|" in n]
    assert agent_fleet.status(b).members == 2 and agent_fleet.status(b).guard is None
    assert connect_from(a.ns, overlay_b) == str(a.address)  # b never dropped a
    zk.set(f"{paths.status}/{a.instance_id}", b"garbage")
    wait_for(lambda: _heals(agent_fleet, a) >= 5, timeout=10, what="status rewritten")
    # Its address now claimed by another instance: a conflict to report, never to overwrite.
    zk.set(f"{paths.ip_to_id}/{overlay_a}", b"i-0000000000000beef")
    _problem(agent_fleet, a, f"ip-to-id/{overlay_a} names 'i-0000000000000beef'")
    assert zk.get(f"{paths.ip_to_id}/{overlay_a}")[0] == b"i-0000000000000beef"
    zk.set(f"{paths.ip_to_id}/{overlay_a}", a.instance_id.encode())
    wait_for(lambda: not agent_fleet.status(a).problems, what="the conflict resolved")


def _heals(fleet, host) -> int:
    try:
        return fleet.status(host).self_heals
    except MalformedEntryError:  # the garbage is still there
        return -1
