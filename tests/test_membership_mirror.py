"""The bucketed membership mirror with real agents (docs/membership.md): a mixed fleet with clients
that only know ``ip-map``, session expiry, and a reconnect that missed changes."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address

import pytest
from kazoo.client import KazooClient

from neti_core.members import Member, Side, format_party_entry, parse_party
from neti_core.party.mirror import MirroredParty
from tests.fixtures.agent import connect_from, wait_for

pytestmark = pytest.mark.netns


def _client(agent_fleet) -> KazooClient:
    host, port = agent_fleet.zk_target
    client = KazooClient(hosts=f"{host}:{port}", timeout=10)
    client.start(timeout=15)
    return client


def _ipset(host) -> str:
    return host.host.shell("ipset", "save").stdout


def _mirror_names(agent_fleet) -> set[str]:
    root = agent_fleet.paths.members
    return {name for bucket in agent_fleet.zk.get_children(root)
            for name in agent_fleet.zk.get_children(f"{root}/{bucket}")}


def test_a_mixed_fleet_converges_both_ways(agent_fleet):
    v = agent_fleet.add(Side.VPC)
    outsider = agent_fleet.add_outsider("old")
    wait_for(lambda: agent_fleet.converged(members=1), what="converged")
    agent_fleet.set_host_reject_all(v, True)
    wait_for(lambda: (s := agent_fleet.status(v)) and s.reject_all and s.deadman == "confirmed",
             timeout=30, what="reject_all applied and confirmed")
    assert connect_from(outsider.name, v.public) is None  # not a member: dropped

    # An older agent writes only ip-map: the outsider joins as an EC2 host (public = its address).
    old_agent = _client(agent_fleet)
    legacy = Member(outsider.address, IPv4Address("10.250.0.9"), IPv4Address("192.168.250.9"), Side.EC2)
    entry = format_party_entry(uuid.uuid4().hex, legacy)
    old_agent.create(f"{agent_fleet.paths.ip_map}/{entry}", ephemeral=True)
    try:
        wait_for(lambda: agent_fleet.converged(members=2), what="the ip-map-only member taken in")
        assert connect_from(outsider.name, v.public) == str(outsider.address)
        assert entry not in _mirror_names(agent_fleet)  # it really exists only in ip-map
        # The other way: the old client reads ip-map and finds the new agent there, well-formed.
        seen = parse_party(old_agent.get_children(agent_fleet.paths.ip_map))
        assert not seen.malformed
        assert str(agent_fleet.status(v).overlay_ip) in {str(m.overlay) for m in seen.members}
    finally:
        old_agent.stop()
        old_agent.close()
    # Its session is gone: the member leaves the new agent's rules after the removal grace.
    wait_for(lambda: agent_fleet.converged(members=1), what="the old agent's leave applied")
    assert connect_from(outsider.name, v.public) is None


def test_session_expiry_removes_a_member_everywhere(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    b = agent_fleet.add(Side.EC2)
    c = agent_fleet.add(Side.VPC)
    wait_for(lambda: agent_fleet.converged(members=3), what="converged")
    a_overlay = agent_fleet.status(a).overlay_ip
    assert any(a_overlay in name for name in _mirror_names(agent_fleet))
    cut = ["-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP"]
    a.host.shell("iptables", "-w", "-I", "OUTPUT", *cut)
    try:
        wait_for(lambda: agent_fleet.status(a) is None, timeout=30, what="a's session expired")
        # ZooKeeper removed both of a's entries, and every other agent dropped a.
        assert not any(a_overlay in name for name in agent_fleet.zk.get_children(agent_fleet.paths.ip_map))
        assert not any(a_overlay in name for name in _mirror_names(agent_fleet))
        wait_for(lambda: agent_fleet.converged([b, c], members=2), what="b and c dropped a")
        assert str(a.address) not in _ipset(b)
        assert str(a.public) not in _ipset(c)
        # No new single point of failure: a was the first agent (it made the buckets) and is gone,
        # and a join still reaches everyone.
        d = agent_fleet.add(Side.VPC)
        wait_for(lambda: agent_fleet.converged([b, c, d], members=3), what="b, c and d see d's join")
    finally:
        a.host.shell("iptables", "-w", "-D", "OUTPUT", *cut)


def test_an_agent_that_reconnects_after_missing_changes_catches_up_exactly(agent_fleet):
    # Quiet enough for kazoo to notice the cut (it pings after a third of the session timeout
    # without traffic), long enough for the session to outlive it.
    a = agent_fleet.add(Side.EC2, zk_session_timeout_seconds=15, resync_seconds=30)
    writer = _client(agent_fleet)
    stay, go, late = (Member(IPv4Address(f"198.51.100.{200 + n}"), IPv4Address(f"10.0.9.{n}"),
                             IPv4Address(f"192.168.9.{n}"), Side.EC2) for n in (1, 2, 3))
    parties = {m: MirroredParty(writer, agent_fleet.paths, m) for m in (stay, go, late)}
    try:
        parties[stay].join()
        parties[go].join()
        wait_for(lambda: agent_fleet.converged(members=3), what="a sees stay and go")
        owner = agent_fleet.zk.exists(f"{agent_fleet.paths.status}/{a.instance_id}").ephemeralOwner
        cut = ["-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP"]
        a.host.shell("iptables", "-w", "-I", "OUTPUT", *cut)
        try:
            parties[go].leave()   # a misses a leave ...
            parties[late].join()  # ... and a join, in a bucket of its own or not
            # Long enough for kazoo to drop the connection (2/3 of the session timeout), short
            # enough for the session to survive: a reconnects into the same session.
            wait_for(lambda: "ZooKeeper connection lost" in agent_fleet.log(a), timeout=30,
                     what="a noticed the connection was lost:\n" + agent_fleet.log(a)[-3000:])
        finally:
            a.host.shell("iptables", "-w", "-D", "OUTPUT", *cut)
        wait_for(lambda: agent_fleet.converged(members=3), timeout=40, what="a caught up")
        assert agent_fleet.zk.exists(f"{agent_fleet.paths.status}/{a.instance_id}").ephemeralOwner == owner
        rules = _ipset(a)
        assert "10.0.9.3" in rules and "10.0.9.1" in rules and "10.0.9.2" not in rules
    finally:
        writer.stop()
        writer.close()
