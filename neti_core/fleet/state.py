"""What the console shows, as values: one :class:`HostRow` per host, a summary, and the snapshot.

Everything here is pure (no I/O, no clock): the live view (``live.py``) feeds a model
(``model.py``) that calls :func:`build_row` for the hosts a change touched, so the rules for
"lagging", "guard" or "no agent" are written once and tested without ZooKeeper.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from neti_core.aws import GroupOpening, Instance
from neti_core.fleet.overlay import OverlayUsage
from neti_core.members import Member
from neti_core.schema import (
    AgentStatus,
    AuditEntry,
    FleetDefaults,
    PhaseRecord,
    RejectAllOverride,
    RejectAllSource,
    effective_reject_all,
)

OVERLAY_KEY_PREFIX = "overlay:"


class RuleState(enum.StrEnum):
    """A host's rule state, worst first (the order is the severity used to sort)."""

    ERROR = "error"
    GUARD = "guard"
    DEADMAN = "deadman pending"
    OUT_OF_CONTACT = "out of contact"  # was in Neti, still running, gone from ZooKeeper (cut off?)
    NO_AGENT = "no agent"
    NOT_MEMBER = "not in party"
    LAGGING = "lagging"
    LEAVING = "leaving"  # gone from the party; agents still keep its rules (grace period or guard)
    PENDING = "reject_all pending"
    DRIFT = "drift"
    UNREGISTERED = "unregistered"
    IN_SYNC = "in sync"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {state: index for index, state in enumerate(RuleState)}


@dataclass(frozen=True, slots=True)
class HostRow:
    """One line of the fleet: a party member, an agent's status, a running instance, or all three.

    ``key`` is the instance id when known (from ``ip-to-id``, the status, or EC2 by address),
    else ``overlay:<ip>`` for a party entry nobody can name yet.
    """

    key: str
    instance_id: str | None
    name: str
    side: str
    public_ip: str
    private_ip: str
    overlay_ip: str
    version: str
    in_party: bool
    running: bool  # seen running in the last EC2 poll
    status: AgentStatus | None
    override: RejectAllOverride | None
    desired: bool | None  # None: decided by the host's own neti.yml, which the console cannot read
    desired_source: RejectAllSource
    applied: bool | None
    applied_source: RejectAllSource | None
    state: RuleState
    lag: int = 0
    detail: str = ""
    was: str = ""  # out of contact: the state it last reported

    @property
    def rolled_back(self) -> bool:
        """The dead-man switch undid reject_all and the agent holds off until an operator acts."""
        return self.status is not None and self.status.deadman == "rolled_back" and not self.status.error

    @property
    def pending_removals(self) -> int:
        return 0 if self.status is None else self.status.pending_removals

    @property
    def applied_at(self) -> float | None:
        return None if self.status is None else self.status.applied_at

    @property
    def state_label(self) -> str:
        if self.state is RuleState.LAGGING:
            return f"lagging {self.lag}"
        if self.rolled_back:
            return "deadman rolled_back"
        if self.state is RuleState.LEAVING:
            return "leaving (held: M)" if "guard" in self.detail else "leaving (grace)"
        if self.state is RuleState.OUT_OF_CONTACT:
            return f"out of contact (was {self.was})" if self.was else self.state.value
        if self.state is RuleState.GUARD and self.status is not None and self.status.guard is not None:
            return f"guard: {self.status.guard.blocked_removals} held"
        return self.state.value

    @property
    def writable(self) -> bool:
        """A control node can be written only for a host with an instance id."""
        return self.instance_id is not None


def desired_reject_all(override: RejectAllOverride | None, defaults: FleetDefaults | None,
                       status: AgentStatus | None) -> tuple[bool | None, RejectAllSource]:
    """Precedence host > fleet > config; the config value is known only from the agent's report."""
    value, source = effective_reject_all(override, defaults, configured=False)
    if source != "config":
        return value, source
    if status is not None and status.reject_all_source == "config":
        return status.reject_all, "config"
    return None, "config"


def _state(status: AgentStatus | None, *, in_party: bool, running: bool, cversion: int | None,
           desired: bool | None, desired_source: str, registered: bool = False) -> tuple[RuleState, int, str]:
    if status is None:
        if in_party:
            return RuleState.NO_AGENT, 0, "in the party, but no agent status"
        if registered:  # its agent ran once (it has an overlay IP): the agent died, not "not in Neti"
            return RuleState.NO_AGENT, 0, "registered, but no party entry and no agent status"
        if running:
            return RuleState.UNREGISTERED, 0, "running, not in Neti"
        return RuleState.NO_AGENT, 0, ""
    if status.error:
        return RuleState.ERROR, 0, status.error
    if status.deadman == "rolled_back":
        return RuleState.ERROR, 0, ("reject_all rolled back by the dead-man switch; the agent holds "
                                    "it off until an operator acts: o retries it (re-arms the dead-man "
                                    "switch), c clears the override")
    if status.guard is not None:
        return (RuleState.GUARD, 0, f"{status.guard.blocked_removals} removals held "
                f"(maxchange {status.guard.maxchange}): M raises maxchange to release them")
    if status.deadman == "pending":
        return RuleState.DEADMAN, 0, "reject_all applied, awaiting confirmation"
    if not in_party:
        return RuleState.NOT_MEMBER, 0, "agent reports, but has no ip-map entry"
    lag = 0 if cversion is None else max(0, cversion - status.membership_version)
    if lag:
        return RuleState.LAGGING, lag, f"applied ip-map version {status.membership_version} of {cversion}"
    if desired is not None and (desired, desired_source) != (status.reject_all, status.reject_all_source):
        return RuleState.PENDING, 0, (f"wants reject_all {'on' if desired else 'off'} ({desired_source}),"
                                      f" applied {'on' if status.reject_all else 'off'} "
                                      f"({status.reject_all_source})")
    if status.drift_detected:
        return RuleState.DRIFT, 0, (f"the last check found the rules changed behind the agent's back and "
                                    f"repaired them ({status.drift_repairs} repairs since it started)")
    if status.pending_removals:
        return RuleState.IN_SYNC, 0, (f"{status.pending_removals} members leaving: kept for "
                                      "removal_grace_seconds before their rules go")
    return RuleState.IN_SYNC, 0, ""


def build_row(key: str, *, member: Member | None, status: AgentStatus | None,
              override: RejectAllOverride | None, instance: Instance | None,
              defaults: FleetDefaults | None, cversion: int | None, registered: bool = False) -> HostRow:
    """Join what the party, the agent, the operator and EC2 say about one host."""
    instance_id = None if key.startswith(OVERLAY_KEY_PREFIX) else key

    def first(*values: object) -> str:
        return next((str(v) for v in values if v), "")

    desired, desired_source = desired_reject_all(override, defaults, status)
    running = instance is not None
    state, lag, detail = _state(status, in_party=member is not None, running=running, cversion=cversion,
                                desired=desired, desired_source=desired_source, registered=registered)
    if member is not None:
        side = member.side.value
    else:
        side = first(status and status.side, instance and instance.side.value)
    return HostRow(
        key=key,
        instance_id=instance_id,
        name=instance.name if instance else "",
        side=side,
        public_ip=first(member and member.public, status and status.public_ip,
                        instance and instance.public_ip),
        private_ip=first(member and member.private, status and status.private_ip,
                         instance and instance.private_ip),
        overlay_ip=first(member and member.overlay, status and status.overlay_ip),
        version=first(status and status.version, instance and instance.neti_version),
        in_party=member is not None,
        running=running,
        status=status,
        override=override,
        desired=desired,
        desired_source=desired_source,
        applied=None if status is None else status.reject_all,
        applied_source=None if status is None else status.reject_all_source,
        state=state,
        lag=lag,
        detail=detail,
    )


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The header's counts. ``unregistered`` is only meaningful when ``inventory_known``."""

    total: int = 0
    registered: int = 0
    unregistered: int = 0
    agents: int = 0
    reject_on: int = 0
    errors: int = 0
    lagging: int = 0
    guard: int = 0
    deadman: int = 0
    no_agent: int = 0
    pending: int = 0
    in_sync: int = 0
    vpc: int = 0
    recording: int = 0  # agents whose backend records instead of programming a kernel (lab, no root)
    out_of_contact: int = 0  # counted in registered: they left ZooKeeper, not Neti
    rolled_back: int = 0
    pending_removals: int = 0  # members in their removal grace period (the most any agent reports)
    held_removals: int = 0  # removals the mass-change guard refused (the most any agent reports)
    inventory_known: bool = False
    by_state: Mapping[RuleState, int] = field(default_factory=dict)

    @property
    def percent_in_neti(self) -> float:
        known = self.registered + self.unregistered
        return 100.0 if known == 0 else round(100.0 * self.registered / known, 1)


def summarize(rows: Iterable[HostRow], inventory_known: bool) -> FleetSummary:
    by_state = dict.fromkeys(RuleState, 0)
    total = registered = agents = reject_on = vpc = recording = rolled_back = 0
    pending_removals = held_removals = 0
    for row in rows:
        total += 1
        by_state[row.state] += 1
        registered += row.in_party or row.state is RuleState.OUT_OF_CONTACT
        rolled_back += row.rolled_back
        pending_removals = max(pending_removals, row.pending_removals)
        if row.status is not None and row.status.guard is not None:
            held_removals = max(held_removals, row.status.guard.blocked_removals)
        agents += row.status is not None
        reject_on += row.applied is True
        vpc += row.side == "vpc" and row.in_party
        recording += row.status is not None and row.status.backend == "recording"
    return FleetSummary(
        total=total, registered=registered, unregistered=by_state[RuleState.UNREGISTERED],
        agents=agents, reject_on=reject_on, errors=by_state[RuleState.ERROR],
        lagging=by_state[RuleState.LAGGING], guard=by_state[RuleState.GUARD],
        deadman=by_state[RuleState.DEADMAN], no_agent=by_state[RuleState.NO_AGENT],
        pending=by_state[RuleState.PENDING], in_sync=by_state[RuleState.IN_SYNC] + by_state[RuleState.DRIFT],
        vpc=vpc, recording=recording, inventory_known=inventory_known,
        out_of_contact=by_state[RuleState.OUT_OF_CONTACT], rolled_back=rolled_back,
        pending_removals=pending_removals, held_removals=held_removals,
        by_state=MappingProxyType(by_state),
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An ``audit/entry-<seq>`` node: its sequence number and its decoded entry."""

    seq: int
    entry: AuditEntry

    def concerns(self, instance_id: str) -> bool:
        """True when this action changed ``instance_id`` (alone or in a bulk action)."""
        if self.entry.target == instance_id:
            return True
        targets = self.entry.extra.get("instance_ids")
        return isinstance(targets, list) and instance_id in targets


class ZkState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class ZkHealth:
    state: ZkState = ZkState.CONNECTING
    since: float = 0.0
    hosts: str = ""
    loaded: bool = False  # the whole tree has been read at least once (guards rely on it)
    load_seconds: float | None = None
    # (nodes read, of) while a full read is still arriving: rows show as their data comes in
    loading: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Ec2Health:
    """The inventory poller: ``configured`` False means no EC2 API at all (no unregistered view)."""

    configured: bool = True
    last_ok: float | None = None
    error: str | None = None
    error_since: float | None = None
    instances: int = 0
    malformed: tuple[str, ...] = ()
    groups: tuple[GroupOpening, ...] | None = None  # the fleet's security groups; None: not read
    groups_error: str | None = None  # why the last poll could not read them


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """An immutable view of the fleet at one batch: what every screen draws from."""

    seq: int
    rows: Mapping[str, HostRow]
    summary: FleetSummary
    cversion: int | None
    defaults: FleetDefaults | None
    phase: PhaseRecord | None
    maxchange: str | None  # as set: "20" or "10%"; None when unset (the agents use 10%)
    audit: tuple[AuditRecord, ...]
    audit_total: int
    zk: ZkHealth
    ec2: Ec2Health
    problems: tuple[str, ...] = ()
    overlay: OverlayUsage = field(default_factory=OverlayUsage)

    @property
    def unregistered(self) -> list[HostRow]:
        rows = [row for row in self.rows.values() if row.state is RuleState.UNREGISTERED]
        return sorted(rows, key=lambda row: (row.name, row.key))

    def history(self, instance_id: str) -> list[AuditRecord]:
        return [record for record in self.audit if record.concerns(instance_id)]


EMPTY_SNAPSHOT = FleetSnapshot(
    seq=0, rows=MappingProxyType({}), summary=FleetSummary(), cversion=None, defaults=None,
    phase=None, maxchange=None, audit=(), audit_total=0, zk=ZkHealth(), ec2=Ec2Health(),
)
