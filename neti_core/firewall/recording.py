"""The ``recording`` backend: no kernel, same interface. Used by the lab when not root, and in tests.

It keeps a simulated kernel (a :class:`LiveState`) that applies and flushes change exactly as a
real backend would leave it, and records every operation — the very ``iptables-restore`` and
``ipset restore`` text a real backend would run — in memory and, optionally, as JSON lines in a
file. Tests may edit :attr:`RecordingBackend.state` to simulate someone tampering with the rules.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

from neti_core.firewall.base import BackendBase
from neti_core.firewall.readback import LiveState, expected_state, render_flush, stale_chains
from neti_core.render import (
    render_ipset_delta,
    render_ipset_full,
    render_iptables_delta,
    render_iptables_full,
)
from neti_core.rules import RuleSet, RuleSetDiff


@dataclass(frozen=True)
class Record:
    """One operation: what, for which RuleSet, and the tool input a real backend would have used."""

    operation: str  # full, delta, flush
    ruleset_hash: str | None
    iptables: str
    ipset: str
    at: float


class RecordingBackend(BackendBase):
    """Applies to an in-memory LiveState; ``records`` (and ``path``) keep what would have run."""

    name = "recording"

    def __init__(self, ipset_name: str, *, path: Path | None = None) -> None:
        super().__init__(ipset_name)
        self.path = Path(path) if path is not None else None
        self.state = LiveState()
        self.records: list[Record] = []

    def describe(self) -> str:
        return "recording (no kernel)" + (f" → {self.path}" if self.path else "")

    def _record(self, operation: str, ruleset_hash: str | None, iptables: str, ipset: str) -> None:
        record = Record(operation, ruleset_hash, iptables, ipset, time.time())
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record.__dict__) + "\n")

    def _apply_full(self, desired: RuleSet, live: LiveState | None) -> None:
        current = live or self.state
        text = render_iptables_full(desired, current.jumps, stale_chains(current, desired))
        self._record("full", desired.hash, text, render_ipset_full(desired))
        self.state = self._merge(expected_state(desired))

    def _apply_delta(self, change: RuleSetDiff) -> None:
        new = change.new
        ipset = (render_ipset_full(new) if change.ipset_full
                 else render_ipset_delta(new.ipset_name, change.ipset_add, change.ipset_del))
        self._record("delta", new.hash, render_iptables_delta(change), ipset)
        self.state = self._merge(expected_state(new))

    def _merge(self, wanted: LiveState) -> LiveState:
        """Neti's objects as a real apply leaves them: foreign jumps elsewhere are kept."""
        merged = copy.deepcopy(wanted)
        for key, specs in self.state.jumps.items():
            if key not in merged.jumps:
                merged.jumps[key] = list(specs)
        return merged

    def _retire_others(self) -> list[str]:
        return []  # no kernel, so no other backend's objects

    def _read(self, ipset_name: str) -> LiveState:
        state = copy.deepcopy(self.state)
        if ipset_name not in state.sets:
            state.ipset = None
        return state

    def _flush(self, live: LiveState) -> None:
        self._record("flush", None, render_flush(live),
                     "".join(f"destroy {name}\n" for name in live.sets))
        self.state = LiveState()
