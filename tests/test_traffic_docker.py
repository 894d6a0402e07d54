"""Neti's nft table beside a Docker-like user of iptables-nft on the same host, with real packets.

Both tables hook the same places and the kernel runs every base chain at a hook: an accept ends
only that chain, a drop ends the packet. So another tool's ACCEPT cannot open what Neti's
reject_all drops, and Neti (reject_all off) does not break the other tool's traffic. ec2a gets
rules shaped like Docker's: a published port (9090 → 7000) DNAT-ed in ``nat DOCKER`` and an
operator-style ``INPUT -p tcp --dport 7000 -j ACCEPT``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from neti_core.lab.simnet import SimNetwork
from tests.fixtures.netns import Probe, probe
from tests.test_traffic import OVERLAY, Fleet, private, public, seen

pytestmark = pytest.mark.netns
PUBLISHED = 9090


def docker_like(address: str) -> str:
    return f"""*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -p tcp -m tcp --dport {PUBLISHED} -j DNAT --to-destination {address}:7000
COMMIT
*filter
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -p tcp -m tcp --dport 7000 -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER
-A DOCKER-USER -j RETURN
COMMIT
"""


@pytest.fixture
def nft_fleet(sim_fleet: SimNetwork) -> Iterator[Fleet]:
    ec2a = sim_fleet["ec2a"]
    ec2a.run(["iptables-nft-restore", "--noflush"], input=docker_like(str(private("ec2a"))))
    fleet = Fleet(sim_fleet, "nft")
    try:
        yield fleet
    finally:
        fleet.flush()
        ec2a.run(["iptables-nft", "-F"])
        ec2a.run(["iptables-nft", "-t", "nat", "-F"])
        ec2a.run(["iptables-nft", "-X"])
        ec2a.run(["iptables-nft", "-t", "nat", "-X"])


def test_another_tables_accept_does_not_bypass_netis_drop(nft_fleet: Fleet) -> None:
    before = nft_fleet.network["ec2a"].run(["iptables-nft-save"]).stdout
    nft_fleet.apply(reject_all=True)
    results = probe(nft_fleet.network, [
        Probe("outsider", public("ec2a"), 7000),       # the other table ACCEPTs port 7000
        Probe("outsider", public("ec2a"), PUBLISHED),  # and DNATs the published port to it
        Probe("vpc1", public("ec2a"), 7000),           # members still get in
        Probe("vpc1", public("ec2a"), PUBLISHED),
    ])
    assert results == ["timeout", "timeout", seen("ec2a", "vpc1", via="public"),
                       seen("ec2a", "vpc1", via="public")]
    after = nft_fleet.network["ec2a"].run(["iptables-nft-save"]).stdout
    strip = [line for line in before.splitlines() if not line.startswith(("#", ":"))]
    assert [line for line in after.splitlines() if not line.startswith(("#", ":"))] == strip


def test_with_reject_all_off_the_other_tools_traffic_and_netis_overlay_both_work(nft_fleet: Fleet) -> None:
    nft_fleet.apply(reject_all=False)
    results = probe(nft_fleet.network, [
        Probe("outsider", public("ec2a"), PUBLISHED),  # the published port, through both tables
        Probe("outsider", public("ec2a"), 7000),
        Probe("ec2a", OVERLAY["ec2b"], 7000),          # Neti's overlay DNAT next to Docker's nat
        Probe("ec2a", OVERLAY["vpc1"], 7000),
    ])
    assert results == [
        seen("ec2a", "outsider", via="private"),
        seen("ec2a", "outsider", via="private"),
        seen("ec2b", "ec2a", via="private"),
        seen("vpc1", "ec2a", via="public"),
    ]
