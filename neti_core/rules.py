"""The desired firewall state as a pure value: fleet snapshot + config → :class:`RuleSet`.

Nothing here touches the kernel, ZooKeeper or the clock, so it can be tested exhaustively and the
agent can compute, hash, diff and print a RuleSet without privileges (DESIGN.md "Firewall rules").

For a host on side S and every member M, M's *filter IP* (the address its packets arrive from) and
its *DNAT target* are M.private when M is on S and M.public otherwise. The RuleSet holds:

* the ipset content: every member's filter IP;
* Neti's filter chains: ``NETI-FAILSAFE`` (the ssh whitelist) reached first from ``NETI-INPUT``,
  which holds loopback, the non-SYN guard, established/related, the member set, ``open_ports``,
  the VPC range on the VPC side and, with reject_all, the final DROP;
* the nat DNAT map (overlay IP → DNAT target), ``nat_overrides`` replacing Neti's own mapping;
* the one jump per built-in chain that leads into Neti's chains (``INPUT``, and ``OUTPUT`` in nat
  restricted to the overlay subnet so non-overlay traffic never walks the DNAT chain).

Rules are structured values; :meth:`Rule.spec` renders the exact text ``iptables-save`` prints for
them on both nft and legacy iptables, which is what read-back compares against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network

from neti_core.config import NetiConfig, PortRange
from neti_core.members import Member, Side

FILTER = "filter"
NAT = "nat"
CHAIN_PREFIX = "NETI-"
INPUT_CHAIN = "NETI-INPUT"
FAILSAFE_CHAIN = "NETI-FAILSAFE"
DNAT_CHAIN = "NETI-DNAT"
SSH_PORT = PortRange(22, 22)
STAGING_SUFFIX = "-stage"
# TCP flags iptables-save prints for "! --syn".
_SYN_FLAGS = ("FIN,SYN,RST,ACK", "SYN")


@dataclass(frozen=True, slots=True)
class Rule:
    """One iptables rule of Neti's, as fields rather than text so no input can inject options.

    Only the matches Neti needs exist; :meth:`spec` prints them in ``iptables-save``'s own order.
    """

    target: str
    source: IPv4Network | None = None
    destination: IPv4Network | None = None
    in_interface: str | None = None
    protocol: str | None = None  # "tcp" or "udp"; always paired with a port or the SYN guard
    not_syn: bool = False  # tcp ! --syn (with ctstate NEW: the "new non-SYN TCP" guard)
    dport: PortRange | None = None
    ctstate: str | None = None
    match_set: str | None = None  # ipset name, matched on the source address
    to_destination: IPv4Address | None = None  # DNAT target

    def __post_init__(self) -> None:
        _check_type("source", self.source, IPv4Network)
        _check_type("destination", self.destination, IPv4Network)
        _check_type("to_destination", self.to_destination, IPv4Address)
        if (self.dport is not None or self.not_syn) and self.protocol not in ("tcp", "udp"):
            raise ValueError("a port or SYN match needs protocol tcp or udp")
        if self.not_syn and self.protocol != "tcp":
            raise ValueError("the SYN guard is a tcp match")

    def spec(self) -> str:
        """The rule as ``iptables-save`` prints it after ``-A CHAIN`` (canonical, comparable)."""
        parts: list[str] = []
        if self.source is not None:
            parts += ["-s", str(self.source)]
        if self.destination is not None:
            parts += ["-d", str(self.destination)]
        if self.in_interface is not None:
            parts += ["-i", self.in_interface]
        if self.protocol is not None:
            parts += ["-p", self.protocol, "-m", self.protocol]
            if self.not_syn:
                parts += ["!", "--tcp-flags", *_SYN_FLAGS]
            if self.dport is not None:
                parts += ["--dport", str(self.dport)]
        if self.ctstate is not None:
            parts += ["-m", "conntrack", "--ctstate", self.ctstate]
        if self.match_set is not None:
            parts += ["-m", "set", "--match-set", self.match_set, "src"]
        parts += ["-j", self.target]
        if self.to_destination is not None:
            parts += ["--to-destination", str(self.to_destination)]
        return " ".join(parts)


def _check_type(name: str, value: object, kind: type) -> None:
    # Rendering trusts these fields; a str that slipped through could carry extra options.
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be {kind.__name__}, got {type(value).__name__}")


def dnat_spec(overlay: IPv4Address, target: IPv4Address) -> str:
    """Canonical text of one DNAT rule; the hot path at 10,000 members, so no Rule object."""
    return f"-d {overlay}/32 -j DNAT --to-destination {target}"


@dataclass(frozen=True, slots=True)
class Chain:
    """One of Neti's own chains and its rules, in order."""

    table: str
    name: str
    rules: tuple[Rule, ...]

    def specs(self) -> tuple[str, ...]:
        return tuple(rule.spec() for rule in self.rules)


@dataclass(frozen=True, slots=True)
class Jump:
    """The single rule in a built-in chain that leads into one of Neti's chains."""

    table: str
    chain: str
    rule: Rule


@dataclass(frozen=True, slots=True)
class Skipped:
    """A member (or part of one) left out of the rules, and why; the agent reports these."""

    member: str
    reason: str


@dataclass(frozen=True)
class RuleSet:
    """Everything Neti wants in the kernel on one host. Immutable; compare, hash and diff freely.

    ``dnat`` is sorted by overlay IP. ``skipped`` is diagnostic only and not part of equality or
    the hash: two snapshots that program the same rules are the same RuleSet.
    """

    side: Side
    reject_all: bool
    ipset_name: str
    members: frozenset[IPv4Address]
    filter_chains: tuple[Chain, ...]
    dnat: tuple[tuple[IPv4Address, IPv4Address], ...]
    jumps: tuple[Jump, ...]
    skipped: tuple[Skipped, ...] = field(default=(), compare=False)

    @property
    def staging_set(self) -> str:
        """The set a full sync fills before swapping it with the live one."""
        return self.ipset_name + STAGING_SUFFIX

    @cached_property
    def member_strings(self) -> frozenset[str]:
        """Filter IPs as text, the form ``ipset save`` reads back; cached for fast drift checks."""
        return frozenset(map(str, self.members))

    @cached_property
    def dnat_map(self) -> dict[IPv4Address, IPv4Address]:
        return dict(self.dnat)

    @cached_property
    def dnat_specs(self) -> tuple[str, ...]:
        return tuple(dnat_spec(overlay, target) for overlay, target in self.dnat)

    @cached_property
    def dnat_by_spec(self) -> dict[str, tuple[IPv4Address, IPv4Address]]:
        """DNAT rule text → (overlay, target): set operations on str keys make a 10k diff cheap."""
        return dict(zip(self.dnat_specs, self.dnat, strict=True))

    @property
    def chain_names(self) -> dict[str, tuple[str, ...]]:
        """Table → Neti chain names, including the DNAT chain."""
        return {FILTER: tuple(c.name for c in self.filter_chains), NAT: (DNAT_CHAIN,)}

    @cached_property
    def hash(self) -> str:
        """A short, stable hex digest of exactly what would be programmed (published in status)."""
        digest = hashlib.sha256()
        digest.update(f"ipset {self.ipset_name}\n".encode())
        digest.update("\n".join(sorted(self.member_strings)).encode())
        for chain in self.filter_chains:
            digest.update(f"\nchain {chain.table} {chain.name}\n".encode())
            digest.update("\n".join(chain.specs()).encode())
        digest.update(f"\nchain {NAT} {DNAT_CHAIN}\n".encode())
        digest.update("\n".join(self.dnat_specs).encode())
        for jump in self.jumps:
            digest.update(f"\njump {jump.table} {jump.chain} {jump.rule.spec()}".encode())
        return digest.hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        """Rule counts for status reports."""
        return {
            "ipset_members": len(self.members),
            "filter_rules": sum(len(c.rules) for c in self.filter_chains),
            "dnat_rules": len(self.dnat),
            "skipped": len(self.skipped),
        }


def filter_rules(side: Side, config: NetiConfig, reject_all: bool) -> tuple[Chain, ...]:
    """Neti's filter chains for a host on ``side``; they do not depend on the members."""
    failsafe = tuple(
        Rule(source=cidr, protocol="tcp", dport=SSH_PORT, target="ACCEPT")
        for cidr in config.ssh_whitelist
    )
    rules: list[Rule] = [
        Rule(target=FAILSAFE_CHAIN),  # first: the ssh failsafe must win over everything below
        Rule(in_interface="lo", target="ACCEPT"),
        Rule(protocol="tcp", not_syn=True, ctstate="NEW", target="DROP"),
        Rule(ctstate="RELATED,ESTABLISHED", target="ACCEPT"),
        Rule(match_set=config.ipset_name, target="ACCEPT"),
    ]
    # open_ports are open to anyone, for TCP and UDP alike (a port, not a protocol, is configured).
    for ports in config.open_ports:
        rules += [Rule(protocol=proto, dport=ports, target="ACCEPT") for proto in ("tcp", "udp")]
    if side is Side.VPC and config.vpc_private_range is not None:
        rules.append(Rule(source=config.vpc_private_range, target="ACCEPT"))
    if reject_all:
        rules.append(Rule(target="DROP"))
    return (Chain(FILTER, FAILSAFE_CHAIN, failsafe), Chain(FILTER, INPUT_CHAIN, tuple(rules)))


def build_ruleset(local_side: Side, members: Iterable[Member], config: NetiConfig,
                  reject_all: bool) -> RuleSet:
    """The RuleSet for a host on ``local_side``, given the live members and the effective reject_all.

    ``reject_all`` is passed separately because the effective value may come from an operator
    override or a fleet default rather than neti.yml. A member whose fields are not validated
    addresses is skipped and reported, never rendered; two members claiming one overlay IP keep the
    first in a stable order (so every agent agrees) and the other is reported.
    """
    filter_ips: set[IPv4Address] = set()
    dnat: dict[IPv4Address, IPv4Address] = {}
    skipped: list[Skipped] = []
    subnet = config.overlay_subnet
    for member in sorted(_valid(members, skipped), key=_member_order):
        target = member.filter_ip(local_side)
        filter_ips.add(target)
        if member.overlay not in subnet:
            skipped.append(Skipped(member.identifier(), f"overlay IP outside {subnet}: no DNAT"))
        elif member.overlay in dnat:
            skipped.append(Skipped(member.identifier(),
                                   f"overlay IP {member.overlay} already maps to {dnat[member.overlay]}"))
        else:
            dnat[member.overlay] = target
    dnat.update(_overrides(config.nat_overrides))
    jumps = (
        Jump(FILTER, "INPUT", Rule(target=INPUT_CHAIN)),
        Jump(NAT, "OUTPUT", Rule(destination=subnet, target=DNAT_CHAIN)),
    )
    return RuleSet(
        side=local_side,
        reject_all=reject_all,
        ipset_name=config.ipset_name,
        members=frozenset(filter_ips),
        filter_chains=filter_rules(local_side, config, reject_all),
        dnat=tuple(sorted(dnat.items())),
        jumps=jumps,
        skipped=tuple(skipped),
    )


def _valid(members: Iterable[Member], skipped: list[Skipped]) -> Iterable[Member]:
    for member in members:
        addresses = (getattr(member, "public", None), getattr(member, "private", None),
                     getattr(member, "overlay", None))
        if not isinstance(member, Member) or not all(isinstance(a, IPv4Address) for a in addresses) \
                or not isinstance(member.side, Side):
            skipped.append(Skipped(repr(member), "not a validated member (addresses must be IPv4Address)"))
            continue
        yield member


def _member_order(member: Member) -> tuple[int, int, int, str]:
    return (int(member.overlay), int(member.public), int(member.private), member.side.value)


def _overrides(overrides: Mapping[IPv4Address, IPv4Address]) -> dict[IPv4Address, IPv4Address]:
    for overlay, address in overrides.items():
        _check_type("nat_overrides key", overlay, IPv4Address)
        _check_type("nat_overrides value", address, IPv4Address)
    return dict(overrides)


@dataclass(frozen=True)
class RuleSetDiff:
    """The minimal change from one RuleSet to another, per object Neti owns.

    Filter chains are small and replaced whole when any rule differs (one atomic table commit);
    the set and the DNAT map, which scale with the fleet, change entry by entry.
    """

    old: RuleSet | None
    new: RuleSet
    ipset_full: bool
    ipset_add: frozenset[IPv4Address]
    ipset_del: frozenset[IPv4Address]
    chains_changed: tuple[Chain, ...]
    chains_removed: tuple[tuple[str, str], ...]
    dnat_add: tuple[tuple[IPv4Address, IPv4Address], ...]
    dnat_del: tuple[tuple[IPv4Address, IPv4Address], ...]
    jumps_add: tuple[Jump, ...]
    jumps_del: tuple[Jump, ...]

    @property
    def empty(self) -> bool:
        return not (self.ipset_full or self.ipset_add or self.ipset_del or self.chains_changed
                    or self.chains_removed or self.dnat_add or self.dnat_del or self.jumps_add
                    or self.jumps_del)

    @property
    def touches_iptables(self) -> bool:
        return bool(self.chains_changed or self.chains_removed or self.dnat_add or self.dnat_del
                    or self.jumps_add or self.jumps_del)

    def summary(self) -> list[str]:
        """One line per kind of change, for plans and logs."""
        lines = []
        if self.ipset_full:
            lines.append(f"ipset {self.new.ipset_name}: replace with {len(self.new.members)} members")
        if self.ipset_add or self.ipset_del:
            lines.append(f"ipset {self.new.ipset_name}: +{len(self.ipset_add)} -{len(self.ipset_del)}")
        lines += [f"{c.table} {c.name}: rewrite ({len(c.rules)} rules)" for c in self.chains_changed]
        lines += [f"{table} {name}: remove chain" for table, name in self.chains_removed]
        if self.dnat_add or self.dnat_del:
            lines.append(f"nat {DNAT_CHAIN}: +{len(self.dnat_add)} -{len(self.dnat_del)}")
        lines += [f"{j.table} {j.chain}: add jump {j.rule.spec()}" for j in self.jumps_add]
        lines += [f"{j.table} {j.chain}: remove jump {j.rule.spec()}" for j in self.jumps_del]
        return lines


def diff(old: RuleSet | None, new: RuleSet) -> RuleSetDiff:
    """What must change to go from ``old`` (None: nothing installed) to ``new``."""
    if old is None or old.ipset_name != new.ipset_name:
        ipset_full, add, delete = True, frozenset[IPv4Address](), frozenset[IPv4Address]()
    else:
        # By text (cached per RuleSet): IPv4Address equality is Python-level and 10x slower.
        ipset_full = False
        add = frozenset(map(IPv4Address, new.member_strings - old.member_strings))
        delete = frozenset(map(IPv4Address, old.member_strings - new.member_strings))
    old_chains = {(c.table, c.name): c for c in old.filter_chains} if old else {}
    new_keys = {(c.table, c.name) for c in new.filter_chains}
    changed = tuple(c for c in new.filter_chains if old_chains.get((c.table, c.name)) != c)
    removed = tuple(key for key in old_chains if key not in new_keys)
    # Compared by rule text (cached per RuleSet; str hashing is C-fast), in overlay order.
    if old is None:
        dnat_add: tuple[tuple[IPv4Address, IPv4Address], ...] = new.dnat
        dnat_del: tuple[tuple[IPv4Address, IPv4Address], ...] = ()
    else:
        new_by, old_by = new.dnat_by_spec, old.dnat_by_spec
        dnat_add = tuple(sorted(new_by[spec] for spec in new_by.keys() - old_by.keys()))
        dnat_del = tuple(sorted(old_by[spec] for spec in old_by.keys() - new_by.keys()))
    old_jumps = set(old.jumps) if old else set()
    return RuleSetDiff(
        old=old, new=new, ipset_full=ipset_full, ipset_add=add, ipset_del=delete,
        chains_changed=changed, chains_removed=removed, dnat_add=dnat_add, dnat_del=dnat_del,
        jumps_add=tuple(j for j in new.jumps if j not in old_jumps),
        jumps_del=tuple(j for j in (old.jumps if old else ()) if j not in set(new.jumps)),
    )
