"""The ``iptc`` backend: python-iptables (libiptc), one commit per table; sets via ``ipset restore``.

What python-iptables does not do for us, and how this module makes up for it:

* It writes the *legacy* tables only; ``make_backend`` never picks it where the host's rules are in
  nft (see detect.py).
* It ignores the xtables lock that ``iptables-legacy -w`` takes, and a legacy commit replaces a
  whole table, so two writers can lose each other's rules: every read-modify-commit here holds
  ``/run/xtables.lock`` (flock, like iptables itself).
* Its read-back prints masks (``10.0.0.1/255.255.255.255``) and keeps its own parameter lists;
  :func:`rule_spec` normalises a rule to the exact ``iptables-save`` text Neti compares against.
* Building or decoding a python-iptables ``Rule`` costs ~150 µs (1.5 s for a 10k-rule DNAT chain),
  so the DNAT chain, the only one that scales with the fleet, is written and read as raw
  ``ipt_entry`` bytes through python-iptables' own libiptc binding: one template entry is built by
  python-iptables, then only its destination and DNAT address bytes change per rule.
* Its ``Table`` objects are process-wide singletons holding a libiptc handle, which belongs to the
  network namespace of the thread that opened it: every operation re-opens the handle on the
  calling thread under a process-wide lock.
"""

from __future__ import annotations

import ctypes as ct
import threading
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from neti_core.firewall.base import BackendBase, FirewallApplyError, FirewallUnavailableError
from neti_core.firewall.detect import legacy_table_names
from neti_core.firewall.iptc_entries import DnatTemplate, rule_spec, xtables_lock
from neti_core.firewall.readback import LiveState, stale_chains
from neti_core.firewall.tools import (
    add_sets,
    finish,
    ipset_delta_around,
    ipset_names,
    ipset_replaced_around,
    ipset_restore,
    start,
)
from neti_core.rules import CHAIN_PREFIX, DNAT_CHAIN, FILTER, NAT, Rule, RuleSet, RuleSetDiff, dnat_spec

_PROCESS_LOCK = threading.RLock()


def _load() -> Any:
    try:
        import iptc
        import iptc.ip4tc
    except Exception as exc:  # ImportError, or XTablesError when libxtables is missing
        raise FirewallUnavailableError(f"python-iptables unusable: {exc}") from exc
    return iptc


class IptcBackend(BackendBase):
    """Rules through libiptc (legacy tables), one commit per table; sets through ``ipset restore``."""

    name = "iptc"
    flavour = "legacy"

    def __init__(self, ipset_name: str, *, wait_seconds: float = 10.0) -> None:
        super().__init__(ipset_name)
        self.iptc = _load()
        self.wait_seconds = wait_seconds
        self._template: DnatTemplate | None = None

    def describe(self) -> str:
        return "iptc (python-iptables, legacy tables)"

    # -- libiptc plumbing ----------------------------------------------------------------------
    def _table(self, name: str) -> Any:
        """python-iptables' Table singleton with a fresh handle opened on this thread.

        Opening a legacy table creates it in the namespace if it did not exist, so reads open only
        tables that exist (see :meth:`_existing`).
        """
        try:
            table = self.iptc.Table(name, autocommit=False)
            table.refresh()
        except self.iptc.IPTCError as exc:
            raise FirewallUnavailableError(f"cannot open the {name} table: {exc}") from exc
        self.iptc.Table.existing_table_names[name] = True
        return table

    def _existing(self) -> set[str]:
        """Legacy tables that exist here; also tells python-iptables, which otherwise probes (and so
        creates) every table the first time it decodes a jump to a user chain.

        Unprivileged (the unit's user) the list is unreadable: then Neti's own two tables are taken
        as existing. Opening them may create them, which on a host this backend writes to is
        harmless (the first apply creates them anyway); other tables are never probed."""
        names = legacy_table_names()
        if names is None:
            names = {FILTER, NAT}
        for name in self.iptc.Table.ALL:
            self.iptc.Table.existing_table_names[name] = name in names
        return names

    def _dnat(self) -> DnatTemplate:
        if self._template is None:
            self._template = DnatTemplate(self.iptc)
        return self._template

    def _entry(self, rule: Rule) -> Any:
        r = self.iptc.Rule()
        if rule.source is not None:
            r.src = str(rule.source)
        if rule.destination is not None:
            r.dst = str(rule.destination)
        if rule.in_interface is not None:
            r.in_interface = rule.in_interface
        if rule.protocol is not None:
            r.protocol = rule.protocol
            match = r.create_match(rule.protocol)
            if rule.not_syn:
                match.tcp_flags = ["!", "FIN,SYN,RST,ACK", "SYN"]
            if rule.dport is not None:
                match.dport = str(rule.dport)
        if rule.ctstate is not None:
            r.create_match("conntrack").ctstate = rule.ctstate
        if rule.match_set is not None:
            r.create_match("set").match_set = [rule.match_set, "src"]
        target = r.create_target(rule.target)
        if rule.to_destination is not None:
            target.to_destination = str(rule.to_destination)
        return r

    def _commit(self, tables: list[Any], edit: Callable[[], None]) -> None:
        """Run ``edit`` on the open handles and commit each table; any failure commits nothing more."""
        try:
            edit()
            for table in tables:
                table.commit()
        except Exception as exc:  # IPTCError, XTablesError, ValueError: all refusals of the change
            for table in tables:
                table.refresh()  # drop uncommitted changes
            raise FirewallApplyError(f"libiptc refused the change: {exc}") from exc

    def _jump_rules(self, table: Any, chain: str) -> list[tuple[int, str]]:
        """(index, spec) of rules in ``chain`` that jump into a Neti chain.

        Target names come from libiptc directly; only Neti's jumps are decoded by python-iptables,
        so a built-in chain full of another tool's rules costs little.
        """
        lib, handle, name = table._iptc, table._handle, chain.encode()
        found = []
        index, entry = 0, lib.iptc_first_rule(name, handle)
        while entry:
            target = lib.iptc_get_target(entry, handle) or b""
            if target.startswith(CHAIN_PREFIX.encode()):
                rule = self.iptc.Rule(entry.contents, self.iptc.Chain(table, chain))
                found.append((index, rule_spec(rule)))
            index, entry = index + 1, lib.iptc_next_rule(entry, handle)
        return found

    def _fix_jumps(self, tables: dict[str, Any], desired: RuleSet) -> None:
        """Exactly one jump per built-in chain, the desired one, first if it had to be added."""
        for jump in desired.jumps:
            table = tables[jump.table]
            wanted = jump.rule.spec()
            present = self._jump_rules(table, jump.chain)
            keep = next((i for i, spec in present if spec == wanted), None)
            for index, _ in sorted(present, reverse=True):
                if index != keep:
                    self._delete_num(table, jump.chain, index)
            if keep is None:
                self.iptc.Chain(table, jump.chain).insert_rule(self._entry(jump.rule), 0)

    def _delete_num(self, table: Any, chain: str, index: int) -> None:
        if table._iptc.iptc_delete_num_entry(chain.encode(), index, table._handle) != 1:
            raise self.iptc.IPTCError(f"can't delete rule {index + 1} of {chain}: {table.strerror()}")

    def _write_chain(self, table: Any, name: str, rules: tuple[Rule, ...]) -> None:
        if table.is_chain(name):
            table.flush_entries(name)
        else:
            table.create_chain(name)
        chain = self.iptc.Chain(table, name)
        for rule in rules:
            chain.append_rule(self._entry(rule))

    def _write_dnat(self, table: Any, dnat: tuple[tuple[IPv4Address, IPv4Address], ...]) -> None:
        if table.is_chain(DNAT_CHAIN):
            table.flush_entries(DNAT_CHAIN)
        else:
            table.create_chain(DNAT_CHAIN)
        template, name, handle = self._dnat(), DNAT_CHAIN.encode(), table._handle
        append = table._iptc.iptc_append_entry
        for overlay, target in dnat:
            if append(name, template.fill(overlay, target), handle) != 1:
                raise self.iptc.IPTCError(f"can't append to {DNAT_CHAIN}: {table.strerror()}")

    # -- BackendBase -------------------------------------------------------------------------
    def _apply_full(self, desired: RuleSet, live: LiveState | None) -> None:
        sets = set(live.sets) if live is not None else ipset_names()
        stale = stale_chains(live, desired) if live is not None else {}
        with ipset_replaced_around(desired, sets), _PROCESS_LOCK, xtables_lock(self.wait_seconds):
            self._existing()
            tables = {FILTER: self._table(FILTER), NAT: self._table(NAT)}

            def edit() -> None:
                for chain in desired.filter_chains:
                    self._write_chain(tables[chain.table], chain.name, chain.rules)
                self._write_dnat(tables[NAT], desired.dnat)
                self._fix_jumps(tables, desired)
                for table_name, names in stale.items():
                    table = tables.get(table_name) or self._table(table_name)
                    for name in names:
                        table.flush_entries(name)
                    for name in names:
                        table.delete_chain(name)

            self._commit(list(tables.values()), edit)

    def _apply_delta(self, change: RuleSetDiff) -> None:
        with ipset_delta_around(change):
            if change.touches_iptables:
                self._iptables_delta(change)

    def _iptables_delta(self, change: RuleSetDiff) -> None:
        names = {c.table for c in change.chains_changed} | {t for t, _ in change.chains_removed}
        names |= {j.table for j in change.jumps_add + change.jumps_del}
        if change.dnat_add or change.dnat_del:
            names.add(NAT)
        with _PROCESS_LOCK, xtables_lock(self.wait_seconds):
            self._existing()
            tables = {name: self._table(name) for name in sorted(names)}

            def edit() -> None:
                for chain in change.chains_changed:
                    self._write_chain(tables[chain.table], chain.name, chain.rules)
                if change.dnat_del or change.dnat_add:
                    self._dnat_delta(tables[NAT], change)
                if change.jumps_add or change.jumps_del:
                    self._fix_jumps(tables, change.new)
                for table_name, name in change.chains_removed:
                    tables[table_name].flush_entries(name)
                    tables[table_name].delete_chain(name)

            self._commit(list(tables.values()), edit)

    def _dnat_delta(self, table: Any, change: RuleSetDiff) -> None:
        template, name, handle = self._dnat(), DNAT_CHAIN.encode(), table._handle
        mask = (ct.c_ubyte * template.size)(*([0xFF] * template.size))
        for overlay, target in change.dnat_del:
            if table._iptc.iptc_delete_entry(name, template.fill(overlay, target), mask, handle) != 1:
                raise self.iptc.IPTCError(f"can't delete {dnat_spec(overlay, target)}: {table.strerror()}")
        for overlay, target in change.dnat_add:
            if table._iptc.iptc_append_entry(name, template.fill(overlay, target), handle) != 1:
                raise self.iptc.IPTCError(f"can't append {dnat_spec(overlay, target)}: {table.strerror()}")

    def _read(self, ipset_name: str) -> LiveState:
        sets = start(["ipset", "save"])  # runs while libiptc reads the tables
        state = LiveState()
        with _PROCESS_LOCK:
            existing = self._existing()
            for table_name in (FILTER, NAT):
                if table_name not in existing:
                    continue  # never create a table just to look at it
                table = self._table(table_name)
                for chain in table.chains:
                    if chain.name == DNAT_CHAIN:
                        state.chains[(table_name, chain.name)] = self._read_dnat(table)
                    elif chain.name.startswith(CHAIN_PREFIX):
                        state.chains[(table_name, chain.name)] = [rule_spec(r) for r in chain.rules]
                    else:
                        specs = [spec for _, spec in self._jump_rules(table, chain.name)]
                        if specs:
                            state.jumps[(table_name, chain.name)] = specs
        return add_sets(state, finish(sets), ipset_name)

    def _read_dnat(self, table: Any) -> list[str]:
        template, lib, handle = self._dnat(), table._iptc, table._handle
        specs = []
        entry = lib.iptc_first_rule(DNAT_CHAIN.encode(), handle)
        while entry:
            data = ct.string_at(entry, entry.contents.next_offset)
            spec = template.decode(data)
            if spec is None:  # not one of ours: decode it the slow, general way
                spec = rule_spec(self.iptc.Rule(entry.contents, self.iptc.Chain(table, DNAT_CHAIN)))
            specs.append(spec)
            entry = lib.iptc_next_rule(entry, handle)
        return specs

    def _flush(self, live: LiveState) -> None:
        tables = sorted({t for t, _ in live.chains} | {t for t, _ in live.jumps})
        if tables:
            with _PROCESS_LOCK, xtables_lock(self.wait_seconds):
                self._existing()
                handles = {name: self._table(name) for name in tables}

                def edit() -> None:
                    for (table_name, chain), _ in sorted(live.jumps.items()):
                        table = handles[table_name]
                        for index, _ in sorted(self._jump_rules(table, chain), reverse=True):
                            self._delete_num(table, chain, index)
                    for table_name, chain in live.chains:
                        handles[table_name].flush_entries(chain)
                    for table_name, chain in live.chains:
                        handles[table_name].delete_chain(chain)

                self._commit(list(handles.values()), edit)
        ipset_restore("".join(f"destroy {name}\n" for name in live.sets))
