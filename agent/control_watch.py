"""Operator controls and ZooKeeper parameters, kept current by kazoo DataWatches.

The watches only record the latest value and poke the runner; the sync reads a consistent
snapshot. A malformed control document is reported and ignored, never taken for an instruction.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat
from kazoo.recipe.watchers import DataWatch

from neti_core.config import ZkPaths
from neti_core.errors import MalformedEntryError
from neti_core.registry import DEFAULT_INTERVAL_SECONDS, DEFAULT_MAXCHANGE
from neti_core.schema import FleetDefaults, RejectAllOverride, RejectAllSource, effective_reject_all

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    host: RejectAllOverride | None
    host_version: int | None   # mzxid of the host override: identifies one instruction
    fleet: FleetDefaults | None
    fleet_version: int | None
    maxchange: int
    interval: float
    problems: tuple[str, ...]

    def reject_all(self, configured: bool) -> tuple[bool, RejectAllSource, object]:
        """The effective value, where it came from, and a token naming the instruction."""
        value, source = effective_reject_all(self.host, self.fleet, configured)
        version = {"host": self.host_version, "fleet": self.fleet_version}.get(source)
        return value, source, (source, value, version)


class ControlWatcher:
    def __init__(self, client: KazooClient, paths: ZkPaths, instance_id: str,
                 on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._host: RejectAllOverride | None = None
        self._host_version: int | None = None
        self._fleet: FleetDefaults | None = None
        self._fleet_version: int | None = None
        self._maxchange = DEFAULT_MAXCHANGE
        self._interval = DEFAULT_INTERVAL_SECONDS
        self._problems: dict[str, str] = {}
        for path in (f"{paths.control_reject_all}", paths.control):
            client.ensure_path(path)
        DataWatch(client, f"{paths.control_reject_all}/{instance_id}", self._host_changed)
        DataWatch(client, paths.control_defaults, self._fleet_changed)
        DataWatch(client, paths.maxchange, self._maxchange_changed)
        DataWatch(client, paths.interval, self._interval_changed)

    def snapshot(self) -> ControlSnapshot:
        with self._lock:
            return ControlSnapshot(self._host, self._host_version, self._fleet, self._fleet_version,
                                   self._maxchange, self._interval, tuple(self._problems.values()))

    @property
    def interval(self) -> float:
        return self._interval

    def _record(self, key: str, problem: str | None) -> None:
        if problem is None:
            self._problems.pop(key, None)
        else:
            log.warning("%s", problem)
            self._problems[key] = problem

    def _host_changed(self, data: bytes | None, stat: ZnodeStat | None) -> None:
        with self._lock:
            self._host, self._host_version = None, None
            problem = None
            if data:
                try:
                    self._host, self._host_version = RejectAllOverride.from_json(data), stat.mzxid
                except MalformedEntryError as exc:
                    problem = f"host control ignored: {exc}"
            self._record("host", problem)
        self._on_change()

    def _fleet_changed(self, data: bytes | None, stat: ZnodeStat | None) -> None:
        with self._lock:
            self._fleet, self._fleet_version = None, None
            problem = None
            if data:
                try:
                    self._fleet, self._fleet_version = FleetDefaults.from_json(data), stat.mzxid
                except MalformedEntryError as exc:
                    problem = f"fleet defaults ignored: {exc}"
            self._record("fleet", problem)
        self._on_change()

    def _maxchange_changed(self, data: bytes | None, stat: ZnodeStat | None) -> None:
        value, problem = _number(data, DEFAULT_MAXCHANGE, integer=True, what="maxchange")
        with self._lock:
            self._maxchange = int(value)
            self._record("maxchange", problem)
        self._on_change()

    def _interval_changed(self, data: bytes | None, stat: ZnodeStat | None) -> None:
        value, problem = _number(data, DEFAULT_INTERVAL_SECONDS, integer=False, what="interval")
        with self._lock:
            self._interval = min(float(value), 3600.0)
            self._record("interval", problem)
        self._on_change()


def _number(data: bytes | None, default: float, *, integer: bool, what: str) -> tuple[float, str | None]:
    if not data:
        return default, None
    text = data.decode(errors="replace").strip()
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return default, f"{what} {text!r} is not a number; using {default:g}"
    if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
        return default, f"{what} {text!r} is out of range; using {default:g}"
    return value, None


def read_controls_once(client: KazooClient, paths: ZkPaths, instance_id: str) -> ControlSnapshot:
    """The controls as they are now, read without watches or writes (for --dry-run)."""
    problems: list[str] = []

    def get(path: str) -> tuple[bytes | None, ZnodeStat | None]:
        stat = client.exists(path)
        return (client.get(path)[0], stat) if stat is not None else (None, None)

    host_data, host_stat = get(f"{paths.control_reject_all}/{instance_id}")
    fleet_data, fleet_stat = get(paths.control_defaults)
    host = fleet = None
    try:
        host = RejectAllOverride.from_json(host_data) if host_data else None
    except MalformedEntryError as exc:
        problems.append(f"host control ignored: {exc}")
    try:
        fleet = FleetDefaults.from_json(fleet_data) if fleet_data else None
    except MalformedEntryError as exc:
        problems.append(f"fleet defaults ignored: {exc}")
    maxchange, problem = _number(get(paths.maxchange)[0], DEFAULT_MAXCHANGE, integer=True,
                                 what="maxchange")
    problems += [problem] if problem else []
    interval, problem = _number(get(paths.interval)[0], DEFAULT_INTERVAL_SECONDS, integer=False,
                                what="interval")
    problems += [problem] if problem else []
    return ControlSnapshot(host, host_stat.mzxid if host and host_stat else None, fleet,
                           fleet_stat.mzxid if fleet and fleet_stat else None, int(maxchange),
                           float(interval), tuple(problems))
