"""The ``nft`` backend: Neti's state as its own nftables table, written with ``nft -f -``.

Why a table of its own: nothing Neti does can touch another tool's rules (Docker's, an operator's,
iptables-nft's ``ip filter``), a flush is one ``delete table``, and set, map and chains change in
one kernel transaction, so there is no staging set and no swap-back path. Why ``nft -f -`` rather
than libnftables through ctypes: the process start costs a few milliseconds against tens for a
10,000-element load (bench/apply.py compares it with raw ``nft -f`` of the same text), and the
Debian ``nftables`` package is all it needs.

A host moving from another backend (restore, iptc) keeps that backend's ``NETI-*`` chains and
ipsets until the first full sync of this one removes them, right after Neti's table is committed
(so the host is never without Neti's rules). The other backends do the same for this table
(:func:`retire_native_table`). Subprocesses inherit the calling thread's network namespace.
"""

from __future__ import annotations

import shutil
import subprocess

from neti_core.firewall.base import BackendBase, FirewallError, FirewallUnavailableError
from neti_core.firewall.detect import legacy_table_names
from neti_core.firewall.nft_lib import NftLibraryError, library, run_json
from neti_core.firewall.nft_readback import parse_nft_json
from neti_core.firewall.nft_render import (
    FAMILY,
    TABLE,
    render_nft_delta,
    render_nft_flush,
    render_nft_full,
)
from neti_core.firewall.readback import LiveState, render_flush
from neti_core.firewall.tools import TIMEOUT, ipset_restore, run_tool
from neti_core.rules import RuleSet, RuleSetDiff

_ABSENT = "No such file or directory"


def nft_script(text: str) -> None:
    """Apply an ``nft -f`` script as one transaction; a refusal changes nothing."""
    if text:
        run_tool(["nft", "-f", "-"], text)


def read_table_json() -> str:
    """``nft -j list table ip neti`` (in process when libnftables loads); '' when there is no table."""
    lib = library()
    if lib is not None:
        try:
            return run_json(lib, f"list table {FAMILY} {TABLE}")
        except NftLibraryError as exc:
            if _ABSENT in str(exc):
                return ""
            raise FirewallUnavailableError(f"nft list table failed: {str(exc)[:300]}") from exc
    try:
        result = subprocess.run(["nft", "-j", "list", "table", FAMILY, TABLE], capture_output=True,
                                text=True, timeout=TIMEOUT)
    except FileNotFoundError as exc:
        raise FirewallUnavailableError("nft not installed") from exc
    if result.returncode != 0:
        if _ABSENT in result.stderr:
            return ""
        raise FirewallUnavailableError(f"nft list table failed: {result.stderr.strip()[:300]}")
    return result.stdout


def native_table_exists() -> bool:
    """Whether Neti's nftables table exists here (False when nft is not installed)."""
    if shutil.which("nft") is None:
        return False
    try:
        listing = run_tool(["nft", "list", "tables"])
    except FirewallError:  # a kernel without nf_tables holds no table of ours
        return False
    return f"table {FAMILY} {TABLE}\n" in listing + "\n"


def retire_native_table() -> None:
    """Remove Neti's nftables table, for a host that moved to an iptables backend."""
    if native_table_exists():
        nft_script(render_nft_flush())


def retire_iptables_objects(ipset_name: str) -> list[str]:
    """Remove the restore/iptc backends' NETI-* chains, jumps and ipsets, in both flavours.

    Legacy tables are read only where they already exist (reading one creates it). Returns what
    was removed, one line per flavour, for the apply summary.
    """
    from neti_core.firewall.restore import RestoreBackend

    removed: list[str] = []
    sets: set[str] = set()
    for flavour in ("nft", "legacy"):
        if flavour == "legacy" and not legacy_table_names():
            continue
        try:
            old = RestoreBackend(ipset_name, flavour=flavour)
        except FirewallUnavailableError:
            continue
        live = old.read()
        sets |= set(live.sets)
        if live.chains or live.jumps:
            old._iptables_restore(render_flush(live))
            removed.append(f"iptables-{flavour}: removed {len(live.chains)} NETI chains of the "
                           f"previous backend")
    if sets:
        ipset_restore("".join(f"destroy {name}\n" for name in sorted(sets)))
        removed.append(f"ipset: removed {', '.join(sorted(sets))} of the previous backend")
    return removed


class NftBackend(BackendBase):
    """Neti's rules as ``table ip neti``: a member set, an overlay→address map, four chains."""

    name = "nft"

    def __init__(self, ipset_name: str) -> None:
        super().__init__(ipset_name)
        if shutil.which("nft") is None:
            raise FirewallUnavailableError("nft not installed (Debian package nftables)")

    def describe(self) -> str:
        return f"nft (table {FAMILY} {TABLE})"

    def _apply_full(self, desired: RuleSet, live: LiveState | None) -> None:
        nft_script(render_nft_full(desired))

    def _apply_delta(self, change: RuleSetDiff) -> None:
        script = render_nft_delta(change)
        nft_script(render_nft_full(change.new) if script is None else script)

    def _read(self, ipset_name: str) -> LiveState:
        return parse_nft_json(read_table_json(), ipset_name)

    def _flush(self, live: LiveState) -> None:
        nft_script(render_nft_flush())

    def _retire_others(self) -> list[str]:
        return retire_iptables_objects(self.ipset_name)

    def _full_text(self, desired: RuleSet, live: LiveState) -> tuple[str, str]:
        return "nft -f input of a full sync (one transaction)", render_nft_full(desired)
