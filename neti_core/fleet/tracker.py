"""The fleet model: raw ZooKeeper and EC2 observations in, batches of typed events and row changes out.

Pure and single-threaded (the live view calls it from one thread): every input is the raw node
data, decoded and validated here, so a malformed node becomes a listed problem and never a crash
or an instruction. Each input marks only the rows it can change; a membership change marks them
all, since every agent's lag is measured against the ``ip-map`` children version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Network
from types import MappingProxyType

from neti_core.aws import GroupOpening, Instance
from neti_core.errors import MalformedEntryError
from neti_core.fleet.contact import LastKnownRows
from neti_core.fleet.events import (
    AuditAppended,
    FleetBatch,
    FleetEvent,
)
from neti_core.fleet.memberkeys import index_members
from neti_core.fleet.overlay import OverlayUsage, overlay_usage, usable_addresses
from neti_core.fleet.state import (
    OVERLAY_KEY_PREFIX,
    AuditRecord,
    Ec2Health,
    FleetSnapshot,
    FleetSummary,
    HostRow,
    RuleState,
    ZkHealth,
    ZkState,
    build_row,
    summarize,
)
from neti_core.fleet.treeread import AUDIT_KEEP, TreeRead, audit_seq, insert_in_order
from neti_core.fleet.validated import ValidatedNodes, guard_limit_text
from neti_core.members import Member
from neti_core.schema import (
    AuditEntry,
    FleetDefaults,
    PhaseRecord,
    decode_interval,
)


class FleetModel:
    """The live model behind the console. Not thread-safe: one thread feeds it."""

    def __init__(self, *, audit_keep: int = AUDIT_KEEP, ec2_configured: bool = True,
                 zk_hosts: str = "", overlay_subnet: IPv4Network | None = None) -> None:
        self.audit_keep = audit_keep
        self._overlay_total = usable_addresses(overlay_subnet)
        self._overlay = OverlayUsage(total=self._overlay_total)
        self._nodes = ValidatedNodes()  # party, statuses, overrides and every node's problem
        self._cversion: int | None = None
        self._ip_to_id: dict[str, str] = {}
        self._id_to_ip: set[str] = set()
        self._defaults: FleetDefaults | None = None
        self._phase: PhaseRecord | None = None
        self._maxchange: str | None = None  # as set: "20" or "10%" (None: unset, the agents' 10%)
        self._audit: list[AuditRecord] = []
        self._audit_total = 0
        self._instances: dict[str, Instance] | None = None
        self._by_address: dict[str, str] = {}
        self._zk = ZkHealth(hosts=zk_hosts)
        self._ec2 = Ec2Health(configured=ec2_configured)
        self._rows: dict[str, HostRow] = {}
        self._last_known = LastKnownRows()  # cut off or leaving hosts are shown from these
        self._members_by_key: dict[str, Member] = {}
        self._summary = FleetSummary()
        self._events: list[FleetEvent] = []
        self._dirty: set[str] = set()
        self._all_dirty = False
        self._touched = False
        self._news = False  # health, counts or settings changed: the next flush sends a batch
        self._seq = 0
        self._snapshot: FleetSnapshot | None = None
        self._loading_members: dict[str, Member] = {}  # by overlay, while a full read arrives

    # --- ZooKeeper inputs --------------------------------------------------------------------

    def reset(self, tree: TreeRead, seconds: float, still_loading: int = 0) -> None:
        """Replace everything with a fresh read of the tree; ``still_loading`` nodes of it are
        still on their way (they come in as ordinary updates, then :meth:`loaded`)."""
        self._nodes.clear()
        self._loading_members = {}
        if tree.parsed is not None:
            self._nodes.party, self._nodes.party_bad = dict(tree.parsed[0]), dict(tree.parsed[1])
        else:
            for name in tree.party:
                self._nodes.parse_party_entry(name)
        self._cversion = tree.cversion
        self._ip_to_id = {ip: data.decode(errors="replace").strip() for ip, data in tree.ip_to_id.items()}
        self._id_to_ip = set(tree.id_to_ip)
        for instance_id, data in tree.statuses.items():
            self._nodes.decode_status(instance_id, data)
        for instance_id, data in tree.overrides.items():
            self._nodes.decode_override(instance_id, data)
        self._defaults = self._nodes.decode("control/defaults", FleetDefaults.from_json, tree.defaults)
        self._phase = self._nodes.decode("control/phase", PhaseRecord.from_json, tree.phase)
        self._maxchange = self._nodes.decode("maxchange", guard_limit_text, tree.maxchange)
        self._nodes.decode("interval", decode_interval, tree.interval)
        self._audit = []
        for name, data in tree.audit.items():
            self._insert_audit(name, data)
        self._audit_total = tree.audit_names
        if still_loading:
            self._zk = replace(self._zk, loaded=False, loading=(tree.nodes, tree.nodes + still_loading))
        else:
            self._zk = replace(self._zk, loaded=True, load_seconds=seconds, loading=None)
        self._news = True
        self._all_dirty = True

    def loading_progress(self, read: int, seconds: float | None = None) -> None:
        """``read`` more nodes of the full read are in; ``seconds`` when it is complete."""
        loading = self._zk.loading
        if loading is None:
            return
        if seconds is not None:
            self._zk = replace(self._zk, loaded=True, load_seconds=seconds, loading=None)
            self._all_dirty = True  # members still unmatched are now shown as they are
            self._loading_members = {}
        else:
            self._zk = replace(self._zk, loading=(loading[0] + read, loading[1]))
        self._news = True

    def set_party(self, children: Iterable[str], cversion: int) -> None:
        names = set(children)
        old = set(self._nodes.party) | set(self._nodes.party_bad)
        added, removed = names - old, old - names
        for name in removed:
            self._nodes.party.pop(name, None)
            self._nodes.party_bad.pop(name, None)
        for name in added:
            self._nodes.parse_party_entry(name)
        if added or removed or cversion != self._cversion:
            self._cversion = cversion
            self._news = True
            self._all_dirty = True

    def set_ip_to_id(self, overlay_ip: str, data: bytes | None) -> None:
        owner = None if data is None else data.decode(errors="replace").strip()
        if self._ip_to_id.get(overlay_ip) == owner:
            return
        if owner is None:
            self._ip_to_id.pop(overlay_ip, None)
        else:
            self._ip_to_id[overlay_ip] = owner
        self._news = True
        if owner is not None and self._zk.loading is not None:
            self._index_one(owner, overlay_ip)  # one row, not a re-index per arriving node
        else:
            self._all_dirty = True

    def set_id_to_ip(self, children: Iterable[str]) -> None:
        names = set(children)
        if names != self._id_to_ip:
            self._news = True
            self._dirty |= names ^ self._id_to_ip  # a registration tells "no agent" from "unregistered"
            self._id_to_ip = names
            self._touched = True

    def set_status(self, instance_id: str, data: bytes | None) -> None:
        had = instance_id in self._nodes.statuses
        old = self._nodes.statuses.get(instance_id)
        if data is None:
            self._nodes.statuses.pop(instance_id, None)
            self._nodes.bad.pop(f"status/{instance_id}", None)
        else:
            self._nodes.decode_status(instance_id, data)
        new = self._nodes.statuses.get(instance_id)
        self._dirty.add(instance_id)
        if new is not None and self._zk.loading is not None:
            self._index_one(instance_id, new.overlay_ip)
        elif new is not None and (not had or old is None or old.overlay_ip != new.overlay_ip) \
                and f"{OVERLAY_KEY_PREFIX}{new.overlay_ip}" in self._members_by_key:
            self._all_dirty = True  # a nameless party entry can now be named by its status

    def set_override(self, instance_id: str, data: bytes | None) -> None:
        if data is None:
            self._nodes.overrides.pop(instance_id, None)
            self._nodes.bad.pop(f"control/reject_all/{instance_id}", None)
        else:
            self._nodes.decode_override(instance_id, data)
        self._dirty.add(instance_id)

    def set_defaults(self, data: bytes | None) -> None:
        self._defaults = self._nodes.decode("control/defaults", FleetDefaults.from_json, data)
        self._news = True
        self._all_dirty = True

    def set_phase(self, data: bytes | None) -> None:
        self._phase = self._nodes.decode("control/phase", PhaseRecord.from_json, data)
        self._news = True
        self._touched = True

    def set_interval(self, data: bytes | None) -> None:
        """Only its problems are shown: the agents, not the console, run at this interval."""
        self._nodes.decode("interval", decode_interval, data)
        self._touched = True

    def set_maxchange(self, data: bytes | None) -> None:
        self._maxchange = self._nodes.decode("maxchange", guard_limit_text, data)
        self._news = True
        self._touched = True

    def add_audit(self, entries: Mapping[str, bytes], total_names: int) -> None:
        newest = self._audit[-1].seq if self._audit else -1
        added = [record for name, data in sorted(entries.items())
                 if (record := self._insert_audit(name, data)) is not None and record.seq > newest]
        self._audit_total = max(self._audit_total, total_names)
        if added:
            self._events.append(AuditAppended(tuple(added)))
        self._touched = True

    @property
    def audit_seqs(self) -> set[int]:
        return {record.seq for record in self._audit}

    def set_zk_state(self, state: ZkState, now: float) -> None:
        if state is not self._zk.state:
            self._zk = replace(self._zk, state=state, since=now)
            self._news = True

    # --- EC2 inputs --------------------------------------------------------------------------

    def set_instances(self, instances: Iterable[Instance], malformed: Iterable[str], now: float,
                      groups: tuple[GroupOpening, ...] | str | None = None) -> None:
        new = {instance.instance_id: instance for instance in instances}
        old = self._instances or {}
        added = new.keys() - old.keys()
        removed = old.keys() - new.keys()
        changed = {k for k in new.keys() & old.keys() if new[k] != old[k]}
        first = self._instances is None
        self._instances = new
        self._by_address = {}
        for instance in new.values():
            for ip in (instance.private_ip, instance.public_ip):
                if ip is not None:
                    self._by_address.setdefault(str(ip), instance.instance_id)
        self._ec2 = replace(self._ec2, last_ok=now, error=None, error_since=None, instances=len(new),
                            malformed=tuple(malformed),
                            groups=groups if isinstance(groups, tuple) else None,
                            groups_error=groups if isinstance(groups, str) else None)
        self._news = True  # every poll: the EC2 health (last_ok) shown in the header moved
        nameless = any(key.startswith(OVERLAY_KEY_PREFIX) for key in self._members_by_key)
        if first or nameless or ((added or removed) and self._nodes.party):
            self._all_dirty = True
        else:
            self._dirty |= added | removed | changed

    def set_ec2_error(self, error: str, now: float) -> None:
        since = self._ec2.error_since or now
        self._ec2 = replace(self._ec2, error=error, error_since=since)
        self._news = True

    # --- output ------------------------------------------------------------------------------

    @property
    def snapshot(self) -> FleetSnapshot | None:
        return self._snapshot

    def flush(self) -> FleetBatch | None:
        """The batch of everything since the last flush, or None when nothing happened."""
        if not (self._events or self._news or self._dirty or self._all_dirty or self._touched):
            return None
        changed: set[str] = set()
        removed: set[str] = set()
        self._dirty |= self._last_known.stale_after(self._nodes.statuses)
        if self._all_dirty:
            self._index_members()
            keys = (set(self._members_by_key) | set(self._nodes.statuses) | set(self._instances or ())
                    | set(self._last_known.keys()))
            removed = set(self._rows) - keys
            for key in removed:
                del self._rows[key]
        else:
            keys = self._dirty
        for key in keys:
            row = self._build(key)
            if row is None:
                if self._rows.pop(key, None) is not None:
                    removed.add(key)
            elif row != self._rows.get(key):
                self._rows[key] = row
                changed.add(key)
        if changed or removed or self._snapshot is None:
            self._summary = summarize(self._rows.values(), self._instances is not None)
        if self._all_dirty or self._touched or changed or removed:
            self._overlay = overlay_usage(
                self._ip_to_id, {str(m.overlay) for m in self._nodes.party.values()}, self._nodes.statuses,
                None if self._instances is None else self._instances, self._overlay_total)
        self._seq += 1
        self._snapshot = FleetSnapshot(
            seq=self._seq, rows=MappingProxyType(dict(self._rows)), summary=self._summary,
            cversion=self._cversion, defaults=self._defaults, phase=self._phase,
            maxchange=self._maxchange, audit=tuple(self._audit), audit_total=self._audit_total,
            zk=self._zk, ec2=self._ec2, problems=self._nodes.problems, overlay=self._overlay,
        )
        batch = FleetBatch(self._seq, tuple(self._events), frozenset(changed), frozenset(removed),
                           self._snapshot)
        self._events = []
        self._dirty = set()
        self._all_dirty = self._touched = self._news = False
        return batch

    # --- helpers -----------------------------------------------------------------------------

    def _build(self, key: str) -> HostRow | None:
        member = self._members_by_key.get(key)
        status = self._nodes.statuses.get(key)
        instance = None if self._instances is None else self._instances.get(key)
        if member is None and status is None:
            return self._without_contact(key, instance)
        row = build_row(key, member=member, status=status, override=self._nodes.overrides.get(key),
                        instance=instance, defaults=self._defaults, cversion=self._cversion,
                        registered=key in self._id_to_ip)
        problem = self._nodes.bad.get(f"status/{key}")
        if problem is not None and status is None:
            row = replace(row, state=RuleState.ERROR, detail=f"status unreadable: {problem}")
        self._last_known.remember(key, row, full_report=member is not None and status is not None)
        return row

    def _without_contact(self, key: str, instance: Instance | None) -> HostRow | None:
        """A host ZooKeeper no longer knows: out of contact while EC2 says it runs, leaving while
        agents still keep members' rules, else unregistered (never in Neti) or gone."""
        row = self._last_known.row_without_contact(key, instance)
        if row is not None or instance is None:
            return row
        return build_row(key, member=None, status=None, override=self._nodes.overrides.get(key),
                         instance=instance, defaults=self._defaults, cversion=self._cversion)

    def _index_members(self) -> None:
        self._members_by_key = index_members(self._nodes.party.values(), self._ip_to_id, self._nodes.statuses,
                                             self._by_address, loading=self._zk.loading is not None)

    def _index_one(self, key: str, overlay: str) -> None:
        """While a full read arrives: a member's row as soon as its key is known (rebuilt at the end)."""
        if not self._loading_members:
            self._loading_members = {str(m.overlay): m for m in self._nodes.party.values()}
        member = self._loading_members.get(overlay)
        if member is not None and key not in self._members_by_key:
            self._members_by_key[key] = member
            self._dirty.add(key)

    def _insert_audit(self, name: str, data: bytes) -> AuditRecord | None:
        seq = audit_seq(name)
        if seq is None:
            return None
        try:
            record = AuditRecord(seq, AuditEntry.from_json(data))
        except MalformedEntryError as exc:
            self._nodes.bad[f"audit/{name}"] = str(exc)
            return None
        return record if insert_in_order(self._audit, record, self.audit_keep) else None

