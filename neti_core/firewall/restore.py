"""The ``restore`` backend: ``iptables-{nft,legacy}-restore --noflush -w`` and ``ipset -exist restore``.

Works with both iptables flavours; the flavour's own binaries are called by name (never the
``iptables`` alternative), so Neti's rules cannot end up split across the two. One restore call
carries both tables, each committed as one transaction. Subprocesses inherit the calling thread's
network namespace.

Full sync: fill a staging set → iptables-restore every Neti chain (declaring a chain under
--noflush flushes it) and fix the jumps from what ``-S`` shows in the built-in chains → swap the
staging set in and destroy it. If the iptables step fails the staging set is destroyed and the live
set was never touched. Delta: ipset add/del, then iptables rule deltas; if those fail the ipset
change is reverted.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from neti_core.firewall.base import FirewallApplyError, FirewallBackend, FirewallUnavailableError
from neti_core.firewall.live import (
    LiveState,
    neti_sets,
    parse_chain_listing,
    parse_ipset_save,
    parse_iptables_save,
    render_flush,
)
from neti_core.render import (
    render_ipset_delta,
    render_ipset_stage,
    render_ipset_swap,
    render_iptables_delta,
    render_iptables_full,
)
from neti_core.rules import RuleSet, RuleSetDiff

_TIMEOUT = 60.0


class RestoreBackend(FirewallBackend):
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
        self.wait_seconds = wait_seconds
        missing = [t for t in (self.iptables, self.restore, self.save, "ipset") if not shutil.which(t)]
        if missing:
            raise FirewallUnavailableError(f"{', '.join(missing)} not installed")

    def describe(self) -> str:
        return f"restore ({self.iptables})"

    # -- tools ---------------------------------------------------------------------------------
    def _run(self, argv: Sequence[str], text: str | None = None) -> str:
        """Run a tool; its refusal becomes FirewallApplyError naming the tool and its message."""
        try:
            result = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=_TIMEOUT)
        except FileNotFoundError as exc:
            raise FirewallUnavailableError(f"{argv[0]} not installed") from exc
        except subprocess.TimeoutExpired as exc:
            raise FirewallApplyError(f"{argv[0]} timed out after {_TIMEOUT:g}s") from exc
        if result.returncode != 0:
            if "Permission denied" in result.stderr or "Operation not permitted" in result.stderr:
                raise FirewallUnavailableError(f"{argv[0]}: {result.stderr.strip()} (needs root)")
            raise FirewallApplyError(f"{' '.join(argv[:3])} failed: {result.stderr.strip()[:500]}")
        return result.stdout

    def _iptables_restore(self, text: str) -> None:
        if text:
            self._run([self.restore, "--noflush", "-w", str(self.wait_seconds)], text)

    def _ipset_restore(self, text: str) -> None:
        if text:
            self._run(["ipset", "-exist", "restore"], text)

    def _set_names(self) -> set[str]:
        return set(self._run(["ipset", "list", "-n"]).split())

    def _builtin_jumps(self, desired: RuleSet) -> dict[tuple[str, str], list[str]]:
        """Jumps into Neti chains in the built-in chains Neti uses; ``-S CHAIN`` reads only that chain."""
        jumps: dict[tuple[str, str], list[str]] = {}
        for jump in desired.jumps:
            listing = self._run([self.iptables, "-w", str(self.wait_seconds), "-t", jump.table,
                                 "-S", jump.chain])
            jumps.update(parse_chain_listing(jump.table, listing))
        return jumps

    # -- FirewallBackend -------------------------------------------------------------------------
    def _apply_full(self, desired: RuleSet, live: LiveState | None) -> None:
        if live is None:
            sets = self._set_names()
            jumps = self._builtin_jumps(desired)
            stale: dict[str, list[str]] = {}
        else:
            sets = set(live.sets)
            jumps = live.jumps
            stale = {}
            for table, name in live.chains:
                if name not in desired.chain_names.get(table, ()):
                    stale.setdefault(table, []).append(name)
        self._ipset_restore(render_ipset_stage(
            desired, create_live=desired.ipset_name not in sets,
            destroy_stale_staging=desired.staging_set in sets))
        try:
            self._iptables_restore(render_iptables_full(desired, jumps, stale))
        except FirewallApplyError:
            self._ipset_restore(f"destroy {desired.staging_set}\n")
            raise
        self._ipset_restore(render_ipset_swap(desired))

    def _apply_delta(self, change: RuleSetDiff) -> None:
        new = change.new
        if change.ipset_full:
            sets = self._set_names()
            self._ipset_restore(render_ipset_stage(
                new, create_live=new.ipset_name not in sets,
                destroy_stale_staging=new.staging_set in sets))
        else:
            self._ipset_restore(render_ipset_delta(new.ipset_name, change.ipset_add, change.ipset_del))
        try:
            self._iptables_restore(render_iptables_delta(change))
        except FirewallApplyError:
            if change.ipset_full:
                self._ipset_restore(f"destroy {new.staging_set}\n")
            else:  # put the set back as it was: re-add what was deleted, delete what was added
                self._ipset_restore(render_ipset_delta(new.ipset_name, change.ipset_del, change.ipset_add))
            raise
        if change.ipset_full:
            self._ipset_restore(render_ipset_swap(new))

    def _read(self, ipset_name: str) -> LiveState:
        # Both reads run at once: at 10k members each takes tens of milliseconds.
        save = subprocess.Popen([self.save], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sets = subprocess.Popen(["ipset", "save"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            save_out, save_err = save.communicate(timeout=_TIMEOUT)
            sets_out, sets_err = sets.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            save.kill()
            sets.kill()
            raise FirewallApplyError("reading the live rules timed out") from exc
        if save.returncode != 0:
            raise FirewallUnavailableError(f"{self.save} failed: {save_err.strip()}")
        if sets.returncode != 0:
            raise FirewallUnavailableError(f"ipset save failed: {sets_err.strip()}")
        state = parse_iptables_save(save_out)
        return _with_sets(state, sets_out, ipset_name)

    def _flush(self, live: LiveState) -> None:
        self._iptables_restore(render_flush(live))
        self._ipset_restore("".join(f"destroy {name}\n" for name in live.sets))


def _with_sets(state: LiveState, save_text: str, ipset_name: str) -> LiveState:
    """Split a whole ``ipset save`` into Neti's sets: the live set's members and any staging set."""
    names = [line.split(" ", 2)[1] for line in save_text.splitlines() if line.startswith("create ")]
    state.sets = neti_sets(names, ipset_name)
    if ipset_name in names:
        create = f"create {ipset_name} "
        add = f"add {ipset_name} "
        mine = "\n".join(line for line in save_text.splitlines()
                         if line.startswith(add) or line.startswith(create))
        state.ipset, state.ipset_type = parse_ipset_save(mine)
    return state
