"""RuleSet and RuleSetDiff → the text ``iptables-restore --noflush`` and ``ipset restore`` read.

Pure string building: the restore backend feeds this text to the tools, the recording backend keeps
it, the benchmark feeds the identical text to the raw tools, and a plan shows it. Only validated
``ipaddress`` objects and names checked by the config reach these functions.

Conventions that matter for correctness:

* Declaring a user chain (``:NETI-X - [0:0]``) under ``--noflush`` creates it or flushes it, so a
  chain is rewritten whole inside one table transaction — never a moment with half the rules.
* Only Neti's chains are declared; built-in chains are touched by exact ``-D``/``-I`` of Neti's
  own jump, so every other rule in the table survives.
* A full ipset sync fills a staging set and swaps it in *before* the iptables commit (the swap is
  the step that can be refused late); if the commit then fails, ``render_ipset_swap`` swaps the
  previous members back, so a failure leaves the live set as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address

from neti_core.rules import DNAT_CHAIN, FILTER, NAT, Chain, Jump, RuleSet, RuleSetDiff, dnat_spec

IPSET_TYPE = "hash:ip"
# A fixed maxelem: "create -exist" and "swap" need matching limits, and the kernel allocates by
# content, not by this limit. Sets made by the original Neti (ipset's default 65536) are swapped
# into, never re-created, so their limit does not have to match.
IPSET_MAXELEM = 1_048_576
_TABLE_ORDER = (FILTER, NAT)


def ipset_hashsize(count: int) -> int:
    """Initial hash size for ``count`` entries: sized up front so a 10k fill does not rehash."""
    size = 1024
    while size < count:
        size *= 2
    return size


def ipset_create(name: str, count: int = 0) -> str:
    return (f"create {name} {IPSET_TYPE} family inet hashsize {ipset_hashsize(count)} "
            f"maxelem {IPSET_MAXELEM}")


def render_ipset_stage(ruleset: RuleSet, *, create_live: bool, destroy_stale_staging: bool) -> str:
    """Fill the staging set with every member; create the live set if it does not exist yet.

    The live set is created (empty) up front because the filter rules refer to it by name.
    """
    name, staging = ruleset.ipset_name, ruleset.staging_set
    lines = []
    if destroy_stale_staging:
        lines.append(f"destroy {staging}")
    if create_live:
        lines.append(ipset_create(name))
    lines.append(ipset_create(staging, len(ruleset.members)))
    prefix = f"add {staging} "
    lines += [prefix + ip for ip in ruleset.member_strings]
    return "\n".join(lines) + "\n"


def render_ipset_swap(ruleset: RuleSet) -> str:
    """Atomically replace the live set's content with the staging set's, then drop the old content."""
    return f"swap {ruleset.ipset_name} {ruleset.staging_set}\ndestroy {ruleset.staging_set}\n"


def render_ipset_full(ruleset: RuleSet) -> str:
    """The whole set replacement in one ``ipset -exist restore`` (what a raw-tool user would run)."""
    name, staging = ruleset.ipset_name, ruleset.staging_set
    lines = [f"{ipset_create(name)}", ipset_create(staging, len(ruleset.members)), f"flush {staging}"]
    prefix = f"add {staging} "
    lines += [prefix + ip for ip in ruleset.member_strings]
    lines += [f"swap {name} {staging}", f"destroy {staging}"]
    return "\n".join(lines) + "\n"


def render_ipset_delta(name: str, add: Iterable[IPv4Address], delete: Iterable[IPv4Address]) -> str:
    """Entry-by-entry change for ``ipset -exist restore`` (idempotent: -exist ignores repeats)."""
    lines = [f"add {name} {ip}" for ip in add] + [f"del {name} {ip}" for ip in delete]
    return "\n".join(lines) + "\n" if lines else ""


def _chain_block(chain: Chain) -> list[str]:
    return [f"-A {chain.name} {spec}" for spec in chain.specs()]


def render_iptables_full(ruleset: RuleSet,
                         live_jumps: Mapping[tuple[str, str], Sequence[str]] | None = None,
                         stale_chains: Mapping[str, Sequence[str]] | None = None) -> str:
    """Every Neti chain rewritten and the jumps made exactly right, one transaction per table.

    ``live_jumps`` maps (table, built-in chain) to the specs of live rules there that target a Neti
    chain (from a read of the built-in chains); ``None`` means nothing is known to be installed.
    Wrong or duplicate jumps are deleted by their exact text; the right one is inserted first in
    the chain if it is missing. ``stale_chains`` (table → names) are Neti chains no longer wanted.
    """
    live_jumps = live_jumps or {}
    stale_chains = stale_chains or {}
    by_table: dict[str, list[str]] = {table: [] for table in _TABLE_ORDER}
    declared: dict[str, list[str]] = {table: [] for table in _TABLE_ORDER}
    for filter_chain in ruleset.filter_chains:
        declared[filter_chain.table].append(filter_chain.name)
    declared[NAT].append(DNAT_CHAIN)
    for table, names in stale_chains.items():
        declared.setdefault(table, []).extend(names)
        by_table.setdefault(table, [])
    wanted = {(j.table, j.chain): j.rule.spec() for j in ruleset.jumps}
    inserts: dict[str, list[str]] = {table: [] for table in by_table}
    for (table, chain), spec in wanted.items():
        present = list(live_jumps.get((table, chain), ()))
        keep = spec in present
        if keep:
            present.remove(spec)  # keep one, delete duplicates and wrong ones below
        else:
            inserts[table].append(f"-I {chain} 1 {spec}")
        by_table[table] += [f"-D {chain} {other}" for other in present]
    for (table, chain), specs in live_jumps.items():
        if (table, chain) not in wanted:
            by_table.setdefault(table, []).extend(f"-D {chain} {spec}" for spec in specs)
            inserts.setdefault(table, [])
    for filter_chain in ruleset.filter_chains:
        by_table[filter_chain.table] += _chain_block(filter_chain)
    by_table[NAT] += [f"-A {DNAT_CHAIN} {spec}" for spec in ruleset.dnat_specs]
    for table, names in stale_chains.items():
        by_table[table] += [f"-X {name}" for name in names]
    for table, lines in inserts.items():
        by_table[table] += lines
    out: list[str] = []
    for table, lines in by_table.items():
        out.append(f"*{table}")
        out += [f":{name} - [0:0]" for name in declared.get(table, ())]
        out += lines
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_iptables_delta(change: RuleSetDiff) -> str:
    """Only what changed: whole small chains, single DNAT rules, jumps. Empty text: nothing to do."""
    by_table: dict[str, list[str]] = {}
    declared: dict[str, list[str]] = {}
    for chain in change.chains_changed:
        declared.setdefault(chain.table, []).append(chain.name)
    for table, name in change.chains_removed:
        declared.setdefault(table, []).append(name)
    for jump in change.jumps_del:
        by_table.setdefault(jump.table, []).append(f"-D {jump.chain} {jump.rule.spec()}")
    for chain in change.chains_changed:
        by_table.setdefault(chain.table, []).extend(_chain_block(chain))
    if change.dnat_del or change.dnat_add:
        lines = by_table.setdefault(NAT, [])
        lines += [f"-D {DNAT_CHAIN} {dnat_spec(o, t)}" for o, t in change.dnat_del]
        lines += [f"-A {DNAT_CHAIN} {dnat_spec(o, t)}" for o, t in change.dnat_add]
    for table, name in change.chains_removed:
        by_table.setdefault(table, []).append(f"-X {name}")
    for jump in change.jumps_add:
        by_table.setdefault(jump.table, []).append(f"-I {jump.chain} 1 {jump.rule.spec()}")
    out: list[str] = []
    for table in sorted(set(by_table) | set(declared), key=_table_key):
        out.append(f"*{table}")
        out += [f":{name} - [0:0]" for name in declared.get(table, ())]
        out += by_table.get(table, [])
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _table_key(table: str) -> tuple[int, str]:
    return (_TABLE_ORDER.index(table) if table in _TABLE_ORDER else len(_TABLE_ORDER), table)


def render_jump(jump: Jump) -> str:
    return f"-A {jump.chain} {jump.rule.spec()}"


def render_ruleset(ruleset: RuleSet) -> str:
    """A readable listing of the whole RuleSet, independent of any kernel state.

    ``neti-agent --dry-run`` prints ``backend.plan()`` instead, which compares with what is live.
    """
    lines = [f"# neti ruleset {ruleset.hash}: side={ruleset.side.value} reject_all={ruleset.reject_all}",
             f"# ipset {ruleset.ipset_name} ({IPSET_TYPE}): {len(ruleset.members)} members"]
    lines += [f"add {ruleset.ipset_name} {ip}" for ip in sorted(ruleset.members)]
    for table in _TABLE_ORDER:
        lines.append(f"*{table}")
        lines += [render_jump(j) for j in ruleset.jumps if j.table == table]
        for chain in ruleset.filter_chains:
            if chain.table == table:
                lines += _chain_block(chain)
        if table == NAT:
            lines += [f"-A {DNAT_CHAIN} {spec}" for spec in ruleset.dnat_specs]
    lines += [f"# skipped {s.member}: {s.reason}" for s in ruleset.skipped]
    return "\n".join(lines) + "\n"
