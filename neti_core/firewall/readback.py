"""What is live in the kernel, normalised, and how it differs from a RuleSet (pure, no I/O).

Backends read the kernel in their own way (``iptables-save`` text, libiptc entries, a recording)
and produce a :class:`LiveState` of canonical rule texts — the same text :meth:`Rule.spec` prints —
so one comparison serves verify-after-apply, the periodic drift check and the plan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from neti_core.rules import CHAIN_PREFIX, DNAT_CHAIN, NAT, STAGING_SUFFIX, RuleSet

_JUMP = re.compile(r"(?:^|\s)-[jg] (" + re.escape(CHAIN_PREFIX) + r"\S+)")
_TABLES = ("filter", "nat")
_SHOWN = 5  # how many example entries a drift line names


@dataclass
class LiveState:
    """Neti's objects as found in the kernel.

    ``chains``: (table, chain) → rule specs of every live ``NETI-*`` chain (empty list: exists,
    no rules). ``jumps``: (table, chain) → specs of rules in *other* chains that jump into a Neti
    chain. ``ipset``: member texts of the live set, None when it does not exist; ``sets``: every
    Neti-related set name found (the live one and a leftover staging set).
    """

    chains: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    jumps: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    ipset: frozenset[str] | None = None
    ipset_type: str | None = None
    sets: tuple[str, ...] = ()


def jump_target(spec: str) -> str | None:
    """The Neti chain a rule jumps to, or None."""
    match = _JUMP.search(spec)
    return match.group(1) if match else None


def parse_iptables_save(text: str, state: LiveState | None = None) -> LiveState:
    """Collect Neti's chains and the jumps into them from ``iptables-save`` output (any tables)."""
    state = state if state is not None else LiveState()
    table = ""
    chains = state.chains
    # The hot loop at 10k rules: one slice test per line, the chain's list looked up once per run.
    current_name, current = "", None
    marker = f" {CHAIN_PREFIX}"
    for line in text.split("\n"):
        head = line[:3]
        if head == "-A ":
            name, _, spec = line[3:].partition(" ")
            if name == current_name and current is not None:
                current.append(spec)
            elif name.startswith(CHAIN_PREFIX):
                current_name, current = name, chains.setdefault((table, name), [])
                current.append(spec)
            elif marker in spec and jump_target(spec):
                state.jumps.setdefault((table, name), []).append(spec)
        elif head[:1] == ":":
            name = line[1:].split(" ", 1)[0]
            if name.startswith(CHAIN_PREFIX):
                chains[(table, name)] = []
        elif head[:1] == "*":
            table = line[1:].strip()
            current_name, current = "", None
    return state


def parse_chain_listing(table: str, text: str) -> dict[tuple[str, str], list[str]]:
    """Jumps into Neti chains from ``iptables -t TABLE -S CHAIN`` output of a built-in chain."""
    jumps: dict[tuple[str, str], list[str]] = {}
    for line in text.splitlines():
        if line.startswith("-A "):
            name, _, spec = line[3:].partition(" ")
            if jump_target(spec):
                jumps.setdefault((table, name), []).append(spec)
    return jumps


@dataclass(frozen=True)
class Drift:
    """Differences between the kernel and a RuleSet; empty (falsy) when in sync."""

    items: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def __str__(self) -> str:
        return "in sync" if not self.items else "\n".join(self.items)


def _examples(values: Iterable[str]) -> str:
    values = sorted(values)
    shown = ", ".join(values[:_SHOWN])
    return shown + (f", … ({len(values) - _SHOWN} more)" if len(values) > _SHOWN else "")


def compare(live: LiveState, desired: RuleSet) -> Drift:
    """Everything that differs, one line per problem, naming examples (the drift report)."""
    items: list[str] = []
    items += _compare_ipset(live, desired)
    for chain in desired.filter_chains:
        items += _compare_chain(live, chain.table, chain.name, list(chain.specs()))
    items += _compare_dnat(live, desired)
    wanted_chains = {(c.table, c.name) for c in desired.filter_chains} | {(NAT, DNAT_CHAIN)}
    stale = sorted(key for key in live.chains if key not in wanted_chains)
    items += [f"{table} {name}: chain present but not wanted" for table, name in stale]
    items += _compare_jumps(live, desired)
    return Drift(tuple(items))


def _compare_ipset(live: LiveState, desired: RuleSet) -> list[str]:
    name = desired.ipset_name
    if live.ipset is None:
        return [f"ipset {name}: missing"]
    items = []
    if live.ipset_type not in (None, "hash:ip"):
        items.append(f"ipset {name}: type {live.ipset_type}, expected hash:ip")
    wanted = desired.member_strings
    missing = wanted - live.ipset
    extra = live.ipset - wanted
    if missing:
        items.append(f"ipset {name}: {len(missing)} members missing: {_examples(missing)}")
    if extra:
        items.append(f"ipset {name}: {len(extra)} unexpected members: {_examples(extra)}")
    if desired.staging_set in live.sets:
        items.append(f"ipset {desired.staging_set}: leftover staging set")
    return items


def _compare_chain(live: LiveState, table: str, name: str, wanted: list[str]) -> list[str]:
    have = live.chains.get((table, name))
    if have is None:
        return [f"{table} {name}: chain missing"]
    if have == wanted:
        return []
    for index, (want, got) in enumerate(zip(wanted, have, strict=False)):
        if want != got:
            return [f"{table} {name}: rule {index + 1} is {got!r}, expected {want!r}"
                    f" ({len(have)} rules live, {len(wanted)} expected)"]
    if len(have) < len(wanted):
        return [f"{table} {name}: {len(wanted) - len(have)} rules missing from the end, "
                f"first {wanted[len(have)]!r}"]
    return [f"{table} {name}: {len(have) - len(wanted)} unexpected rules at the end, "
            f"first {have[len(wanted)]!r}"]


def _compare_dnat(live: LiveState, desired: RuleSet) -> list[str]:
    have = live.chains.get((NAT, DNAT_CHAIN))
    if have is None:
        return [f"nat {DNAT_CHAIN}: chain missing"]
    wanted = desired.dnat_specs
    # Order inside the DNAT chain carries no meaning (one rule per overlay IP), duplicates do.
    if len(have) == len(wanted) and set(have) == desired.dnat_by_spec.keys():
        return []
    counts = Counter(have)
    wanted_set = set(wanted)
    missing = [spec for spec in wanted if spec not in counts]
    extra = [spec for spec in counts if spec not in wanted_set]
    dupes = [spec for spec, n in counts.items() if n > 1]
    items = []
    if missing:
        items.append(f"nat {DNAT_CHAIN}: {len(missing)} rules missing: {_examples(missing)}")
    if extra:
        items.append(f"nat {DNAT_CHAIN}: {len(extra)} unexpected rules: {_examples(extra)}")
    if dupes:
        items.append(f"nat {DNAT_CHAIN}: {len(dupes)} duplicated rules: {_examples(dupes)}")
    return items


def _compare_jumps(live: LiveState, desired: RuleSet) -> list[str]:
    items = []
    wanted = {(j.table, j.chain): j.rule.spec() for j in desired.jumps}
    for (table, chain), spec in wanted.items():
        present = live.jumps.get((table, chain), [])
        count = present.count(spec)
        if count == 0:
            items.append(f"{table} {chain}: jump missing: {spec!r}")
        elif count > 1:
            items.append(f"{table} {chain}: jump present {count} times: {spec!r}")
        items += [f"{table} {chain}: unexpected jump {other!r}" for other in present if other != spec]
    for (table, chain), specs in sorted(live.jumps.items()):
        if (table, chain) not in wanted:
            items += [f"{table} {chain}: unexpected jump {spec!r}" for spec in specs]
    return items


def expected_state(desired: RuleSet) -> LiveState:
    """The LiveState a perfect apply of ``desired`` leaves (what the recording backend holds)."""
    chains = {(c.table, c.name): list(c.specs()) for c in desired.filter_chains}
    chains[(NAT, DNAT_CHAIN)] = list(desired.dnat_specs)
    jumps: dict[tuple[str, str], list[str]] = {}
    for jump in desired.jumps:
        jumps.setdefault((jump.table, jump.chain), []).append(jump.rule.spec())
    return LiveState(chains=chains, jumps=jumps, ipset=desired.member_strings,
                     ipset_type="hash:ip", sets=(desired.ipset_name,))


def stale_chains(live: LiveState, desired: RuleSet) -> dict[str, list[str]]:
    """Live Neti chains the RuleSet no longer has, by table (a full sync deletes them)."""
    stale: dict[str, list[str]] = {}
    for table, name in live.chains:
        if name not in desired.chain_names.get(table, ()):
            stale.setdefault(table, []).append(name)
    return stale


def neti_sets(names: Iterable[str], ipset_name: str) -> tuple[str, ...]:
    """The sets among ``names`` that Neti owns: the live one and its staging set."""
    mine = {ipset_name, ipset_name + STAGING_SUFFIX}
    return tuple(n for n in names if n in mine)


def render_flush(live: LiveState) -> str:
    """``iptables-restore --noflush`` text removing every Neti chain and every jump into one.

    Chains are declared (which flushes them, dropping references between Neti chains), the jumps
    from other chains are deleted by their exact text, then the chains are deleted. Nothing else in
    the tables is touched.
    """
    out: list[str] = []
    tables = sorted({t for t, _ in live.chains} | {t for t, _ in live.jumps},
                    key=lambda t: (_TABLES.index(t) if t in _TABLES else 9, t))
    for table in tables:
        names = sorted(n for t, n in live.chains if t == table)
        out.append(f"*{table}")
        out += [f":{name} - [0:0]" for name in names]
        for (t, chain), specs in sorted(live.jumps.items()):
            if t == table:
                out += [f"-D {chain} {spec}" for spec in specs]
        out += [f"-X {name}" for name in names]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
