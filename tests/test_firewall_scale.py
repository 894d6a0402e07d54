"""10,000 members through each kernel backend: correct at fleet size, and fast enough to resync often."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from neti_core.config import NetiConfig
from neti_core.lab.netns import Namespace
from neti_core.members import Member, Side
from neti_core.rules import build_ruleset
from tests.fixtures.netns import make_backend_in

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def fleet(count: int, first: int = 0) -> list[Member]:
    return [Member(IPv4Address(0x36000000 + i), IPv4Address(0x0A000000 + i), IPv4Address(0xC0A80001 + i),
                   Side.EC2 if i % 2 else Side.VPC) for i in range(first, first + count)]


@pytest.mark.parametrize("kind", ["restore", "iptc"])
def test_ten_thousand_members_apply_verify_delta_and_drift(fw_ns: Namespace, kind: str) -> None:
    rs0 = build_ruleset(Side.EC2, fleet(10_000), NetiConfig(), True)
    rs1 = build_ruleset(Side.EC2, fleet(10_000, first=1), NetiConfig(), True)
    backend = make_backend_in(kind, fw_ns)
    assert backend.apply(rs0).mode == "full"
    backend.verify(rs0)
    result = backend.apply(rs1)
    assert result.mode == "delta" and result.summary == ("ipset ec2_whitelist: +1 -1", "nat NETI-DNAT: +1 -1")
    assert not backend.drift(rs1)  # its speed (goal 100 ms at 10k) is bench/apply.py's to report
    fw_ns.run(["ipset", "del", "ec2_whitelist", "10.0.39.15"])
    assert str(backend.drift(rs1)) == "ipset ec2_whitelist: 1 members missing: 10.0.39.15"
    backend.flush()
    assert "NETI" not in fw_ns.run([f"iptables-{'nft' if kind == 'restore' else 'legacy'}-save"]).stdout
