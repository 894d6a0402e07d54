"""The nft backend against the real kernel, each test in a fresh namespace: what an operator would
check with ``nft list table ip neti`` and ``nft list ruleset``.

Neti's table holds exactly the RuleSet (member set, overlay map, chains), nothing outside it is
touched, every change is one transaction, drift made with ``nft`` itself is found and repaired, and
a switch from an iptables backend leaves none of that backend's objects behind (and back).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from neti_core.config import PortRange
from neti_core.firewall.base import FirewallApplyError
from neti_core.lab.netns import Namespace
from neti_core.members import Side
from neti_core.rules import build_ruleset
from tests.fixtures.netns import make_backend_in
from tests.test_firewall import CONFIG, FOREIGN, REPO, RS0, RS1, broken, fleet

pytestmark = pytest.mark.netns
FOREIGN_NFT = """table inet othertool {
  set blocked { type ipv4_addr; elements = { 192.0.2.9 } }
  chain input { type filter hook input priority 10; policy accept; ip saddr @blocked drop; }
}
"""


def table(ns: Namespace) -> dict[str, list[dict]]:
    """Neti's table from ``nft -j``, by kind of object."""
    out: dict[str, list[dict]] = {}
    for entry in json.loads(ns.run(["nft", "-j", "list", "table", "ip", "neti"]).stdout)["nftables"]:
        (kind, body), = entry.items()
        out.setdefault(kind, []).append(body)
    return out


def rules_text(ns: Namespace, chain: str) -> list[str]:
    listing = ns.run(["nft", "list", "chain", "ip", "neti", chain]).stdout
    return [line.strip() for line in listing.splitlines()
            if line.strip() and not line.strip().startswith(("chain", "type", "}", "table"))]


def ruleset(ns: Namespace) -> str:
    return ns.run(["nft", "list", "ruleset"]).stdout


def test_apply_installs_the_ruleset_as_one_table_with_the_failsafe_first(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    result = backend.apply(RS0)
    assert result.mode == "full" and backend.describe() == "nft (table ip neti)"
    backend.verify(RS0)
    assert rules_text(fw_ns, "NETI-INPUT") == [
        "jump NETI-FAILSAFE",
        'iifname "lo" accept',
        "tcp flags != syn / fin,syn,rst,ack ct state new drop",
        "ct state established,related accept",
        "ip saddr @ec2_whitelist accept",
        "tcp dport 80 accept",
        "udp dport 80 accept",
        "drop",
    ]
    assert rules_text(fw_ns, "NETI-FAILSAFE") == ["ip saddr 10.99.0.0/16 tcp dport 22 accept"]
    assert rules_text(fw_ns, "INPUT") == ["jump NETI-INPUT"]
    assert rules_text(fw_ns, "OUTPUT") == ["ip daddr 192.168.0.0/16 jump NETI-DNAT"]
    assert rules_text(fw_ns, "NETI-DNAT") == ["dnat to ip daddr map @overlay_dnat"]
    objects = table(fw_ns)
    members = next(s for s in objects["set"] if s["name"] == "ec2_whitelist")
    assert set(members["elem"]) == {str(ip) for ip in RS0.members}
    overlay = dict(map(tuple, next(m for m in objects["map"] if m["name"] == "overlay_dnat")["elem"]))
    assert overlay["192.168.0.3"] == "54.0.0.3" and overlay["192.168.0.4"] == "10.0.0.4"
    assert len(overlay) == len(RS0.dnat)
    # Nothing outside Neti's table: iptables-nft sees no rule, ipset no set.
    assert "NETI" not in fw_ns.run(["iptables-nft-save"]).stdout
    assert fw_ns.run(["ipset", "list", "-n"]).stdout.strip() == ""


def test_other_tables_survive_every_operation_and_flush_restores_the_ruleset(fw_ns: Namespace) -> None:
    fw_ns.run(["iptables-nft-restore", "--noflush"], input=FOREIGN)
    fw_ns.run(["nft", "-f", "-"], input=FOREIGN_NFT)
    before = ruleset(fw_ns)
    backend = make_backend_in("nft", fw_ns)
    steps = (lambda: backend.apply(RS0), lambda: backend.apply(RS1),
             lambda: backend.apply(RS1, full=True), lambda: backend.repair(RS0), lambda: backend.plan(RS1))
    for step in steps:
        step()
        assert ruleset(fw_ns).startswith(before)  # Neti's table is added after, the rest unchanged
    backend.flush()
    assert ruleset(fw_ns) == before
    backend.flush()
    assert ruleset(fw_ns) == before


def test_a_delta_changes_elements_in_place_and_a_full_sync_replaces_the_table(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    backend.apply(RS0)
    handle = table(fw_ns)["table"][0]["handle"]
    result = backend.apply(RS1)
    assert result.mode == "delta"
    assert result.summary == ("ipset ec2_whitelist: +1 -1", "filter NETI-INPUT: rewrite (7 rules)",
                              "nat NETI-DNAT: +1 -1")
    assert table(fw_ns)["table"][0]["handle"] == handle  # elements and one chain, not a reload
    backend.verify(RS1)
    assert backend.apply(RS1).mode == "noop"
    backend.apply(RS1, full=True)
    assert table(fw_ns)["table"][0]["handle"] != handle
    backend.verify(RS1)


def test_drift_made_with_nft_is_reported_and_repaired(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    backend.apply(RS0)
    assert not backend.drift(RS0)
    fw_ns.run(["nft", "-f", "-"], input="\n".join([
        "flush chain ip neti NETI-FAILSAFE",
        "flush chain ip neti INPUT",
        "delete element ip neti overlay_dnat { 192.168.0.4 }",
        "add element ip neti overlay_dnat { 192.168.7.7 : 10.7.7.7 }",
        "delete element ip neti ec2_whitelist { 10.0.0.4 }",
        "add element ip neti ec2_whitelist { 10.6.6.6 }",
        "add chain ip neti OUTPUT { policy drop; }",
    ]) + "\n")
    drift = backend.drift(RS0)
    assert str(drift).splitlines() == [
        "ipset ec2_whitelist: 1 members missing: 10.0.0.4",
        "ipset ec2_whitelist: 1 unexpected members: 10.6.6.6",
        "filter NETI-FAILSAFE: 1 rules missing from the end, first "
        "'-s 10.99.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT'",
        "nat NETI-DNAT: 1 rules missing: -d 192.168.0.4/32 -j DNAT --to-destination 10.0.0.4",
        "nat NETI-DNAT: 1 unexpected rules: -d 192.168.7.7/32 -j DNAT --to-destination 10.7.7.7",
        "filter INPUT: jump missing: '-j NETI-INPUT'",
        "nat OUTPUT: unexpected jump 'nft chain OUTPUT: type nat hook output priority -100 policy drop, "
        "expected type nat hook output priority -100 policy accept'",
    ]
    result = backend.repair(RS0)
    assert result.mode == "repair" and result.drift == drift
    assert not backend.drift(RS0)
    assert rules_text(fw_ns, "INPUT") == ["jump NETI-INPUT"]


def test_a_rule_neti_never_writes_shows_as_drift(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    backend.apply(RS0)
    fw_ns.run(["nft", "insert rule ip neti NETI-INPUT meta mark 7 accept"])
    (line,) = str(backend.drift(RS0)).splitlines()
    assert line.startswith("filter NETI-INPUT: rule 1 is 'nft [{\"match\"")
    backend.repair(RS0)
    assert not backend.drift(RS0)


def test_delta_falls_back_to_a_full_sync_when_the_kernel_changed_behind_its_back(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    backend.apply(RS0)
    fw_ns.run(["nft", "flush", "map", "ip", "neti", "overlay_dnat"])  # the delta's delete cannot match
    result = backend.apply(RS1)
    assert result.mode == "full-after-failed-delta"
    backend.verify(RS1)


def test_a_refused_apply_raises_and_leaves_the_previous_table(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    backend.apply(RS0)
    before = ruleset(fw_ns)
    with pytest.raises(FirewallApplyError):
        backend.apply(broken(RS1))  # a delta, then the fallback full sync: both refused
    assert ruleset(fw_ns) == before
    assert backend.applied is None
    with pytest.raises(FirewallApplyError):
        backend.apply(broken(RS1))
    assert ruleset(fw_ns) == before
    backend.apply(RS1)
    backend.verify(RS1)


def test_plan_prints_the_script_and_leaves_the_kernel_identical(fw_ns: Namespace) -> None:
    backend = make_backend_in("nft", fw_ns)
    empty = ruleset(fw_ns)
    plan = backend.plan(RS0, commands=True)
    assert "ipset ec2_whitelist: missing" in plan
    assert "nft -f input of a full sync (one transaction):" in plan
    assert "    add rule ip neti INPUT jump NETI-INPUT" in plan
    assert ruleset(fw_ns) == empty
    backend.apply(RS0)
    before = ruleset(fw_ns)
    plan = backend.plan(RS1)
    assert "ipset ec2_whitelist: 1 members missing: 54.0.0.21" in plan
    assert ruleset(fw_ns) == before


def test_switching_backends_leaves_no_rules_of_the_previous_one(fw_ns: Namespace) -> None:
    restore = make_backend_in("restore", fw_ns)
    restore.apply(RS0)
    nft = make_backend_in("nft", fw_ns)
    result = nft.apply(RS0)
    assert "iptables-nft: removed 3 NETI chains of the previous backend" in result.summary
    assert "NETI" not in fw_ns.run(["iptables-nft-save"]).stdout
    assert fw_ns.run(["ipset", "list", "-n"]).stdout.strip() == ""
    nft.verify(RS0)
    back = make_backend_in("restore", fw_ns)
    back.apply(RS1)
    back.verify(RS1)
    assert "table ip neti" not in ruleset(fw_ns)
    iptc = make_backend_in("iptc", fw_ns)  # a legacy backend after restore (nft flavour) and nft
    iptc.apply(RS0)
    again = make_backend_in("nft", fw_ns)
    again.apply(RS0)
    assert "NETI" not in fw_ns.run(["iptables-legacy-save"]).stdout
    assert "NETI" not in fw_ns.run(["iptables-nft-save"]).stdout
    again.verify(RS0)
    for backend in (restore, nft, back, iptc, again):
        backend.close()


def test_auto_picks_nft_and_keeps_a_host_whose_neti_chains_are_legacy(
        fw_ns: Namespace, tmp_path: Path) -> None:
    script = tmp_path / "agent_like.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from neti_core.config import NetiConfig\n"
        "from neti_core.firewall.base import make_backend\n"
        "backend = make_backend(NetiConfig(firewall_backend='auto'))\n"
        "print(backend.describe(), '|', backend.detection.native_reason)\n")
    out = fw_ns.run([sys.executable, str(script)]).stdout.strip()
    assert out == "nft (table ip neti) | the kernel has nf_tables and nft is installed"
    iptc = make_backend_in("iptc", fw_ns)
    iptc.apply(build_ruleset(Side.EC2, fleet(3), CONFIG, True))
    out = fw_ns.run([sys.executable, str(script)]).stdout.strip()
    assert out == "iptc (python-iptables, legacy tables) | Neti's chains are in legacy iptables"
    iptc.flush()
    iptc.close()


def test_every_rule_shape_reads_back_as_written(fw_ns: Namespace) -> None:
    """Port ranges, the VPC range on the VPC side and nat_overrides survive the JSON round trip."""
    config = replace(CONFIG, open_ports=(PortRange(80, 80), PortRange(1000, 2000)),
                     nat_overrides={IPv4Address("192.168.0.2"): IPv4Address("203.0.113.9")})
    desired = build_ruleset(Side.VPC, fleet(5), config, True)
    backend = make_backend_in("nft", fw_ns)
    backend.apply(desired)
    backend.verify(desired)
    assert "ip saddr 172.31.0.0/16 accept" in rules_text(fw_ns, "NETI-INPUT")
    assert "tcp dport 1000-2000 accept" in rules_text(fw_ns, "NETI-INPUT")
    overlay = fw_ns.run(["nft", "list", "map", "ip", "neti", "overlay_dnat"]).stdout
    assert "192.168.0.2 : 203.0.113.9" in overlay
