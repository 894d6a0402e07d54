"""Real packets through the rules: each host of an AWS-shaped namespace network gets its own Neti
rules from a real backend, then connections prove who gets in and where overlay IPs lead.

Hosts (tests/fixtures/netns.py): ec2a and ec2b on the EC2 side, vpc1 on the VPC side (members);
vpcx in the VPC's private range but not a member; an outsider on the internet. Every host listens
on 22, 7000 and 8080 and answers "<name> <source address it saw>". A dropped SYN shows as a
timeout after CONNECT_TIMEOUT.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from neti_core.config import NetiConfig, PortRange
from neti_core.lab.simnet import SimNetwork
from neti_core.members import Member
from neti_core.rules import build_ruleset
from tests.fixtures.netns import FLEET_HOSTS, Probe, make_backend_in, probe

pytestmark = pytest.mark.netns

OVERLAY = {"ec2a": IPv4Address("192.168.0.11"), "ec2b": IPv4Address("192.168.0.12"),
           "vpc1": IPv4Address("192.168.0.21")}
MEMBERS = {h.name: Member(h.public, h.private, OVERLAY[h.name], h.side) for h in FLEET_HOSTS
           if h.name in OVERLAY}
HOST = {h.name: h for h in FLEET_HOSTS}
BASE = NetiConfig(
    ssh_whitelist=(IPv4Network("203.0.113.50/32"),),  # the outsider's address only
    open_ports=(PortRange(8080, 8080),),
    vpc_private_range=IPv4Network("10.20.0.0/16"),
)
BACKENDS = ["restore", "iptc", "nft"]


class Fleet:
    """Applies each member host's rules with one backend kind; flushes them all at the end."""

    def __init__(self, network: SimNetwork, kind: str) -> None:
        self.network = network
        self.backends = {name: make_backend_in(kind, network[name]) for name in MEMBERS}

    def apply(self, *, reject_all: bool, members: dict[str, Member] | None = None,
              configs: dict[str, NetiConfig] | None = None) -> None:
        fleet = list((members or MEMBERS).values())
        for name, backend in self.backends.items():
            config = (configs or {}).get(name, BASE)
            desired = build_ruleset(MEMBERS[name].side, fleet, config, reject_all)
            backend.apply(desired)
            backend.verify(desired)

    def flush(self) -> None:
        for backend in self.backends.values():
            backend.flush()
            backend.close()


@pytest.fixture(params=BACKENDS)
def fleet(request: pytest.FixtureRequest, sim_fleet: SimNetwork) -> Iterator[Fleet]:
    fleet = Fleet(sim_fleet, request.param)
    try:
        yield fleet
    finally:
        fleet.flush()


def public(name: str) -> IPv4Address:
    return HOST[name].public


def private(name: str) -> IPv4Address:
    return HOST[name].private


def seen(name: str, source: str, *, via: str) -> str:
    """The answer of ``name`` when the connection arrived from ``source``'s ``via`` address."""
    return f"{name} {getattr(HOST[source], via)}"


def test_members_connect_and_strangers_are_dropped_with_reject_all(fleet: Fleet) -> None:
    fleet.apply(reject_all=True)
    results = probe(fleet.network, [
        Probe("ec2a", private("ec2b"), 7000),    # same side: private addresses
        Probe("vpc1", public("ec2a"), 7000),     # across: public addresses (NAT in the router)
        Probe("ec2a", public("vpc1"), 7000),
        Probe("outsider", public("ec2a"), 7000),  # not a member
        Probe("vpcx", public("ec2a"), 7000),     # a VPC host that is not a member, on the EC2 side
        Probe("vpcx", private("vpc1"), 7000),    # ... but on the VPC side the VPC range is let in
    ])
    assert results == [
        seen("ec2b", "ec2a", via="private"),
        seen("ec2a", "vpc1", via="public"),
        seen("vpc1", "ec2a", via="public"),
        "timeout",
        "timeout",
        seen("vpc1", "vpcx", via="private"),
    ]


def test_outsider_is_accepted_when_reject_all_turns_off(fleet: Fleet) -> None:
    fleet.apply(reject_all=True)
    fleet.apply(reject_all=False)  # a delta on every host
    results = probe(fleet.network, [Probe("outsider", public("ec2a"), 7000),
                                    Probe("outsider", public("vpc1"), 7000)])
    assert results == [seen("ec2a", "outsider", via="private"), seen("vpc1", "outsider", via="private")]


def test_ssh_whitelist_and_open_ports_get_through_reject_all(fleet: Fleet) -> None:
    fleet.apply(reject_all=True)
    results = probe(fleet.network, [
        Probe("outsider", public("ec2a"), 22),    # whitelisted source, ssh port
        Probe("outsider", public("vpc1"), 8080),  # open port: anyone
        Probe("vpcx", public("ec2a"), 8080),
        Probe("vpcx", public("ec2a"), 22),        # ssh from a source not on the whitelist
    ])
    assert results == [
        seen("ec2a", "outsider", via="private"),
        seen("vpc1", "outsider", via="private"),
        seen("ec2a", "vpcx", via="public"),
        "timeout",
    ]


def test_overlay_ip_reaches_the_member_by_private_address_on_the_same_side_public_across(
        fleet: Fleet) -> None:
    fleet.apply(reject_all=True)
    results = probe(fleet.network, [
        Probe("ec2a", OVERLAY["ec2b"], 7000),
        Probe("vpc1", OVERLAY["ec2a"], 7000),
        Probe("ec2b", OVERLAY["vpc1"], 7000),
        Probe("ec2a", OVERLAY["ec2a"], 7000),  # a host's own overlay IP leads to itself
    ])
    assert results == [
        # DNAT to ec2b's private address: the packet stays on the EC2 segment, so ec2b sees
        # ec2a's private address (via the public address it would come back NAT-ed).
        seen("ec2b", "ec2a", via="private"),
        seen("ec2a", "vpc1", via="public"),
        seen("vpc1", "ec2b", via="public"),
        "ec2a 10.10.0.11",
    ]


def test_nat_override_wins_over_netis_own_mapping(fleet: Fleet) -> None:
    overridden = replace(BASE, nat_overrides={OVERLAY["ec2b"]: public("ec2a")})
    fleet.apply(reject_all=True, configs={"vpc1": overridden})
    results = probe(fleet.network, [Probe("vpc1", OVERLAY["ec2b"], 7000),
                                    Probe("ec2a", OVERLAY["ec2b"], 7000)])
    assert results == [seen("ec2a", "vpc1", via="public"), seen("ec2b", "ec2a", via="private")]


def test_a_member_that_leaves_is_dropped_after_the_delta(fleet: Fleet) -> None:
    fleet.apply(reject_all=True)
    assert probe(fleet.network, [Probe("vpc1", public("ec2a"), 7000)]) == [
        seen("ec2a", "vpc1", via="public")]
    fleet.apply(reject_all=True, members={k: v for k, v in MEMBERS.items() if k != "vpc1"})
    assert probe(fleet.network, [Probe("vpc1", public("ec2a"), 7000),
                                 Probe("ec2b", private("ec2a"), 7000)]) == [
        "timeout", seen("ec2a", "ec2b", via="private")]


def test_without_neti_private_subnets_stay_apart_and_public_addresses_reach_everyone(
        sim_fleet: SimNetwork) -> None:
    """The simulated network itself, as DESIGN.md's lab describes it (no Neti rules loaded)."""
    results = probe(sim_fleet, [Probe("ec2a", private("vpc1"), 7000),
                                Probe("outsider", private("ec2a"), 7000),
                                Probe("outsider", public("ec2a"), 7000)])
    assert results == ["timeout", "timeout", seen("ec2a", "outsider", via="private")]
