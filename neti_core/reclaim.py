"""Giving back the overlay addresses of instances that are gone (``neti registry reclaim``).

An address is claimed in ``ip-to-id``/``id-to-ip`` for good; on a fleet that autoscales for months
the overlay subnet runs out unless the pairs of terminated instances are released. Releasing one
too early gives a host's address to another while the first still uses it, so a pair is released
only when every source agrees its instance is gone, for longer than a quarantine:

* EC2 says *terminated*, or does not list the instance at all (a complete, unfiltered listing;
  any API error or throttling means nothing is decided);
* no live ``ip-map`` entry announces the address and there is no ``status/<id>``;
* an operator-owned marker ``reclaim/gone/<id>`` was created at least the quarantine ago by an
  earlier run that saw the same, and the pair was not claimed since (its ``id-to-ip`` mtime is older
  than the marker).

Why a marker: EC2 forgets a terminated instance about an hour after it ends, long before a
quarantine of days has passed, and an instance it never knew has no time at all. ZooKeeper stamps
the marker's ctime on the server, so the clock survives restarts; it is compared with the
operator's clock, whose skew is seconds against a quarantine of days.

Each pair is released in one transaction: both map entries deleted at the versions that were
judged, the marker deleted, and the audit record created. A host that re-registers at that moment
rewrites its ``id-to-ip`` entry (:meth:`OverlayRegistry.register`), which makes this transaction
fail: it keeps its address, or, if the release won, it finds no pair and gets a new one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from neti_core.config import ZkPaths
from neti_core.errors import MalformedEntryError, NetiError
from neti_core.members import parse_ipv4, validate_instance_id
from neti_core.registry import read_party
from neti_core.schema import AuditEntry

GONE_STATES = frozenset({"terminated"})
"""EC2 states after which an instance never runs again. ``stopped`` ones come back: they keep theirs."""


class PartialInformationError(NetiError):
    """The sources disagree or are incomplete: nothing may be reclaimed on this run."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One consistent claim: ``ip-to-id/<ip>`` names the instance and ``id-to-ip/<id>`` the IP."""

    instance_id: str
    overlay_ip: IPv4Address
    id_version: int
    ip_version: int
    claimed_at: float  # mtime of id-to-ip/<id>: the last registration, in server time (s)


@dataclass(frozen=True, slots=True)
class Marker:
    instance_id: str
    version: int
    since: float  # ctime of the marker: when a run first saw the instance gone (server time, s)


@dataclass(frozen=True, slots=True)
class Gone:
    """A pair whose instance is gone, and where it stands in the quarantine."""

    pair: Pair
    ec2_state: str  # "terminated" or "unknown to EC2"
    marker: Marker | None  # None (or stale): the quarantine starts at the next --apply
    eligible_at: float | None  # when it may be reclaimed; None while unmarked


@dataclass(frozen=True, slots=True)
class ReclaimPlan:
    reclaim: tuple[Gone, ...]
    quarantined: tuple[Gone, ...]
    unmarked: tuple[Gone, ...]
    clear: tuple[Marker, ...]  # markers of instances that are back (or whose pair is gone)
    kept: int  # pairs of instances EC2 runs or that are live in Neti
    used: int
    total: int
    quarantine: float

    @property
    def free(self) -> int:
        return self.total - self.used


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything a decision rests on, read in one run."""

    pairs: tuple[Pair, ...]
    markers: Mapping[str, Marker]
    live_overlays: frozenset[IPv4Address]
    status_ids: frozenset[str]
    used: int
    total: int
    malformed_party: int = 0


# --- the pure decision ---------------------------------------------------------------------------

def plan_reclaim(evidence: Evidence, ec2_states: Mapping[str, str], quarantine: float,
                 now: float) -> ReclaimPlan:
    """Sort every pair into kept / unmarked / quarantined / reclaim. Raises
    :class:`PartialInformationError` when the evidence cannot be trusted as a whole."""
    _check_complete(evidence, ec2_states)
    reclaim: list[Gone] = []
    quarantined: list[Gone] = []
    unmarked: list[Gone] = []
    kept = 0
    gone_ids: set[str] = set()
    for pair in evidence.pairs:
        state = ec2_states.get(pair.instance_id)
        live = pair.overlay_ip in evidence.live_overlays or pair.instance_id in evidence.status_ids
        if live or (state is not None and state not in GONE_STATES):
            kept += 1
            continue
        gone_ids.add(pair.instance_id)
        marker = evidence.markers.get(pair.instance_id)
        ec2_state = state or "unknown to EC2"
        if marker is None or marker.since < pair.claimed_at:  # claimed after it was seen gone
            unmarked.append(Gone(pair, ec2_state, marker, None))
            continue
        eligible_at = marker.since + quarantine
        (reclaim if eligible_at <= now else quarantined).append(Gone(pair, ec2_state, marker,
                                                                     eligible_at))
    clear = tuple(m for i, m in sorted(evidence.markers.items()) if i not in gone_ids)
    return ReclaimPlan(tuple(reclaim), tuple(quarantined), tuple(unmarked), clear, kept,
                       evidence.used, evidence.total, quarantine)


def _check_complete(evidence: Evidence, ec2_states: Mapping[str, str]) -> None:
    if evidence.malformed_party:
        raise PartialInformationError(
            f"ip-map has {evidence.malformed_party} entries that do not parse, so which addresses "
            f"are live is not known")
    # A live agent is an instance EC2 must know; if it does not, the listing is not this fleet's
    # (another account, region or endpoint) and "unknown to EC2" proves nothing.
    strangers = sorted(i for i in evidence.status_ids if i not in ec2_states and _is_instance_id(i))
    if strangers:
        raise PartialInformationError(
            f"EC2 does not list {len(strangers)} instances whose agents are live (e.g. "
            f"{strangers[0]}): wrong account, region or endpoint?")


def _is_instance_id(text: str) -> bool:
    try:
        validate_instance_id(text)
    except MalformedEntryError:
        return False
    return True


def usage(ip_to_id: Iterable[str], subnet: IPv4Network) -> tuple[int, int]:
    """(overlay IPs taken in ``subnet``, usable host addresses of ``subnet``)."""
    used = set()
    for name in ip_to_id:
        try:
            ip = parse_ipv4(name)
        except MalformedEntryError:
            continue
        if ip in subnet and ip not in (subnet.network_address, subnet.broadcast_address):
            used.add(ip)
    return len(used), max(subnet.num_addresses - 2, 0)


# --- reading the tree ----------------------------------------------------------------------------

def _children_with_stats(client: KazooClient, path: str) -> dict[str, tuple[bytes, object]]:
    try:
        children = client.get_children(path)
    except NoNodeError:
        return {}
    pending = [(child, client.get_async(f"{path}/{child}")) for child in children]
    found = {}
    for child, result in pending:
        try:
            found[child] = result.get()
        except NoNodeError:
            continue
    return found


def _pairs(ip_nodes: Mapping[str, tuple[bytes, object]],
           id_nodes: Mapping[str, tuple[bytes, object]]) -> list[Pair]:
    """Consistent pairs only; half-written or conflicting ones are ``neti registry audit``'s."""
    pairs = []
    for instance_id, (data, id_stat) in id_nodes.items():
        try:
            validate_instance_id(instance_id)
            ip = parse_ipv4(data.decode(errors="replace").strip())
        except MalformedEntryError:
            continue
        owner = ip_nodes.get(str(ip))
        if owner is None or owner[0].decode(errors="replace").strip() != instance_id:
            continue
        pairs.append(Pair(instance_id, ip, id_stat.version, owner[1].version,  # type: ignore[attr-defined]
                          id_stat.mtime / 1000.0))  # type: ignore[attr-defined]
    return sorted(pairs, key=lambda p: p.overlay_ip)


def read_evidence(client: KazooClient, paths: ZkPaths, subnet: IPv4Network) -> Evidence:
    """Both maps with their versions, the markers, the live party and the status nodes."""
    ip_nodes = _children_with_stats(client, paths.ip_to_id)
    id_nodes = _children_with_stats(client, paths.id_to_ip)
    markers = {}
    for name, (_, stat) in _children_with_stats(client, paths.reclaim_gone).items():
        markers[name] = Marker(name, stat.version, stat.ctime / 1000.0)  # type: ignore[attr-defined]
    try:
        party, _ = read_party(client, paths)
        live = frozenset(m.overlay for m in party.members)
        malformed = len(party.malformed)
    except NoNodeError:
        live, malformed = frozenset(), 0
    try:
        status_ids = frozenset(client.get_children(paths.status))
    except NoNodeError:
        status_ids = frozenset()
    used, total = usage(ip_nodes, subnet)
    return Evidence(tuple(_pairs(ip_nodes, id_nodes)), markers, live, status_ids, used, total,
                    malformed)


# --- applying ------------------------------------------------------------------------------------

@dataclass
class ApplyResult:
    reclaimed: list[Gone] = field(default_factory=list)
    lost_race: list[Gone] = field(default_factory=list)  # the pair changed since it was judged
    marked: list[Gone] = field(default_factory=list)
    cleared: list[Marker] = field(default_factory=list)
    audit_paths: list[str] = field(default_factory=list)


def apply_plan(client: KazooClient, paths: ZkPaths, plan: ReclaimPlan, operator: str,
               clock: Callable[[], float] = time.time) -> ApplyResult:
    """Start the quarantine of newly gone instances, drop markers of returned ones, and release
    every eligible pair in its own transaction (see the module docstring)."""
    result = ApplyResult()
    client.ensure_path(paths.reclaim_gone)
    client.ensure_path(paths.audit)
    for gone in plan.unmarked:
        if _mark(client, paths, gone, operator, clock()):
            result.marked.append(gone)
    for marker in plan.clear:
        transaction = client.transaction()
        transaction.delete(f"{paths.reclaim_gone}/{marker.instance_id}", version=marker.version)
        if not any(isinstance(r, Exception) for r in transaction.commit()):
            result.cleared.append(marker)
    for gone in plan.reclaim:
        audit = _release(client, paths, gone, plan.quarantine, operator=operator, now=clock())
        if audit is None:
            result.lost_race.append(gone)
        else:
            result.reclaimed.append(gone)
            result.audit_paths.append(audit)
    return result


def _mark(client: KazooClient, paths: ZkPaths, gone: Gone, operator: str, now: float) -> bool:
    """Create (or, if stale, recreate) the marker; its ctime starts the quarantine."""
    path = f"{paths.reclaim_gone}/{gone.pair.instance_id}"
    document = json.dumps({"overlay_ip": str(gone.pair.overlay_ip), "ec2_state": gone.ec2_state,
                           "seen_by": operator, "seen_at": now}, sort_keys=True).encode()
    transaction = client.transaction()
    if gone.marker is not None:
        transaction.delete(path, version=gone.marker.version)
    transaction.create(path, document)
    return not any(isinstance(r, Exception) for r in transaction.commit())  # lost a race: next run


def _release(client: KazooClient, paths: ZkPaths, gone: Gone, quarantine: float, *,
             operator: str, now: float) -> str | None:
    """One pair, its marker and its audit record in one transaction; None if anything moved."""
    pair, marker = gone.pair, gone.marker
    assert marker is not None
    entry = AuditEntry(
        who=operator, when=now, action="registry.reclaim", target=pair.instance_id,
        before=str(pair.overlay_ip), after=None,
        why=f"{gone.ec2_state}; gone since {marker.since:.0f}, quarantine {quarantine:g} s",
        extra={"overlay_ip": str(pair.overlay_ip), "ec2_state": gone.ec2_state,
               "gone_since": marker.since, "quarantine_seconds": quarantine})
    transaction = client.transaction()
    transaction.delete(f"{paths.ip_to_id}/{pair.overlay_ip}", version=pair.ip_version)
    transaction.delete(f"{paths.id_to_ip}/{pair.instance_id}", version=pair.id_version)
    transaction.delete(f"{paths.reclaim_gone}/{pair.instance_id}", version=marker.version)
    transaction.create(f"{paths.audit}/entry-", entry.to_json(), sequence=True)
    results = transaction.commit()
    if any(isinstance(r, Exception) for r in results):
        return None
    return str(results[-1])
