"""The ``restore`` backend: ``iptables-{nft,legacy}-restore --noflush -w`` and ``ipset -exist restore``.

Works with both iptables flavours; the flavour's own binaries are called by name (never the
``iptables`` alternative), so Neti's rules cannot end up split across the two. One restore call
carries both tables, each committed as one transaction. Subprocesses inherit the calling thread's
network namespace.

Full sync: fill a staging set and swap it in → iptables-restore every Neti chain (declaring a chain
under --noflush flushes it) and fix the jumps from what ``-S`` shows in the built-in chains →
destroy the staging set. The swap comes first because it is the step that can be refused late (see
``ipset_replaced_around`` in :mod:`neti_core.firewall.tools`); if the iptables step fails, a second
swap puts the previous members back. Delta: ipset add/del, then iptables rule deltas; if those fail
the ipset change is reverted.
"""

from __future__ import annotations

import shutil

from neti_core.firewall.base import BackendBase, FirewallUnavailableError
from neti_core.firewall.readback import (
    LiveState,
    parse_chain_listing,
    parse_iptables_save,
    render_flush,
    stale_chains,
)
from neti_core.firewall.tools import (
    add_sets,
    finish,
    ipset_delta_around,
    ipset_replaced_around,
    ipset_restore,
    run_tool,
    start,
)
from neti_core.render import (
    render_iptables_delta,
    render_iptables_full,
)
from neti_core.rules import RuleSet, RuleSetDiff


class RestoreBackend(BackendBase):
    """Rules through the iptables-restore of one flavour, sets through ipset restore."""

    name = "restore"

    def __init__(self, ipset_name: str, *, flavour: str = "nft", wait_seconds: int = 10) -> None:
        super().__init__(ipset_name)
        if flavour not in ("nft", "legacy"):
            raise FirewallUnavailableError(f"unknown iptables flavour {flavour!r}")
        self.flavour = flavour
        self.iptables = f"iptables-{flavour}"
        self.restore = f"iptables-{flavour}-restore"
        self.save = f"iptables-{flavour}-save"
        self.wait = str(wait_seconds)
        missing = [t for t in (self.iptables, self.restore, self.save, "ipset") if not shutil.which(t)]
        if missing:
            raise FirewallUnavailableError(f"{', '.join(missing)} not installed")

    def describe(self) -> str:
        return f"restore ({self.iptables})"

    def _iptables_restore(self, text: str) -> None:
        if text:
            run_tool([self.restore, "--noflush", "-w", self.wait], text)

    def _survey(self, desired: RuleSet) -> tuple[set[str], dict[tuple[str, str], list[str]]]:
        """Set names, and the jumps into Neti chains found in the built-in chains Neti uses.

        ``-S CHAIN`` reads only that chain (with nft; legacy reads the table), and the three reads
        run at once, so a full sync pays roughly one process start for them.
        """
        listings = [(jump.table, start([self.iptables, "-w", self.wait, "-t", jump.table,
                                        "-S", jump.chain])) for jump in desired.jumps]
        sets = start(["ipset", "list", "-n"])
        jumps: dict[tuple[str, str], list[str]] = {}
        for table, process in listings:
            jumps.update(parse_chain_listing(table, finish(process)))
        return set(finish(sets).split()), jumps

    def _apply_full(self, desired: RuleSet, live: LiveState | None) -> None:
        if live is None:
            (sets, jumps), stale = self._survey(desired), {}
        else:
            sets, jumps, stale = set(live.sets), live.jumps, stale_chains(live, desired)
        with ipset_replaced_around(desired, sets):
            self._iptables_restore(render_iptables_full(desired, jumps, stale))

    def _apply_delta(self, change: RuleSetDiff) -> None:
        with ipset_delta_around(change):
            self._iptables_restore(render_iptables_delta(change))

    def _read(self, ipset_name: str) -> LiveState:
        # Both reads run at once: at 10k members each takes tens of milliseconds.
        save, sets = start([self.save]), start(["ipset", "save"])
        state = parse_iptables_save(finish(save))
        return add_sets(state, finish(sets), ipset_name)

    def _flush(self, live: LiveState) -> None:
        self._iptables_restore(render_flush(live))
        ipset_restore("".join(f"destroy {name}\n" for name in live.sets))
