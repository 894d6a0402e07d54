"""The firewall backends' shared logic, their errors, and ``make_backend`` (which picks one).

Interface (:class:`~neti_core.firewall.protocol.FirewallBackend`), as the agent uses it::

    from neti_core.rules import build_ruleset
    from neti_core.firewall.base import make_backend, FirewallError

    backend = make_backend(config)              # firewall_backend: auto | nft | restore | iptc | recording
    backend.describe()                          # e.g. "restore (iptables-nft)"; .detection says why
    desired = build_ruleset(side, members, config, reject_all)   # pure; desired.hash: 16 hex chars
    result = backend.apply(desired)             # ApplyResult: mode full|delta|noop|..., seconds, summary
    backend.verify(desired)                     # raises FirewallVerifyError(.drift) unless live == desired
    drift = backend.drift(desired)              # Drift: falsy when in sync, str() lists what differs
    backend.repair(desired)                     # full re-apply from what is live, then verify
    print(backend.plan(desired))                # what would change; reads only, never writes
    backend.flush()                             # removes every NETI-* chain, jump and Neti's ipset
    backend.read()                              # LiveState: the normalised live objects
    backend.close()                             # ends a NamespacedBackend's thread; no-op otherwise

Guarantees: ``apply`` is atomic per table and, when it raises :class:`FirewallApplyError`, the
rules that were live before are still live (a failed delta falls back once to a full sync, which is
atomic per table too). The first apply of a backend object is a full sync; later ones apply the
diff against what this object last applied. Rules of other tools in the same tables are never
touched. Backends act in the network namespace of the *calling thread* and start no threads, so an
agent started with ``ip netns exec NS`` programs NS; ``make_backend(config, netns="NS")`` instead
returns a proxy that runs every call on a thread pinned inside NS (used by tests and the lab).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from neti_core.errors import NetiError
from neti_core.firewall.protocol import FirewallBackend
from neti_core.firewall.readback import Drift, LiveState, compare, stale_chains
from neti_core.render import render_iptables_full
from neti_core.rules import RuleSet, RuleSetDiff, diff

if TYPE_CHECKING:
    from neti_core.config import NetiConfig
    from neti_core.firewall.detect import Detection

# The backend `auto` picks where the host's iptables is legacy. Measured with bench/apply.py at
# 10,000 members (2 cores): iptc full sync ~75 ms, delta ~20 ms, drift ~45 ms, against restore on
# iptables-legacy ~95-120 ms, ~25-35 ms, ~35 ms: iptc writes a table with one commit and no process
# starts, and only it met the full-sync and delta goals on legacy in every run. On nft hosts
# python-iptables cannot be used at all, so `auto` is restore with iptables-nft there.
AUTO_LEGACY_BACKEND = "iptc"
_PLAN_COMMAND_LINES = 40


class FirewallError(NetiError):
    """Base of the firewall errors."""


class FirewallUnavailableError(FirewallError):
    """The tools, library or privileges a backend needs are missing."""


class FirewallApplyError(FirewallError):
    """The kernel refused a change; the rules that were live before are still live."""


class FirewallVerifyError(FirewallError):
    """What is live differs from what was applied; ``drift`` says how."""

    def __init__(self, drift: Drift) -> None:
        self.drift = drift
        super().__init__(f"live rules differ from the RuleSet:\n{drift}")


class BackendConflictError(FirewallError):
    """The chosen backend would put Neti's rules in the other iptables flavour than the host's."""


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did: ``mode`` is full, delta, noop, repair or full-after-failed-delta."""

    mode: str
    ruleset_hash: str
    seconds: float
    summary: tuple[str, ...] = ()
    drift: Drift = field(default_factory=Drift)


class BackendBase(ABC):
    """The apply/delta/repair logic the iptables backends share; each supplies the kernel I/O.

    Subclasses satisfy :class:`~neti_core.firewall.protocol.FirewallBackend`.
    """

    name = "abstract"

    def __init__(self, ipset_name: str) -> None:
        self.ipset_name = ipset_name
        self.detection: Detection | None = None
        self._applied: RuleSet | None = None
        self._retired = False
        self._lock = threading.RLock()

    # -- what subclasses implement -------------------------------------------------------------
    @abstractmethod
    def _apply_full(self, desired: RuleSet, live: LiveState | None) -> None:
        """Replace all Neti objects with ``desired``; ``live`` is a fresh read when the caller has one."""

    @abstractmethod
    def _apply_delta(self, change: RuleSetDiff) -> None:
        """Apply only ``change``; raise FirewallApplyError (state unchanged) when the kernel refuses."""

    @abstractmethod
    def _read(self, ipset_name: str) -> LiveState:
        """Read Neti's live objects."""

    @abstractmethod
    def _flush(self, live: LiveState) -> None:
        """Remove the objects in ``live``."""

    def _retire_others(self) -> list[str]:
        """Remove the Neti objects another backend left (a host switching backends); lines of what."""
        from neti_core.firewall.nft_backend import retire_native_table

        retire_native_table()
        return []

    def _full_text(self, desired: RuleSet, live: LiveState) -> tuple[str, str]:
        """What a full sync would feed the kernel, for ``plan --commands``: (heading, text)."""
        return ("iptables-restore --noflush input of a full sync",
                render_iptables_full(desired, live.jumps, stale_chains(live, desired)))

    def _full(self, desired: RuleSet, live: LiveState | None) -> list[str]:
        """A full sync, then (once per backend object) the removal of another backend's objects.

        The removal comes after the commit so the host is never without Neti's rules.
        """
        self._apply_full(desired, live)
        if self._retired:
            return []
        removed = self._retire_others()
        self._retired = True
        return removed

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Nothing to release; present so every backend, wrapped or not, can be closed alike."""
        return None

    # -- the interface ------------------------------------------------------------------------
    @property
    def applied(self) -> RuleSet | None:
        """The RuleSet this backend object last applied successfully (None: unknown, next is full)."""
        return self._applied

    def forget(self) -> None:
        """Make the next apply a full sync (e.g. after the kernel state was changed behind our back)."""
        self._applied = None

    def apply(self, desired: RuleSet, *, full: bool = False) -> ApplyResult:
        """Make the kernel hold ``desired``: a full sync the first time (or with ``full``), else a delta."""
        with self._lock:
            started = time.perf_counter()
            previous, self._applied = self._applied, None
            if full or previous is None:
                retired = self._full(desired, None)
                mode, summary = "full", diff(None, desired).summary() + retired
            else:
                change = diff(previous, desired)
                summary = change.summary()
                if change.empty:
                    mode = "noop"
                else:
                    try:
                        self._apply_delta(change)
                        mode = "delta"
                    except FirewallApplyError as exc:
                        summary = [*summary, f"delta refused ({exc}); full sync instead"]
                        summary += self._full(desired, None)
                        mode = "full-after-failed-delta"
            self._applied = desired
            return ApplyResult(mode, desired.hash, time.perf_counter() - started, tuple(summary))

    def read(self, ipset_name: str | None = None) -> LiveState:
        """Neti's objects as they are in the kernel now, normalised for comparison."""
        with self._lock:
            return self._read(ipset_name or self.ipset_name)

    def drift(self, desired: RuleSet) -> Drift:
        """What differs between the kernel and ``desired`` (empty when in sync)."""
        return compare(self.read(desired.ipset_name), desired)

    def verify(self, desired: RuleSet) -> None:
        """Raise FirewallVerifyError unless the kernel holds exactly ``desired``."""
        found = self.drift(desired)
        if found:
            raise FirewallVerifyError(found)

    def repair(self, desired: RuleSet) -> ApplyResult:
        """Drift check, and when anything differs a full sync built from what is live, then verify."""
        with self._lock:
            started = time.perf_counter()
            live = self._read(desired.ipset_name)
            found = compare(live, desired)
            if not found:
                self._applied = desired
                return ApplyResult("noop", desired.hash, time.perf_counter() - started)
            self._applied = None
            self._full(desired, live)
            self._applied = desired
            self.verify(desired)
            return ApplyResult("repair", desired.hash, time.perf_counter() - started,
                               tuple(found.items), found)

    def plan(self, desired: RuleSet, *, commands: bool = False) -> str:
        """Human-readable: what is different now and what a sync would do. Reads only."""
        live = self.read(desired.ipset_name)
        found = compare(live, desired)
        lines = [f"plan: ruleset {desired.hash} (side={desired.side.value}, "
                 f"reject_all={desired.reject_all}) on {self.describe()}"]
        if not found:
            lines.append("  in sync: nothing would change")
            return "\n".join(lines) + "\n"
        lines.append(f"  {len(found.items)} difference(s) would be fixed:")
        lines += [f"  - {item}" for item in found.items]
        if commands:
            heading, full_text = self._full_text(desired, live)
            text = full_text.splitlines()
            lines.append(f"  {heading}:")
            lines += [f"    {line}" for line in text[:_PLAN_COMMAND_LINES]]
            if len(text) > _PLAN_COMMAND_LINES:
                lines.append(f"    … {len(text) - _PLAN_COMMAND_LINES} more lines")
        return "\n".join(lines) + "\n"

    def flush(self) -> None:
        """Remove every Neti chain, every jump into one and Neti's sets; nothing else."""
        with self._lock:
            self._flush(self._read(self.ipset_name))
            self._applied = None


class NamespacedBackend:
    """Runs every call of a backend on one thread pinned inside a network namespace.

    For callers that are not themselves inside the namespace (tests, the in-process lab). The
    wrapped backend's methods are proxied one to one.
    """

    def __init__(self, backend: FirewallBackend, netns: str) -> None:
        from neti_core.firewall.netns_thread import NetnsWorker

        self.backend = backend
        self.netns = netns
        self._worker = NetnsWorker(netns)

    # Explicit methods, not a __getattr__ proxy, so the wrapper is checked against the protocol.
    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def ipset_name(self) -> str:
        return self.backend.ipset_name

    @property
    def detection(self) -> Detection | None:
        return self.backend.detection

    @property
    def applied(self) -> RuleSet | None:
        return self.backend.applied

    def describe(self) -> str:
        return self._worker.call(self.backend.describe)

    def forget(self) -> None:
        self._worker.call(self.backend.forget)

    def apply(self, desired: RuleSet, *, full: bool = False) -> ApplyResult:
        return self._worker.call(self.backend.apply, desired, full=full)

    def read(self, ipset_name: str | None = None) -> LiveState:
        return self._worker.call(self.backend.read, ipset_name)

    def drift(self, desired: RuleSet) -> Drift:
        return self._worker.call(self.backend.drift, desired)

    def verify(self, desired: RuleSet) -> None:
        self._worker.call(self.backend.verify, desired)

    def repair(self, desired: RuleSet) -> ApplyResult:
        return self._worker.call(self.backend.repair, desired)

    def plan(self, desired: RuleSet, *, commands: bool = False) -> str:
        return self._worker.call(self.backend.plan, desired, commands=commands)

    def flush(self) -> None:
        self._worker.call(self.backend.flush)

    def close(self) -> None:
        self._worker.close()


def make_backend(config: NetiConfig, *, netns: str | None = None,
                 record_path: Path | None = None) -> FirewallBackend:
    """The backend ``config.firewall_backend`` asks for; ``auto`` follows the host's iptables flavour.

    ``auto``: the native ``nft`` backend where the kernel has nf_tables, ``nft`` is installed and
    Neti's chains are not in legacy iptables; otherwise nft hosts get ``restore`` with
    iptables-nft (python-iptables cannot write nft tables) and legacy hosts
    ``AUTO_LEGACY_BACKEND``. An explicit ``iptc`` on a host whose rules live in
    nft raises BackendConflictError rather than splitting the rules across the two. With
    ``netns`` the backend is wrapped in a NamespacedBackend (detection runs inside the namespace).
    """
    from neti_core.firewall.detect import detect
    from neti_core.firewall.recording import RecordingBackend

    choice = config.firewall_backend
    if choice == "recording":
        return RecordingBackend(config.ipset_name, path=record_path)
    if netns is not None:
        from neti_core.firewall.netns_thread import call_in_netns

        detection = call_in_netns(netns, detect)
    else:
        detection = detect()
    backend = _construct(choice, detection, config.ipset_name)
    backend.detection = detection
    return NamespacedBackend(backend, netns) if netns is not None else backend


def _construct(choice: str, detection: Detection, ipset_name: str) -> BackendBase:
    from neti_core.firewall.restore import RestoreBackend

    if choice == "auto":
        choice = "nft" if detection.native else (
            "restore" if detection.mode == "nft" else AUTO_LEGACY_BACKEND)
    if choice == "nft":
        from neti_core.firewall.nft_backend import NftBackend

        return NftBackend(ipset_name)
    if choice == "restore":
        return RestoreBackend(ipset_name, flavour=detection.mode)
    if choice == "iptc":
        if detection.mode == "nft" and detection.nft_rules:
            raise BackendConflictError(
                f"firewall_backend iptc writes legacy tables, but this host's rules are in nft "
                f"({detection.reason}); use restore or auto")
        from neti_core.firewall.iptc_backend import IptcBackend

        return IptcBackend(ipset_name)
    raise FirewallUnavailableError(f"unknown firewall backend {choice!r}")
