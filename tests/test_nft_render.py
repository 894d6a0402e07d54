"""The nft backend's pure halves: the script a RuleSet becomes, and JSON read back into rule texts."""

from __future__ import annotations

import json
from ipaddress import IPv4Network

from neti_core.config import NetiConfig, PortRange
from neti_core.firewall.nft_readback import parse_nft_json, rule_spec
from neti_core.firewall.nft_render import nft_rule, render_nft_delta, render_nft_full
from neti_core.firewall.readback import LiveState, compare
from neti_core.members import Side
from neti_core.rules import Rule, build_ruleset, diff
from tests.test_firewall import RS0, RS1, fleet


def test_rules_render_as_nft_statements() -> None:
    assert nft_rule(Rule(source=IPv4Network("10.0.0.0/8"), protocol="tcp", dport=PortRange(22, 22),
                         target="ACCEPT")) == "ip saddr 10.0.0.0/8 tcp dport 22 accept"
    assert nft_rule(Rule(protocol="udp", dport=PortRange(1000, 2000), target="ACCEPT")) == \
        "udp dport 1000-2000 accept"
    assert nft_rule(Rule(match_set="ec2_whitelist", target="ACCEPT")) == "ip saddr @ec2_whitelist accept"
    assert nft_rule(Rule(target="NETI-FAILSAFE")) == "jump NETI-FAILSAFE"


def test_full_script_replaces_the_table_in_one_transaction() -> None:
    lines = render_nft_full(RS0).splitlines()
    assert lines[:3] == ["add table ip neti", "delete table ip neti", "add table ip neti"]
    assert "add rule ip neti NETI-DNAT dnat to ip daddr map @overlay_dnat" in lines
    assert sum(line.count(" : ") for line in lines if "overlay_dnat {" in line
               and line.startswith("add element")) == len(RS0.dnat)


def test_delta_is_element_changes_and_the_rewritten_chain_and_none_when_the_jumps_change() -> None:
    script = render_nft_delta(diff(RS0, RS1)).splitlines()
    assert "delete element ip neti ec2_whitelist { 10.0.0.1 }" in script
    assert "add element ip neti ec2_whitelist { 54.0.0.21 }" in script
    assert "delete element ip neti overlay_dnat { 192.168.0.1 }" in script
    assert "add element ip neti overlay_dnat { 192.168.0.21 : 54.0.0.21 }" in script
    assert script.index("flush chain ip neti NETI-INPUT") < len(script)
    moved = build_ruleset(Side.EC2, fleet(20), NetiConfig(overlay_subnet=IPv4Network("192.168.0.0/24")), True)
    assert render_nft_delta(diff(RS0, moved)) is None  # the OUTPUT jump's subnet changed: full sync


def _json(*objects: dict) -> str:
    return json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *objects]})


def test_read_back_of_unknown_expressions_and_a_foreign_set_type_is_drift() -> None:
    assert rule_spec([{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 7}},
                      {"accept": None}]).startswith('nft [{"match"')
    assert rule_spec([{"counter": {"packets": 0, "bytes": 0}}, {"drop": None}]).startswith("nft ")
    assert rule_spec([{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                 "right": {"range": [1000, 2000]}}}, {"accept": None}]) == \
        "-p tcp -m tcp --dport 1000:2000 -j ACCEPT"
    state = parse_nft_json(_json({"set": {"name": "ec2_whitelist", "type": "ipv4_addr", "flags": ["interval"],
                                          "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}]}}),
                           "ec2_whitelist")
    items = compare(state, RS0).items
    assert items[0] == "ipset ec2_whitelist: type nft ipv4_addr flags ['interval'], expected hash:ip"
    assert parse_nft_json("", "ec2_whitelist") == LiveState()  # no table: everything missing


def test_dnat_elements_count_only_while_the_map_rule_is_there() -> None:
    map_rule = {"dnat": {"addr": {"map": {"key": {"payload": {"protocol": "ip", "field": "daddr"}},
                                          "data": "@overlay_dnat"}}}}
    objects = [{"map": {"name": "overlay_dnat", "type": "ipv4_addr", "map": "ipv4_addr",
                        "elem": [["192.168.0.1", "10.0.0.1"]]}},
               {"chain": {"name": "NETI-DNAT"}}]
    with_rule = parse_nft_json(_json(*objects, {"rule": {"chain": "NETI-DNAT", "expr": [map_rule]}}), "x")
    assert with_rule.chains[("nat", "NETI-DNAT")] == ["-d 192.168.0.1/32 -j DNAT --to-destination 10.0.0.1"]
    assert parse_nft_json(_json(*objects), "x").chains[("nat", "NETI-DNAT")] == []
