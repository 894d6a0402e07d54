"""The party as one agent sees it, at a cost in proportion to what changed (docs/membership.md).

One one-shot child watch per mirror bucket: a join or leave fires the watch of one bucket, and the
next snapshot re-reads that bucket only (~80 names at 10,000 members). ``ip-map`` itself is only
stat'ed: new agents create both entries in one transaction, so ``ip-map``'s cversion minus the sum
of the buckets' cversions stays constant while only new agents come and go. When it moves, some
client wrote ``ip-map`` alone (an older agent, the seed's scripts): then, and only then, the whole
``ip-map`` is read, and its entries that have no mirror twin join the view as legacy entries. A
poll of that stat every ``legacy_poll_seconds`` catches legacy changes, which fire no bucket watch;
and while legacy entries exist (a mixed fleet) the full read also sets a child watch on ``ip-map``,
so the view follows older agents at once, at the old price, until the last of them is gone.

After a reconnect within the session kazoo re-registers the watches with the last zxid seen, and
ZooKeeper fires those whose bucket changed meanwhile, so exactly the changed buckets are re-read.
A new session has no watches: every bucket is re-read (the cost of a cold start).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.protocol.states import KazooState, WatchedEvent, ZnodeStat

from neti_core.config import ZkPaths
from neti_core.members import ParsedParty, parse_party
from neti_core.party.mirror import ALL_BUCKETS

log = logging.getLogger(__name__)
_NO_PARTY = ZnodeStat(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # ip-map not created yet: empty, version 0

READ_TIMEOUT_SECONDS = 5.0
LEGACY_POLL_SECONDS = 5.0
_SETTLE_ATTEMPTS = 3  # re-read this often while buckets keep changing, then read ip-map whole


@dataclass(frozen=True, slots=True)
class PartyView:
    """One consistent-enough snapshot: the parsed party and the ``ip-map`` cversion it reflects."""

    party: ParsedParty
    names: tuple[str, ...]  # every entry's node name, malformed ones too (for the console)
    cversion: int
    buckets_read: int
    full_ip_map_reads: int


class MirrorView:
    """Keeps the party current from bucket watches; :meth:`snapshot` runs on the caller's thread."""

    def __init__(self, client: KazooClient, paths: ZkPaths, on_change: Callable[[], None], *,
                 legacy_poll_seconds: float = LEGACY_POLL_SECONDS) -> None:
        self.client = client
        self.paths = paths
        self.on_change = on_change
        self.legacy_poll_seconds = legacy_poll_seconds
        self._lock = threading.Lock()
        self._dirty: set[str] = set(ALL_BUCKETS)
        self._names: dict[str, frozenset[str]] = {}
        self._parsed: dict[str, ParsedParty] = {}  # per bucket, parsed when read: a change parses ~80
        self._cversions: dict[str, int] = {}
        self._legacy: frozenset[str] = frozenset()
        self._legacy_parsed = parse_party([])
        self._offset: int | None = None  # ip-map cversion - sum of bucket cversions
        self._seen_ip_map_cversion = -1
        self._ip_map_dirty = False  # the mixed-fleet child watch on ip-map fired
        self._lost = False
        self.full_ip_map_reads = 0
        self._watchers = {name: self._make_watcher(name) for name in ALL_BUCKETS}
        self._stop = threading.Event()
        client.add_listener(self._state_changed)
        self._poller = threading.Thread(target=self._poll_legacy, name="neti-legacy-poll", daemon=True)
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        self.client.remove_listener(self._state_changed)

    # --- kazoo's threads: only mark and notify ---------------------------------------------------

    def _make_watcher(self, bucket: str) -> Callable[[WatchedEvent], None]:
        def watcher(_event: WatchedEvent) -> None:
            with self._lock:
                self._dirty.add(bucket)
            self.on_change()
        return watcher

    def _ip_map_changed(self, _event: WatchedEvent) -> None:
        self._ip_map_dirty = True
        self.on_change()

    def _state_changed(self, state: KazooState) -> None:
        if state == KazooState.LOST:
            self._lost = True
        elif state == KazooState.CONNECTED and self._lost:
            self._lost = False
            with self._lock:  # a new session holds no watches: read everything again
                self._dirty.update(ALL_BUCKETS)
            self.on_change()

    def _poll_legacy(self) -> None:
        while not self._stop.wait(self.legacy_poll_seconds):
            try:
                stat = self.client.exists(self.paths.ip_map)
            except KazooException:
                continue
            if stat is not None and stat.cversion != self._seen_ip_map_cversion:
                self.on_change()

    # --- the snapshot ----------------------------------------------------------------------------

    def snapshot(self) -> PartyView:
        """Re-read the changed buckets (and ip-map only if someone wrote it alone). Raises KazooException."""
        read = 0
        for _attempt in range(_SETTLE_ATTEMPTS):
            read += self._read_dirty_buckets()
            ip_map_stat = self._stat_ip_map()
            with self._lock:
                settled = not self._dirty  # no watch fired since our reads: buckets are current
            if settled and not self._ip_map_dirty and self._explains(ip_map_stat):
                break
            if settled:  # ip-map moved on its own: someone wrote it without the mirror
                ip_map_stat = self._read_ip_map()
                break
        else:
            ip_map_stat = self._read_ip_map()
        self._seen_ip_map_cversion = ip_map_stat.cversion
        parts = [self._legacy_parsed, *self._parsed.values()]
        party = ParsedParty(tuple(e for p in parts for e in p.entries),
                            tuple(m for p in parts for m in p.malformed))
        names = tuple(n for names in (self._legacy, *self._names.values()) for n in names)
        return PartyView(party, names, ip_map_stat.cversion, read, self.full_ip_map_reads)

    def _explains(self, ip_map_stat: Any) -> bool:
        """Do the mirror and the known legacy entries account for ip-map exactly, without reading it?

        Every mirror entry has its ip-map twin (one transaction), so when ip-map holds as many
        children as the mirror, it holds exactly the mirror's, and there are no legacy entries.
        Otherwise the cversion offset says whether anything but mirrored agents touched ip-map.
        """
        mirrored = sum(len(names) for names in self._names.values())
        offset = ip_map_stat.cversion - sum(self._cversions.values())
        if ip_map_stat.numChildren == mirrored:
            self._legacy, self._offset = frozenset(), offset
            self._legacy_parsed = parse_party([])
            return True
        return bool(self._offset == offset and ip_map_stat.numChildren == mirrored + len(self._legacy))

    def _stat_ip_map(self) -> Any:
        stat = self.client.exists_async(self.paths.ip_map).get(timeout=READ_TIMEOUT_SECONDS)
        if stat is None:  # no party yet (a read-only console creates nothing): wait for it
            if self.client.exists(self.paths.ip_map, watch=self._ip_map_changed) is None:
                return _NO_PARTY
            return self._stat_ip_map()
        return stat

    def _read_dirty_buckets(self) -> int:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        try:
            pending = [(bucket, self.client.get_children_async(
                f"{self.paths.members}/{bucket}", watch=self._watchers[bucket], include_data=True))
                for bucket in sorted(dirty)]
            for bucket, result in pending:
                try:
                    children, stat = result.get(timeout=READ_TIMEOUT_SECONDS)
                except NoNodeError:  # no agent of this version has joined yet
                    children, cversion = [], 0
                    self.client.exists(f"{self.paths.members}/{bucket}", watch=self._watchers[bucket])
                else:
                    cversion = stat.cversion
                self._names[bucket] = frozenset(children)
                self._parsed[bucket] = parse_party(children)
                self._cversions[bucket] = cversion
                dirty.discard(bucket)
        except BaseException:
            with self._lock:
                self._dirty.update(dirty)  # read them again next time
            raise
        return len(pending)

    def _read_ip_map(self) -> Any:
        """Read the whole original party: needed only when a client wrote it without the mirror."""
        self._ip_map_dirty = False
        watch = self._ip_map_changed if self._legacy else None  # keep following a mixed fleet
        try:
            children, stat = self.client.get_children_async(
                self.paths.ip_map, watch=watch, include_data=True).get(timeout=READ_TIMEOUT_SECONDS)
        except NoNodeError:  # deleted under us: nothing legacy, and its creation is watched
            self._legacy, self._offset = frozenset(), None
            self._legacy_parsed = parse_party([])
            return self._stat_ip_map()
        except BaseException:
            self._ip_map_dirty = True
            raise
        self.full_ip_map_reads += 1
        mirrored: set[str] = set()
        for bucket_names in self._names.values():
            mirrored.update(bucket_names)
        # Mirror entries whose ip-map twin is gone stay visible until their bucket says otherwise.
        self._legacy = frozenset(name for name in children if name not in mirrored)
        self._legacy_parsed = parse_party(sorted(self._legacy))
        self._offset = stat.cversion - sum(self._cversions.values())
        if self._legacy and watch is None:  # first sight of older agents: follow ip-map from now on
            log.info("%d party entries exist only in ip-map (older agents)", len(self._legacy))
            self.client.get_children_async(self.paths.ip_map, watch=self._ip_map_changed)
        return stat
