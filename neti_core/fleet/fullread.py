"""One pass over the whole tree, at start-up and after every reconnection: every listing, every
document, and the watches that let the live view follow them from then on.

At 10,000 hosts this is ~20,000 nodes (a status and an overlay-map entry per host). They come in
a few multi-reads, and the statuses' watches are armed in bulk as of a zxid seen before the read
(:mod:`neti_core.zkbulk`), so a change made while the pass runs fires its watch and is read again.
Overrides, audit entries and the single documents are few: read one by one, their watches riding
on the reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from neti_core.config import ZkPaths
from neti_core.fleet.treeread import TreeRead, audit_seq
from neti_core.party.view import MirrorView
from neti_core.zkbulk import arm_data_watches, last_zxid, read_many

# Directories whose children are listed (and watched), and single documents (watched).
DIRS = ("ip_to_id", "id_to_ip", "status", "override", "audit")
SINGLES = ("defaults", "phase", "maxchange", "interval")
READ_TIMEOUT = 30.0

Watcher = Callable[..., Any]


def dir_paths(paths: ZkPaths) -> dict[str, str]:
    return {"ip_to_id": paths.ip_to_id, "id_to_ip": paths.id_to_ip, "status": paths.status,
            "override": paths.control_reject_all, "audit": paths.audit}


def single_paths(paths: ZkPaths) -> dict[str, str]:
    return {"defaults": paths.control_defaults, "phase": paths.control_phase,
            "maxchange": paths.maxchange, "interval": paths.interval}


@dataclass
class FullRead:
    """What one pass read. ``tree`` goes into the model at once; ``later`` (a progressive read's
    other statuses and the overlay map, as (target, names, values)) follows as updates."""

    tree: TreeRead
    listed: dict[str, set[str]]
    later: list[tuple[str, list[str], list[bytes | None]]] = field(default_factory=list)

    @property
    def later_count(self) -> int:
        return sum(len(names) for _, names, _ in self.later)


class TreeReader:
    """Reads one Neti tree whole, leaving a watch on every listing, status, override and single
    document; ``watchers`` and ``data_watchers`` are the live view's (stable callables, so kazoo's
    watcher sets never hold duplicates)."""

    def __init__(self, client: KazooClient, paths: ZkPaths, watchers: Mapping[str, Watcher],
                 data_watchers: Mapping[str, Watcher]) -> None:
        self.client = client
        self.paths = paths
        self.dir_path = dir_paths(paths)
        self.single_path = single_paths(paths)
        self.watchers = watchers
        self.data_watchers = data_watchers

    def read(self, party: MirrorView, *, first_slice: int | None, audit_keep: int) -> FullRead:
        """The whole tree; with ``first_slice``, a fleet with more statuses than that puts only the
        first ``first_slice`` of them in ``tree`` and the rest (and the overlay map) in ``later``."""
        tree = TreeRead()
        listings = {target: self.list_children(target) for target in DIRS}
        snapshot = party.snapshot()
        tree.party, tree.cversion = list(snapshot.names), snapshot.cversion
        tree.parsed = ({entry.node_name: entry.member for entry in snapshot.party.entries},
                       dict(snapshot.party.malformed))
        tree.id_to_ip = listings["id_to_ip"]
        statuses, overlay_ips = listings["status"], listings["ip_to_id"]
        pending = [("override", name, self.client.get_async(
            f"{self.dir_path['override']}/{name}", watch=self.data_watchers["override"]))
            for name in listings["override"]]
        tree.audit_names = len(listings["audit"])
        for name in newest_audit(listings["audit"], audit_keep):
            pending.append(("audit", name, self.client.get_async(f"{self.paths.audit}/{name}")))
        since = last_zxid(self.client)  # every listing above was answered at or after it
        status_paths = [f"{self.paths.status}/{name}" for name in statuses]
        status_data = read_many(self.client, status_paths)
        overlay_data = read_many(self.client, [f"{self.paths.ip_to_id}/{ip}" for ip in overlay_ips])
        arm_data_watches(self.client, status_paths, self.data_watchers["status"], since)
        singles = {target: self.read_single(target) for target in SINGLES}
        tree.defaults, tree.phase = singles["defaults"], singles["phase"]
        tree.maxchange, tree.interval = singles["maxchange"], singles["interval"]
        into = {"override": tree.overrides, "audit": tree.audit}
        for target, name, result in pending:
            try:
                into[target][name] = result.get(timeout=READ_TIMEOUT)[0]
            except NoNodeError:
                continue  # went away while we read; the children watch tells the rest
        split = first_slice is not None and len(statuses) > first_slice  # a small fleet: one go
        first = first_slice if split and first_slice is not None else len(statuses)
        tree.statuses = {name: data for name, data in zip(statuses[:first], status_data[:first], strict=True)
                         if data is not None}
        read = FullRead(tree, {target: set(names) for target, names in listings.items()})
        if split:
            read.later = [("status", statuses[first:], status_data[first:]),
                          ("ip_to_id", overlay_ips, overlay_data)]
        else:
            tree.ip_to_id = {ip: data for ip, data in zip(overlay_ips, overlay_data, strict=True)
                             if data is not None}
        return read

    def list_children(self, target: str) -> list[str]:
        path = self.dir_path[target]
        try:
            children: list[str] = self.client.get_children(path, watch=self.watchers[target])
        except NoNodeError:
            # Not created yet (a read-only console creates nothing): watch for its creation.
            if self.client.exists(path, watch=self.watchers[target]) is not None:
                return self.list_children(target)
            return []
        return children

    def read_single(self, target: str) -> bytes | None:
        path = self.single_path[target]
        try:
            data: bytes = self.client.get(path, watch=self.watchers[target])[0]
            return data
        except NoNodeError:
            if self.client.exists(path, watch=self.watchers[target]) is not None:
                return self.read_single(target)
            return None


def newest_audit(names: Iterable[str], keep: int) -> list[str]:
    """The ``keep`` audit entries with the highest sequence numbers, oldest first."""
    numbered = sorted((seq, name) for name in names if (seq := audit_seq(name)) is not None)
    return [name for _, name in numbered[-keep:]]
