"""The live fleet view: ZooKeeper watches keep a :class:`FleetModel` current; batches come out.

Why one-shot watches armed in bulk (and not kazoo's ``DataWatch`` recipe, nor tree polling): at
10,000 hosts the view needs a watch on every ``status/`` node. ``DataWatch`` objects took 4.8 s
(one synchronous read each); pipelined ``get_async(path, watch=cb)`` 1.2 s for the statuses and
2.4 s with the overlay map, all on the GIL the console paints with. Now every status and overlay
map entry comes in a few multi-reads and the statuses' watches are armed with one ``setWatches``
per ~3,000 paths (:mod:`neti_core.zkbulk`: 0.07 s for 20,000 nodes); the same is done for the
statuses whose watches fired within one coalescing window, so a membership change that makes
every agent rewrite its status costs a few requests, not 10,000. Persistent recursive watches
(ZooKeeper 3.6+ ``addWatch``) would need one watch instead of 10,000, but kazoo 2.11 has no
``add_watch`` and its event dispatch only knows one-shot watchers. ``bench/console.py
--watch-strategies`` repeats the measurement.

The party comes from :class:`neti_core.party.view.MirrorView`, as in the agent: a join or leave
re-reads one mirror bucket, not all of ``ip-map`` (docs/membership.md).

Threads: kazoo calls the watch and completion callbacks on its own threads; they only put an item
on a queue. :meth:`LiveFleet.run` (a Textual thread worker, in the console) is the one thread that
re-arms watches, feeds the model and emits one batch per coalescing window. Every (re)connection
re-reads the whole tree, and items queued before that read are dropped (their generation is old),
so a stale read can never overwrite a fresher one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import EventType, KazooState, WatchedEvent

from neti_core.aws import GroupOpening, Instance
from neti_core.config import ZkPaths
from neti_core.fleet.events import FleetBatch
from neti_core.fleet.fullread import DIRS, READ_TIMEOUT, SINGLES, TreeReader, dir_paths, single_paths
from neti_core.fleet.state import FleetSnapshot, ZkState
from neti_core.fleet.tracker import FleetModel
from neti_core.fleet.treeread import AUDIT_KEEP, audit_seq
from neti_core.party.view import MirrorView
from neti_core.zkbulk import arm_data_watches, last_zxid, read_many

log = logging.getLogger(__name__)

DEFAULT_COALESCE_SECONDS = 0.05
# Statuses read before the first rows go on screen (a few screenfuls); the rest follow as updates.
FIRST_SLICE = 300
LOADING_COALESCE_SECONDS = 1.0
# Reads of a progressive full read handled per queue item (see _load).
LOADING_CHUNK = 250
_ZK_STATES = {KazooState.CONNECTED: ZkState.CONNECTED, KazooState.SUSPENDED: ZkState.SUSPENDED,
              KazooState.LOST: ZkState.LOST}


class LiveFleet:
    """Watches one Neti tree. Feed EC2 inventories in with :meth:`submit_instances`."""

    def __init__(self, client: KazooClient, paths: ZkPaths, *,
                 coalesce: float = DEFAULT_COALESCE_SECONDS, audit_keep: int = AUDIT_KEEP,
                 ec2_configured: bool = True, clock: Callable[[], float] = time.time,
                 zk_hosts: str = "", overlay_subnet: IPv4Network | None = None) -> None:
        self.client = client
        self.paths = paths
        self.coalesce = coalesce
        self.clock = clock
        self.model = FleetModel(audit_keep=audit_keep, ec2_configured=ec2_configured,
                                zk_hosts=zk_hosts, overlay_subnet=overlay_subnet)
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._generation = 0
        self._need_load = True
        self._known: dict[str, set[str]] = {name: set() for name in DIRS}
        self._party: MirrorView | None = None  # created by run(): it starts a poll thread
        self._loading: tuple[int, float, int] = (0, 0.0, 0)  # (reads left, began, nodes) of a full read
        self._loading_finished = False
        self._changed_statuses: set[str] = set()  # fired watches, re-read together once per window
        # Statuses whose watch fired while a progressive read's chunks wait in the queue: the value
        # in their chunk is older than what the watch says, so the chunk must not set it.
        self._superseded: set[str] = set()
        self._emit: Callable[[FleetBatch], None] | None = None  # run()'s, for the first rows of a read
        self._dir_path, self._single_path = dir_paths(paths), single_paths(paths)
        # One stable callable per target, so kazoo's watcher sets never hold duplicates.
        self._watchers = {target: self._make_watcher(target) for target in (*DIRS, *SINGLES)}
        self._data_watchers = {target: self._make_watcher(f"{target}:data")
                               for target in ("status", "override")}
        self._reader = TreeReader(client, paths, self._watchers, self._data_watchers)

    # --- inputs from other threads -----------------------------------------------------------

    def submit_instances(self, instances: Iterable[Instance], malformed: Iterable[str] = (),
                         groups: tuple[GroupOpening, ...] | str | None = None) -> None:
        """An inventory; ``groups`` are the fleet's security groups, or why they could not be read."""
        self._queue.put(("instances", list(instances), list(malformed), self.clock(), groups))

    def submit_ec2_error(self, error: str) -> None:
        self._queue.put(("ec2_error", error, self.clock()))

    def _make_watcher(self, target: str) -> Callable[[WatchedEvent], None]:
        def watcher(event: WatchedEvent) -> None:
            self._queue.put(("watch", self._generation, target, event))
        return watcher

    def _party_changed(self) -> None:
        self._queue.put(("party", self._generation))  # kazoo's thread: never block here

    def _on_state(self, state: KazooState) -> None:
        self._queue.put(("state", state))  # kazoo's thread: never block here

    def _put_result(self, kind: str, target: str, name: str, result: Any) -> None:
        generation = self._generation
        result.rawlink(lambda r: self._queue.put((kind, generation, target, name, r)))

    # --- the loop ----------------------------------------------------------------------------

    def run(self, emit: Callable[[FleetBatch], None], stop: threading.Event) -> None:
        """Process watches and inputs until ``stop`` is set; call ``emit`` once per window."""
        self.client.add_listener(self._on_state)
        self._emit = emit
        self._party = MirrorView(self.client, self.paths, self._party_changed)
        if self.client.connected:
            self._queue.put(("state", KazooState.CONNECTED))
        try:
            while not stop.is_set():
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                # While a full read arrives, fewer and larger batches: each costs the whole table once.
                window = max(self.coalesce, LOADING_COALESCE_SECONDS) if self._loading[0] else self.coalesce
                deadline = time.monotonic() + window
                self._handle_safely(item)
                while (remaining := deadline - time.monotonic()) > 0 and not self._just_loaded():
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                    self._handle_safely(item)
                self._handle_safely(("reread", self._generation))
                batch = self.model.flush()
                if batch is not None:
                    emit(batch)
        finally:
            self.client.remove_listener(self._on_state)
            self._party.close()

    def _just_loaded(self) -> bool:
        """A full read has just completed: show the whole fleet now, not at the window's end."""
        done = self._loading_finished
        self._loading_finished = False
        return done

    def _handle_safely(self, item: tuple[Any, ...]) -> None:
        try:
            self._handle(item)
        except (KazooException, KazooTimeoutError, OSError) as exc:
            # A read failed mid-flight (connection loss): re-read everything when it is back.
            log.info("ZooKeeper read failed (%s); the tree is re-read on reconnection", exc)
            self._resync_later()
        except Exception:  # a bug must not stop the view: log it, and re-read to be safe
            log.exception("live fleet view: unexpected error handling %r", item[:3])
            self._resync_later()

    def _resync_later(self) -> None:
        self._need_load = True
        if self.client.connected:
            self._queue.put(("state", KazooState.CONNECTED))

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "state":
            self._handle_state(item[1])
        elif kind == "instances":
            self.model.set_instances(item[1], item[2], item[3], groups=item[4])
        elif kind == "ec2_error":
            self.model.set_ec2_error(item[1], item[2])
        elif item[1] != self._generation:
            return  # read or watch from before the last full read: that read is fresher
        elif kind == "reread":
            self._reread_statuses()
        elif kind == "party":
            self._refresh_party()
        elif kind == "watch":
            self._handle_watch(item[2], item[3])
        elif kind == "children":
            self._handle_children(item[2], item[4])
        elif kind == "data":
            self._handle_data(item[2], item[3], item[4])
        elif kind == "loading":  # a chunk of the rest of a progressive full read
            for name, data in zip(item[3], item[4], strict=True):
                if item[2] != "status" or name not in self._superseded:
                    self._take(item[2], name, data)
            self._loaded(len(item[3]))

    def _handle_state(self, state: KazooState) -> None:
        self.model.set_zk_state(_ZK_STATES[state], self.clock())
        if state != KazooState.CONNECTED:
            self._need_load = True  # watches may have been missed; re-read on reconnection
        elif self._need_load:
            self._load()

    # --- the full read -------------------------------------------------------------------------

    def read_once(self, inventory: tuple[list[Instance], list[str]] | str | None = None) -> FleetSnapshot:
        """The whole tree read once, without the loop: the console's view for ``neti lab status``
        and ``neti control``. ``inventory`` is one EC2 poll's result, or the error it ended with."""
        if self.client.connected:
            self.model.set_zk_state(ZkState.CONNECTED, self.clock())
        if isinstance(inventory, str):
            self.model.set_ec2_error(inventory, self.clock())
        elif inventory is not None:
            self.model.set_instances(inventory[0], inventory[1], self.clock())
        self._party = MirrorView(self.client, self.paths, lambda: None)
        try:
            self._load(progressive=False)
        finally:
            self._party.close()
            self._party = None
        self.model.flush()
        snapshot = self.model.snapshot
        assert snapshot is not None
        return snapshot

    def _load(self, *, progressive: bool = True) -> None:
        """Read the whole tree. ``progressive`` (the console's loop): the model is reset once the
        first ``FIRST_SLICE`` statuses are in, so the first rows are on screen at once; the other
        statuses and the overlay map then arrive as ordinary updates, with the count in
        ``ZkHealth.loading`` (``loaded`` turns True only when all is in: guards wait for that)."""
        began = time.perf_counter()
        self._generation += 1
        self._changed_statuses.clear()
        self._superseded.clear()
        assert self._party is not None
        read = self._reader.read(self._party, first_slice=FIRST_SLICE if progressive else None,
                                 audit_keep=self.model.audit_keep)
        tree = read.tree
        self._known = read.listed
        self._known["status"] = set(tree.statuses)
        self._known["override"] = set(tree.overrides)
        left = read.later_count
        self.model.reset(tree, time.perf_counter() - began, still_loading=left)
        self._need_load = False
        self._loading = (left, began, tree.nodes + left)
        if not left:
            log.info("read %d nodes in %.2f s", tree.nodes, time.perf_counter() - began)
            return
        batch = self.model.flush()  # the first rows go to the screen now, before the rest is decoded
        if batch is not None and self._emit is not None:
            self._emit(batch)
        # The rest goes through the queue in chunks, each an ordinary update of the model, so the
        # screen fills in while watches keep flowing; a watch fired by a node changed since the
        # read is handled after these chunks, so the newer value wins.
        for target, names, values in read.later:
            for start in range(0, len(names), LOADING_CHUNK):
                self._queue.put(("loading", self._generation, target, names[start:start + LOADING_CHUNK],
                                 values[start:start + LOADING_CHUNK]))

    def _loaded(self, count: int) -> None:
        left, began, nodes = self._loading
        self._loading = (left - count, began, nodes)
        if left == count:
            self._loading_finished = True
            self._superseded.clear()
            seconds = time.perf_counter() - began
            self.model.loading_progress(count, seconds)
            log.info("read %d nodes in %.2f s (first rows after %d)", nodes, seconds, FIRST_SLICE)
        else:
            self.model.loading_progress(count)

    # --- incremental updates -------------------------------------------------------------------

    def _handle_watch(self, target: str, event: WatchedEvent) -> None:
        if event.type is None or event.type == EventType.NONE or event.path is None:
            return  # a session event (connection lost), not a node's: the state listener handles it
        if target in SINGLES:
            self._put_result("data", target, "", self.client.get_async(
                self._single_path[target], watch=self._watchers[target]))
        elif target.endswith(":data"):
            dir_target = target.split(":", maxsplit=1)[0]
            name = event.path.rsplit("/", 1)[1]
            if dir_target == "status" and self._loading[0]:
                self._superseded.add(name)
            if event.type == EventType.DELETED:
                self._forget(dir_target, name)
                self._changed_statuses.discard(name)
            elif dir_target == "status":
                self._changed_statuses.add(name)  # re-read with the others at the window's end
            else:
                self._put_result("data", dir_target, name, self.client.get_async(
                    event.path, watch=self._data_watchers[dir_target]))
        else:
            self._put_result("children", target, "", self.client.get_children_async(
                self._dir_path[target], watch=self._watchers[target], include_data=True))

    def _reread_statuses(self) -> None:
        """Every status whose watch fired in this window, in one multi-read, and their watches
        re-armed in bulk: when a membership change makes every agent rewrite its status, 10,000
        single reads would cost the console seconds of its GIL (bench/console.py --storm)."""
        if not self._changed_statuses:
            return
        names = sorted(self._changed_statuses)
        self._changed_statuses.clear()
        paths = [f"{self.paths.status}/{name}" for name in names]
        # A reply read now carries a zxid at least as new as every change whose watch has fired,
        # so arming as of it fires again only for changes made after this read began.
        self.client.exists(self.paths.status)
        since = last_zxid(self.client)
        values = read_many(self.client, paths)
        arm_data_watches(self.client, paths, self._data_watchers["status"], since)
        for name, data in zip(names, values, strict=True):
            self._take("status", name, data)

    def _handle_children(self, target: str, result: Any) -> None:
        path = self._dir_path[target]
        try:
            children, _stat = result.get()
        except NoNodeError:
            if self.client.exists(path, watch=self._watchers[target]) is not None:
                self._handle_watch(target, WatchedEvent(EventType.CREATED, None, path))
            children = []
        names = set(children)
        known = self._known[target]
        added, removed = names - known, known - names
        if target == "id_to_ip":
            self._known[target] = names
            self.model.set_id_to_ip(children)
            return
        for name in removed:
            self._forget(target, name)
        fetch = added
        if target == "audit":
            newest = max(self.model.audit_seqs, default=-1)
            fetch = {name for name in added if (seq := audit_seq(name)) is not None and seq > newest}
            self._known[target] = names
        for name in sorted(fetch):
            watch = self._data_watchers.get(target)
            self._put_result("data", target, name, self.client.get_async(f"{path}/{name}", watch=watch))

    def _refresh_party(self) -> None:
        assert self._party is not None
        party = self._party.snapshot()
        self.model.set_party(list(party.names), party.cversion)

    def _handle_data(self, target: str, name: str, result: Any) -> None:
        try:
            data: bytes | None = result.get(timeout=READ_TIMEOUT)[0]
        except NoNodeError:
            data = None
        self._take(target, name, data)

    def _take(self, target: str, name: str, data: bytes | None) -> None:
        """One node's value (None: it is gone) into the model."""
        if target in SINGLES:
            if data is None and self.client.exists(self._single_path[target],
                                                   watch=self._watchers[target]) is not None:
                self._handle_watch(target, WatchedEvent(EventType.CREATED, None, self._single_path[target]))
                return
            getattr(self.model, f"set_{target}")(data)
        elif data is None:
            self._forget(target, name)
        elif target == "audit":
            self.model.add_audit({name: data}, len(self._known["audit"]))
        else:
            self._known[target].add(name)
            self._set(target, name, data)

    def _forget(self, target: str, name: str) -> None:
        self._known[target].discard(name)
        self._set(target, name, None)

    def _set(self, target: str, name: str, data: bytes | None) -> None:
        if target == "status":
            self.model.set_status(name, data)
        elif target == "override":
            self.model.set_override(name, data)
        elif target == "ip_to_id":
            self.model.set_ip_to_id(name, data)
