"""A RuleSet as an ``nft -f`` script for Neti's own nftables table (pure, no I/O).

The table (``table ip neti``) holds everything Neti programs and nothing else:

* the members as a set named like the ipset (``ip saddr @ec2_whitelist accept``);
* overlay → DNAT target as a map, used by one rule: ``dnat to ip daddr map @overlay_dnat``, so a
  new connection costs one hash lookup wherever the member is in a 10,000-entry fleet (the
  iptables DNAT chain is a list walked rule by rule);
* the same filter chains as the iptables backends (``NETI-FAILSAFE``, ``NETI-INPUT``), reached from
  two base chains of the table: ``INPUT`` (filter hook input) and ``OUTPUT`` (nat hook output),
  which play the part of the jumps from the built-in iptables chains.

A full sync is ``add table; delete table; add table …`` in one script, and ``nft -f`` applies a
script as one transaction: the old table is replaced whole or not at all, with no window in which
new rules stand over an old set. A delta is element adds/deletes plus any rewritten chain, in one
transaction too. Every value comes from a validated :class:`Rule` field (addresses are
``IPv4Address``/``IPv4Network`` objects, ports ints), so nothing from ZooKeeper reaches the script
as free text.
"""

from __future__ import annotations

from collections.abc import Iterable

from neti_core.rules import DNAT_CHAIN, FILTER, NAT, Rule, RuleSet, RuleSetDiff

TABLE = "neti"
FAMILY = "ip"
DNAT_MAP = "overlay_dnat"
# Base chain name → (iptables table it stands for, nft type, hook, priority). Priority 0 is
# "filter" and -100 "dstnat": the slots iptables-nft uses for the same hooks.
BASE_CHAINS = {
    "INPUT": (FILTER, "filter", "input", 0),
    "OUTPUT": (NAT, "nat", "output", -100),
}
_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}
_ELEMENTS_PER_LINE = 2000  # keeps each command line well under nft's parser limits


def nft_rule(rule: Rule) -> str:
    """One Rule as an nft rule body; the match order does not matter to read-back."""
    parts: list[str] = []
    if rule.source is not None:
        parts.append(f"ip saddr {rule.source}")
    if rule.destination is not None:
        parts.append(f"ip daddr {rule.destination}")
    if rule.in_interface is not None:
        parts.append(f'iifname "{rule.in_interface}"')
    if rule.protocol is not None:
        if rule.not_syn:
            parts.append("tcp flags & (fin|syn|rst|ack) != syn")
        if rule.dport is not None:
            ports = rule.dport
            text = str(ports.first) if ports.first == ports.last else f"{ports.first}-{ports.last}"
            parts.append(f"{rule.protocol} dport {text}")
        if not rule.not_syn and rule.dport is None:
            parts.append(f"meta l4proto {rule.protocol}")
    if rule.ctstate is not None:
        parts.append(f"ct state {rule.ctstate.lower()}")
    if rule.match_set is not None:
        parts.append(f"ip saddr @{rule.match_set}")
    if rule.to_destination is not None:
        parts.append(f"dnat to {rule.to_destination}")
    else:
        parts.append(_VERDICTS.get(rule.target) or f"jump {rule.target}")
    return " ".join(parts)


def _elements(command: str, name: str, items: list[str]) -> list[str]:
    where = f"{FAMILY} {TABLE} {name}"
    return [f"{command} element {where} {{ {', '.join(items[i:i + _ELEMENTS_PER_LINE])} }}"
            for i in range(0, len(items), _ELEMENTS_PER_LINE)]


def _chain_rules(name: str, rules: Iterable[Rule]) -> list[str]:
    return [f"add rule {FAMILY} {TABLE} {name} {nft_rule(rule)}" for rule in rules]


def _base_chain_rules(desired: RuleSet) -> dict[str, list[Rule]]:
    wanted: dict[str, list[Rule]] = {name: [] for name in BASE_CHAINS}
    for jump in desired.jumps:
        wanted[jump.chain].append(jump.rule)
    return wanted


def _dnat_elements(desired: RuleSet) -> list[str]:
    """``overlay : target`` for every DNAT entry, cut from the RuleSet's cached canonical texts.

    Formatting 20,000 IPv4Address objects costs 40-60 ms at 10,000 members; two C-level replaces
    over the cached ``-d A/32 -j DNAT --to-destination B`` lines cost about one.
    """
    joined = "\n".join(desired.dnat_specs)
    if not joined:
        return []
    return joined.replace("-d ", "").replace("/32 -j DNAT --to-destination ", " : ").split("\n")


def render_nft_full(desired: RuleSet) -> str:
    """The whole table, replacing whatever Neti's table holds now, as one transaction."""
    where = f"{FAMILY} {TABLE}"
    out = [f"add table {where}", f"delete table {where}", f"add table {where}",
           f"add set {where} {desired.ipset_name} {{ type ipv4_addr; }}",
           f"add map {where} {DNAT_MAP} {{ type ipv4_addr : ipv4_addr; }}"]
    out += _elements("add", desired.ipset_name, list(desired.member_strings))  # order: irrelevant
    out += _elements("add", DNAT_MAP, _dnat_elements(desired))
    for name, (_table, kind, hook, priority) in BASE_CHAINS.items():
        out.append(f"add chain {where} {name} {{ type {kind} hook {hook} priority {priority}; "
                   f"policy accept; }}")
    out += [f"add chain {where} {chain.name}" for chain in desired.filter_chains]
    out.append(f"add chain {where} {DNAT_CHAIN}")
    for name, rules in _base_chain_rules(desired).items():
        out += _chain_rules(name, rules)
    for chain in desired.filter_chains:
        out += _chain_rules(chain.name, chain.rules)
    out.append(f"add rule {where} {DNAT_CHAIN} dnat to ip daddr map @{DNAT_MAP}")
    return "\n".join(out) + "\n"


def render_nft_delta(change: RuleSetDiff) -> str | None:
    """Element adds/deletes and rewritten chains as one script; None when only a full sync fits.

    Deletes come first so an overlay IP that moves to a new target is re-added in the same
    transaction. A delete of an element the kernel does not hold makes nft refuse the whole
    script (nothing applied), which the caller turns into a full sync.
    """
    if change.ipset_full or change.jumps_add or change.jumps_del:
        return None
    new, where = change.new, f"{FAMILY} {TABLE}"
    out: list[str] = []
    out += _elements("delete", new.ipset_name, sorted(map(str, change.ipset_del)))
    out += _elements("add", new.ipset_name, sorted(map(str, change.ipset_add)))
    out += _elements("delete", DNAT_MAP, [str(overlay) for overlay, _ in change.dnat_del])
    out += _elements("add", DNAT_MAP, [f"{overlay} : {target}" for overlay, target in change.dnat_add])
    for chain in change.chains_changed:
        out += [f"add chain {where} {chain.name}", f"flush chain {where} {chain.name}"]
        out += _chain_rules(chain.name, chain.rules)
    out += [f"delete chain {where} {name}" for _table, name in change.chains_removed]
    return "\n".join(out) + "\n" if out else ""


def render_nft_flush() -> str:
    """Removes Neti's table (and only it); harmless when it is absent."""
    where = f"{FAMILY} {TABLE}"
    return f"add table {where}\ndelete table {where}\n"
