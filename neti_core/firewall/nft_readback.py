"""Neti's nftables table, read back as JSON (``nft -j list table ip neti``), as a LiveState.

Each rule's expressions are translated back into a :class:`Rule` and printed with
:meth:`Rule.spec`, the same canonical text the iptables backends read back, so one comparison
(:func:`neti_core.firewall.readback.compare`) and the same drift messages serve every backend. An
expression Neti never writes is kept as ``nft <json>``: it can match no wanted rule, so it shows
up as drift rather than being ignored. The base chains stand for the jumps from the built-in
iptables chains; a base chain with another hook, priority or policy shows as an unexpected jump.
The DNAT map's elements appear as one DNAT "rule" per overlay IP while the DNAT chain holds the
map rule; without that rule no element is in force, and none is shown.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from typing import Any

from neti_core.confvalues import PortRange
from neti_core.firewall.nft_render import BASE_CHAINS, DNAT_MAP
from neti_core.firewall.readback import LiveState
from neti_core.rules import DNAT_CHAIN, FILTER, NAT, Rule

_CT_ORDER = ("invalid", "new", "related", "established", "untracked")
_VERDICT_TARGETS = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN"}
_DNAT_RULE = [{"dnat": {"addr": {"map": {"key": {"payload": {"protocol": "ip", "field": "daddr"}},
                                         "data": f"@{DNAT_MAP}"}}}}]


class _Unknown(Exception):
    """An expression Neti does not write."""


def _network(value: Any) -> IPv4Network:
    if isinstance(value, str):
        return IPv4Network(f"{value}/32")
    if isinstance(value, dict) and "prefix" in value:
        return IPv4Network(f"{value['prefix']['addr']}/{value['prefix']['len']}")
    raise _Unknown


def _ports(value: Any) -> PortRange:
    if isinstance(value, int):
        return PortRange(value, value)
    if isinstance(value, dict) and "range" in value:
        first, last = value["range"]
        return PortRange(int(first), int(last))
    raise _Unknown


def _ctstate(value: Any) -> str:
    states = [value] if isinstance(value, str) else value
    if not isinstance(states, list) or not all(s in _CT_ORDER for s in states):
        raise _Unknown
    return ",".join(s.upper() for s in _CT_ORDER if s in states)


def _match(match: dict[str, Any], fields: dict[str, Any]) -> None:
    op, left, right = match.get("op"), match.get("left"), match.get("right")
    payload = left.get("payload", {}) if isinstance(left, dict) else {}
    key = (payload.get("protocol"), payload.get("field"))
    if op == "!=" and isinstance(left, dict) and "&" in left:
        flags = left["&"]
        if flags == [{"payload": {"protocol": "tcp", "field": "flags"}}, ["fin", "syn", "rst", "ack"]] \
                and right == "syn":
            fields.update(protocol="tcp", not_syn=True)
            return
        raise _Unknown
    if op == "in" and left == {"ct": {"key": "state"}}:
        fields["ctstate"] = _ctstate(right)
    elif op != "==":
        raise _Unknown
    elif key == ("ip", "saddr") and isinstance(right, str) and right.startswith("@"):
        fields["match_set"] = right[1:]
    elif key == ("ip", "saddr"):
        fields["source"] = _network(right)
    elif key == ("ip", "daddr"):
        fields["destination"] = _network(right)
    elif key[0] in ("tcp", "udp") and key[1] == "dport":
        fields.update(protocol=key[0], dport=_ports(right))
    elif left == {"meta": {"key": "iifname"}} and isinstance(right, str):
        fields["in_interface"] = right
    elif left == {"meta": {"key": "l4proto"}} and right in ("tcp", "udp"):
        fields["protocol"] = right
    else:
        raise _Unknown


def rule_spec(expressions: list[dict[str, Any]]) -> str:
    """The iptables-save text of the Rule these expressions implement, or ``nft <json>``."""
    fields: dict[str, Any] = {}
    try:
        *matches, verdict = expressions
        for expression in matches:
            if set(expression) != {"match"}:
                raise _Unknown
            _match(expression["match"], fields)
        (name, value), = verdict.items()
        if name in _VERDICT_TARGETS and value is None:
            fields["target"] = _VERDICT_TARGETS[name]
        elif name == "jump" and isinstance(value, dict):
            fields["target"] = value["target"]
        else:
            raise _Unknown
        return Rule(**fields).spec()
    except (_Unknown, ValueError, TypeError, KeyError, AttributeError):
        return "nft " + json.dumps(expressions, sort_keys=True, separators=(",", ":"))


def _base_chain_problem(chain: dict[str, Any]) -> str | None:
    """None when a base chain is hooked as Neti declares it, else a line naming what it is."""
    _table, kind, hook, priority = BASE_CHAINS[chain["name"]]
    got = (chain.get("type"), chain.get("hook"), chain.get("prio"), chain.get("policy"))
    if got == (kind, hook, priority, "accept"):
        return None
    return (f"nft chain {chain['name']}: type {got[0]} hook {got[1]} priority {got[2]} policy {got[3]}, "
            f"expected type {kind} hook {hook} priority {priority} policy accept")


def _add_set(state: LiveState, entry: dict[str, Any]) -> None:
    state.sets = (entry["name"],)
    plain = entry.get("type") == "ipv4_addr" and not entry.get("flags")
    state.ipset_type = "hash:ip" if plain else f"nft {entry.get('type')} flags {entry.get('flags')}"
    state.ipset = frozenset(e if isinstance(e, str) else json.dumps(e, sort_keys=True)
                            for e in entry.get("elem", ()))


def _dnat_specs(entry: dict[str, Any] | None) -> list[str]:
    if entry is None:
        return []
    specs = []
    for element in entry.get("elem", ()):
        if isinstance(element, list) and len(element) == 2 and all(isinstance(v, str) for v in element):
            # nft prints canonical dotted quads, the text the wanted specs hold.
            specs.append(f"-d {element[0]}/32 -j DNAT --to-destination {element[1]}")
        else:
            specs.append("nft map element " + json.dumps(element, sort_keys=True))
    return specs


def parse_nft_json(text: str, ipset_name: str) -> LiveState:
    """LiveState of Neti's table from ``nft -j list table ip neti`` output ('' = no table)."""
    state = LiveState()
    if not text.strip():
        return state
    objects = [next(iter(o.items())) for o in json.loads(text).get("nftables", ())]
    chains = {body["name"]: body for kind, body in objects if kind == "chain"}
    rules: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in chains}
    dnat_map = None
    for kind, body in objects:
        if kind == "rule":
            rules.setdefault(body["chain"], []).append(body["expr"])
        elif kind == "set" and body.get("name") == ipset_name:
            _add_set(state, body)
        elif kind == "map" and body.get("name") == DNAT_MAP:
            dnat_map = body
    for name, chain in chains.items():
        if name in BASE_CHAINS:
            table = BASE_CHAINS[name][0]
            problem = _base_chain_problem(chain)
            specs = [rule_spec(expressions) for expressions in rules[name]]
            state.jumps[(table, name)] = [problem, *specs] if problem else specs
        elif name == DNAT_CHAIN:
            body = rules[name]
            state.chains[(NAT, name)] = (_dnat_specs(dnat_map) if body == [_DNAT_RULE] else
                                         [rule_spec(expressions) for expressions in body])
        else:
            state.chains[(FILTER, name)] = [rule_spec(expressions) for expressions in rules[name]]
    return state
