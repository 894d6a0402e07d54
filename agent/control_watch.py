"""Operator controls and ZooKeeper parameters, kept current by kazoo DataWatches, failing static.

The watches only record the latest value and poke the runner; the sync reads a consistent
snapshot. A document that does not decode is never taken for an instruction, and never for the
absence of one: the last good value stays in force (across a restart too, through the state file),
and the problem is reported in the agent's status until a good value is written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat
from kazoo.recipe.watchers import DataWatch

from agent.last_good import load_last_good, save_last_good
from neti_core.config import ZkPaths
from neti_core.errors import MalformedEntryError
from neti_core.maxchange import DEFAULT_MAXCHANGE as DEFAULT_GUARD_LIMIT
from neti_core.maxchange import MaxChange, decode_guard_limit
from neti_core.schema import (
    DEFAULT_INTERVAL_SECONDS,
    FleetDefaults,
    RejectAllOverride,
    RejectAllSource,
    decode_interval,
    decode_maxchange,
    effective_reject_all,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Kind:
    """One watched document: how to decode it, its value when absent, what stands in when unknown."""

    decode: Callable[[bytes], Any]
    absent: Any
    fallback: str  # said when garbage arrives before any good value was ever read


_KINDS: dict[str, _Kind] = {
    "host": _Kind(RejectAllOverride.from_json, None, "using neti.yml's reject_all"),
    "fleet": _Kind(FleetDefaults.from_json, None, "using neti.yml's reject_all"),
    "maxchange": _Kind(lambda data: decode_guard_limit(data, decode_maxchange), DEFAULT_GUARD_LIMIT,
                       f"using the default {DEFAULT_GUARD_LIMIT}"),
    "interval": _Kind(decode_interval, DEFAULT_INTERVAL_SECONDS,
                      f"using the default {DEFAULT_INTERVAL_SECONDS:g} s"),
}


@dataclass(frozen=True, slots=True)
class Slot:
    """The value in force for one document, the raw text it came from, and what is wrong now."""

    value: Any
    version: int | None = None   # mzxid of the good document: identifies one instruction
    data: str | None = None      # the good document's text (None: the node was absent)
    good_seen: bool = False      # a good value (or a definite absence) was ever read
    problem: str | None = None


def next_slot(key: str, previous: Slot, data: bytes | None, stat: ZnodeStat | None) -> Slot:
    """Pure: the slot after the watch saw ``data``. Garbage keeps the previous value in force."""
    kind = _KINDS[key]
    if stat is None:  # the node is absent: a definite "not set"
        return Slot(kind.absent, good_seen=True)
    try:
        value = kind.decode(data or b"")
    except MalformedEntryError as exc:
        kept = ("keeping the last good value" if previous.good_seen
                else f"never read a good one, {kind.fallback}")
        return Slot(previous.value, previous.version, previous.data, previous.good_seen,
                    f"{_PATHS[key]} ignored ({exc}); {kept}")
    return Slot(value, stat.mzxid, (data or b"").decode(), good_seen=True)


_PATHS = {"host": "host override", "fleet": "control/defaults", "maxchange": "maxchange",
          "interval": "interval"}


def restore_slot(key: str, saved: dict[str, Any] | None) -> tuple[Slot, str | None]:
    """The slot a previous run saved, decoded again; a note if it no longer decodes."""
    kind = _KINDS[key]
    if saved is None:
        return Slot(kind.absent), None
    if saved["data"] is None:
        return Slot(kind.absent, good_seen=True), None
    try:
        return Slot(kind.decode(saved["data"].encode()), saved["version"], saved["data"], True), None
    except MalformedEntryError as exc:
        return Slot(kind.absent), f"saved last good {key} unreadable ({exc}); ignored"


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    host: RejectAllOverride | None
    host_version: int | None   # mzxid of the host override: identifies one instruction
    fleet: FleetDefaults | None
    fleet_version: int | None
    maxchange: MaxChange
    interval: float
    problems: tuple[str, ...]

    def reject_all(self, configured: bool) -> tuple[bool, RejectAllSource, object]:
        """The effective value, where it came from, and a token naming the instruction."""
        value, source = effective_reject_all(self.host, self.fleet, configured)
        version = {"host": self.host_version, "fleet": self.fleet_version}.get(source)
        return value, source, (source, value, version)


def snapshot_of(slots: dict[str, Slot]) -> ControlSnapshot:
    return ControlSnapshot(slots["host"].value, slots["host"].version, slots["fleet"].value,
                           slots["fleet"].version, slots["maxchange"].value,
                           float(slots["interval"].value),
                           tuple(s.problem for s in slots.values() if s.problem))


class ControlWatcher:
    def __init__(self, client: KazooClient, paths: ZkPaths, instance_id: str,
                 on_change: Callable[[], None], state_file: Path | None = None) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state_file = state_file
        saved, notes = load_last_good(state_file) if state_file is not None else ({}, [])
        self._slots: dict[str, Slot] = {}
        for key in _KINDS:
            self._slots[key], note = restore_slot(key, saved.get(key))
            notes += [note] if note else []
        for note in notes:
            log.warning("%s", note)
        for path in (paths.control_reject_all, paths.control):
            client.ensure_path(path)
        watched = {"host": f"{paths.control_reject_all}/{instance_id}", "fleet": paths.control_defaults,
                   "maxchange": paths.maxchange, "interval": paths.interval}
        for key, path in watched.items():
            DataWatch(client, path, self._watcher(key))

    def snapshot(self) -> ControlSnapshot:
        with self._lock:
            return snapshot_of(self._slots)

    @property
    def interval(self) -> float:
        return float(self._slots["interval"].value)

    def _watcher(self, key: str) -> Callable[[bytes | None, ZnodeStat | None], None]:
        def changed(data: bytes | None, stat: ZnodeStat | None) -> None:
            with self._lock:
                before = self._slots[key]
                after = self._slots[key] = next_slot(key, before, data, stat)
                if after.problem and after.problem != before.problem:
                    log.warning("%s", after.problem)
                if (after.data, after.version, after.good_seen) != (before.data, before.version,
                                                                    before.good_seen):
                    self._save()
            self._on_change()
        return changed

    def _save(self) -> None:
        if self._state_file is None:
            return
        entries = {key: {"data": slot.data, "version": slot.version}
                   for key, slot in self._slots.items() if slot.good_seen}
        try:
            save_last_good(self._state_file, entries)
        except OSError as exc:
            log.warning("cannot save the last good controls to %s: %s", self._state_file, exc)


def read_controls_once(client: KazooClient, paths: ZkPaths, instance_id: str,
                       state_file: Path | None = None) -> ControlSnapshot:
    """The controls as they are now, read without watches or writes (for --dry-run)."""
    saved, _ = load_last_good(state_file) if state_file is not None else ({}, [])
    watched = {"host": f"{paths.control_reject_all}/{instance_id}", "fleet": paths.control_defaults,
               "maxchange": paths.maxchange, "interval": paths.interval}
    slots = {}
    for key, path in watched.items():
        stat = client.exists(path)
        data = client.get(path)[0] if stat is not None else None
        slots[key] = next_slot(key, restore_slot(key, saved.get(key))[0], data, stat)
    return snapshot_of(slots)
