"""The pure rules engine: members + config → RuleSet, its hash, and diffs (no kernel, no root)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neti_core.config import NetiConfig, PortRange
from neti_core.members import Member, Side
from neti_core.rules import (
    DNAT_CHAIN,
    FAILSAFE_CHAIN,
    INPUT_CHAIN,
    Rule,
    RuleSet,
    build_ruleset,
    diff,
)

A = IPv4Address
EC2_A = Member(A("54.1.1.1"), A("10.1.1.1"), A("192.168.0.1"), Side.EC2, "i-0000000a")
EC2_B = Member(A("54.1.1.2"), A("10.1.1.2"), A("192.168.0.2"), Side.EC2)
VPC_C = Member(A("52.2.2.3"), A("172.31.0.3"), A("192.168.0.3"), Side.VPC)
FLEET = [EC2_A, EC2_B, VPC_C]
CONFIG = NetiConfig(ssh_whitelist=(IPv4Network("10.8.0.0/16"), IPv4Network("203.0.113.7/32")),
                    open_ports=(PortRange(80, 80), PortRange(6000, 6010)),
                    vpc_private_range=IPv4Network("172.31.0.0/16"))


def chain(rs: RuleSet, name: str) -> list[str]:
    return [r.spec() for c in rs.filter_chains if c.name == name for r in c.rules]


def test_filter_ips_and_dnat_targets_follow_the_local_side() -> None:
    ec2 = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    assert ec2.members == {A("10.1.1.1"), A("10.1.1.2"), A("52.2.2.3")}
    assert ec2.dnat == ((A("192.168.0.1"), A("10.1.1.1")), (A("192.168.0.2"), A("10.1.1.2")),
                        (A("192.168.0.3"), A("52.2.2.3")))
    vpc = build_ruleset(Side.VPC, FLEET, CONFIG, True)
    assert vpc.members == {A("54.1.1.1"), A("54.1.1.2"), A("172.31.0.3")}
    assert vpc.dnat_map[A("192.168.0.3")] == A("172.31.0.3")
    assert vpc.dnat_map[A("192.168.0.1")] == A("54.1.1.1")


def test_filter_chain_order_ec2_side_with_reject_all() -> None:
    rs = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    assert chain(rs, FAILSAFE_CHAIN) == [
        "-s 10.8.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT",
        "-s 203.0.113.7/32 -p tcp -m tcp --dport 22 -j ACCEPT",
    ]
    assert chain(rs, INPUT_CHAIN) == [
        "-j NETI-FAILSAFE",  # first: the ssh failsafe wins over everything below
        "-i lo -j ACCEPT",
        "-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j DROP",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m set --match-set ec2_whitelist src -j ACCEPT",
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "-p udp -m udp --dport 80 -j ACCEPT",
        "-p tcp -m tcp --dport 6000:6010 -j ACCEPT",
        "-p udp -m udp --dport 6000:6010 -j ACCEPT",
        "-j DROP",
    ]


def test_vpc_side_accepts_the_vpc_range_and_no_drop_without_reject_all() -> None:
    rs = build_ruleset(Side.VPC, FLEET, CONFIG, False)
    rules = chain(rs, INPUT_CHAIN)
    assert rules[-1] == "-s 172.31.0.0/16 -j ACCEPT"
    assert "-j DROP" not in rules
    assert "-s 172.31.0.0/16 -j ACCEPT" not in chain(build_ruleset(Side.EC2, FLEET, CONFIG, False),
                                                    INPUT_CHAIN)


def test_no_vpc_range_configured_means_no_range_rule() -> None:
    rs = build_ruleset(Side.VPC, FLEET, replace(CONFIG, vpc_private_range=None), True)
    assert not any(spec.startswith("-s 172.31") for spec in chain(rs, INPUT_CHAIN))


def test_jumps_are_one_per_builtin_chain_and_the_nat_jump_covers_only_the_overlay() -> None:
    rs = build_ruleset(Side.EC2, FLEET, replace(CONFIG, overlay_subnet=IPv4Network("100.64.0.0/10")), True)
    assert [(j.table, j.chain, j.rule.spec()) for j in rs.jumps] == [
        ("filter", "INPUT", "-j NETI-INPUT"),
        ("nat", "OUTPUT", "-d 100.64.0.0/10 -j NETI-DNAT"),
    ]


def test_nat_overrides_replace_netis_mapping_and_may_add_new_ones() -> None:
    overrides = {A("192.168.0.2"): A("10.9.9.9"), A("192.168.5.5"): A("10.5.5.5")}
    rs = build_ruleset(Side.EC2, FLEET, replace(CONFIG, nat_overrides=overrides), True)
    assert rs.dnat_map[A("192.168.0.2")] == A("10.9.9.9")
    assert rs.dnat_map[A("192.168.5.5")] == A("10.5.5.5")
    assert A("10.1.1.2") in rs.members  # overrides change where we send, not whom we admit
    assert A("10.9.9.9") not in rs.members
    assert rs.dnat_specs.count("-d 192.168.0.2/32 -j DNAT --to-destination 10.9.9.9") == 1
    assert len(rs.dnat) == 4


def test_duplicate_overlay_keeps_one_mapping_deterministically_and_reports_the_other() -> None:
    twin = Member(A("54.1.1.9"), A("10.1.1.9"), EC2_A.overlay, Side.EC2)
    forward = build_ruleset(Side.EC2, [EC2_A, twin], CONFIG, True)
    backward = build_ruleset(Side.EC2, [twin, EC2_A], CONFIG, True)
    assert forward == backward and forward.hash == backward.hash
    assert forward.dnat_map[EC2_A.overlay] == A("10.1.1.1")  # lowest public address wins
    assert forward.members == {A("10.1.1.1"), A("10.1.1.9")}  # both are still let in
    assert [s.member for s in forward.skipped] == [twin.identifier()]


def test_member_with_overlay_outside_the_subnet_is_admitted_but_not_dnated() -> None:
    stray = Member(A("54.1.1.7"), A("10.1.1.7"), A("10.200.0.7"), Side.EC2)
    rs = build_ruleset(Side.EC2, [EC2_A, stray], CONFIG, True)
    assert A("10.1.1.7") in rs.members
    assert A("10.200.0.7") not in rs.dnat_map
    assert "outside 192.168.0.0/16" in rs.skipped[0].reason


@pytest.mark.parametrize("bad", [
    Member("54.1.1.1", A("10.0.0.1"), A("192.168.0.9"), Side.EC2),  # type: ignore[arg-type]
    Member(A("54.1.1.1"), A("10.0.0.1"), "192.168.0.9; rm -rf /", Side.EC2),  # type: ignore[arg-type]
    "54.1.1.1|10.0.0.1|192.168.0.9|0",
    None,
])
def test_unvalidated_members_are_skipped_and_reported_never_rendered(bad: object) -> None:
    rs = build_ruleset(Side.EC2, [EC2_A, bad], CONFIG, True)  # type: ignore[list-item]
    assert rs.members == {A("10.1.1.1")}
    assert len(rs.dnat) == 1
    assert len(rs.skipped) == 1 and "not a validated member" in rs.skipped[0].reason


def test_rule_fields_refuse_text_where_addresses_belong() -> None:
    with pytest.raises(TypeError):
        Rule(target="ACCEPT", source="10.0.0.0/8 -j DROP")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="protocol"):
        Rule(target="ACCEPT", dport=PortRange(22, 22))
    with pytest.raises(ValueError, match="tcp"):
        Rule(target="DROP", protocol="udp", not_syn=True)


def test_hash_is_stable_short_hex_and_tracks_every_programmed_detail() -> None:
    rs = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    assert len(rs.hash) == 16 and int(rs.hash, 16) >= 0
    assert rs.hash == build_ruleset(Side.EC2, list(reversed(FLEET)), CONFIG, True).hash
    variants = [
        build_ruleset(Side.EC2, FLEET, CONFIG, False),
        build_ruleset(Side.VPC, FLEET, CONFIG, True),
        build_ruleset(Side.EC2, FLEET[:2], CONFIG, True),
        build_ruleset(Side.EC2, FLEET, replace(CONFIG, ipset_name="other"), True),
        build_ruleset(Side.EC2, FLEET, replace(CONFIG, open_ports=()), True),
        build_ruleset(Side.EC2, FLEET, replace(CONFIG, nat_overrides={A("192.168.0.1"): A("1.2.3.4")}), True),
    ]
    assert len({rs.hash, *(v.hash for v in variants)}) == 1 + len(variants)


def test_hash_ignores_what_is_not_programmed() -> None:
    with_id = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    without_id = build_ruleset(Side.EC2, [replace(EC2_A, instance_id=None), EC2_B, VPC_C], CONFIG, True)
    assert with_id.hash == without_id.hash
    assert with_id.hash == "db8ac9ef09ec6717"  # pinned: agents of different versions must agree


def test_diff_from_nothing_installs_everything() -> None:
    rs = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    change = diff(None, rs)
    assert change.ipset_full and not change.ipset_add
    assert [c.name for c in change.chains_changed] == [FAILSAFE_CHAIN, INPUT_CHAIN]
    assert change.dnat_add == rs.dnat and change.jumps_add == rs.jumps
    assert not change.empty


def test_diff_of_one_member_leaving_and_one_joining_is_minimal() -> None:
    old = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    joiner = Member(A("52.2.2.4"), A("172.31.0.4"), A("192.168.0.4"), Side.VPC)
    new = build_ruleset(Side.EC2, [EC2_A, VPC_C, joiner], CONFIG, True)
    change = diff(old, new)
    assert change.ipset_add == {A("52.2.2.4")} and change.ipset_del == {A("10.1.1.2")}
    assert change.dnat_add == ((A("192.168.0.4"), A("52.2.2.4")),)
    assert change.dnat_del == ((A("192.168.0.2"), A("10.1.1.2")),)
    assert not change.chains_changed and not change.jumps_add and not change.jumps_del
    assert change.summary() == ["ipset ec2_whitelist: +1 -1", f"nat {DNAT_CHAIN}: +1 -1"]


def test_diff_of_a_reject_all_flip_rewrites_only_the_input_chain() -> None:
    change = diff(build_ruleset(Side.EC2, FLEET, CONFIG, True), build_ruleset(Side.EC2, FLEET, CONFIG, False))
    assert [c.name for c in change.chains_changed] == [INPUT_CHAIN]
    assert not (change.ipset_add or change.ipset_del or change.dnat_add or change.dnat_del)


def test_diff_when_a_member_changes_side_moves_its_dnat_target() -> None:
    moved = replace(EC2_B, side=Side.VPC)
    change = diff(build_ruleset(Side.EC2, FLEET, CONFIG, True),
                  build_ruleset(Side.EC2, [EC2_A, moved, VPC_C], CONFIG, True))
    assert change.dnat_del == ((A("192.168.0.2"), A("10.1.1.2")),)
    assert change.dnat_add == ((A("192.168.0.2"), A("54.1.1.2")),)
    assert change.ipset_add == {A("54.1.1.2")} and change.ipset_del == {A("10.1.1.2")}


def test_diff_of_identical_rulesets_is_empty_and_a_renamed_set_is_a_full_replace() -> None:
    rs = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    assert diff(rs, build_ruleset(Side.EC2, FLEET, CONFIG, True)).empty
    renamed = diff(rs, build_ruleset(Side.EC2, FLEET, replace(CONFIG, ipset_name="neti2"), True))
    assert renamed.ipset_full and [c.name for c in renamed.chains_changed] == [INPUT_CHAIN]


def test_diff_of_a_new_overlay_subnet_moves_the_nat_jump() -> None:
    old = build_ruleset(Side.EC2, FLEET, CONFIG, True)
    new = build_ruleset(Side.EC2, FLEET, replace(CONFIG, overlay_subnet=IPv4Network("192.168.0.0/24")), True)
    change = diff(old, new)
    assert [j.rule.spec() for j in change.jumps_del] == ["-d 192.168.0.0/16 -j NETI-DNAT"]
    assert [j.rule.spec() for j in change.jumps_add] == ["-d 192.168.0.0/24 -j NETI-DNAT"]


addresses = st.integers(min_value=1, max_value=2**24).map(lambda n: A(0x0A000000 + n))
members = st.lists(st.builds(Member, public=st.integers(1, 2**24).map(lambda n: A(0x36000000 + n)),
                             private=addresses,
                             overlay=st.integers(1, 2**16 - 2).map(lambda n: A(0xC0A80000 + n)),
                             side=st.sampled_from(Side)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(members, members, st.sampled_from(Side), st.booleans(), st.booleans())
def test_applying_a_diff_to_the_old_state_gives_exactly_the_new_state(old_members, new_members, side,
                                                                     old_reject, new_reject) -> None:
    old = build_ruleset(side, old_members, CONFIG, old_reject)
    new = build_ruleset(side, new_members, CONFIG, new_reject)
    change = diff(old, new)
    assert (old.members | change.ipset_add) - change.ipset_del == new.members
    assert not change.ipset_add & old.members and change.ipset_del <= old.members
    dnat = dict(old.dnat)
    for overlay, _ in change.dnat_del:
        del dnat[overlay]
    for overlay, target in change.dnat_add:
        assert overlay not in dnat
        dnat[overlay] = target
    assert dnat == new.dnat_map
    assert change.empty == (old == new)
