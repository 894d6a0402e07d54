"""Typed events of the live fleet view, delivered in batches.

A front end gets one :class:`FleetBatch` per coalescing window: the events that happened (for
notifications, the audit log, the connection banner), the keys of the rows that changed (so a
table updates those rows in place instead of redrawing 10,000), and the snapshot after them.
"""

from __future__ import annotations

from dataclasses import dataclass

from neti_core.fleet.state import AuditRecord, Ec2Health, FleetSnapshot, ZkHealth
from neti_core.schema import FleetDefaults, PhaseRecord


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class Loaded(FleetEvent):
    """The whole tree was (re)read: after start-up or a reconnection."""

    seconds: float
    nodes: int


@dataclass(frozen=True, slots=True)
class MembersChanged(FleetEvent):
    """``ip-map`` children changed; ``cversion`` is the new membership version."""

    added: int
    removed: int
    cversion: int


@dataclass(frozen=True, slots=True)
class OverlayMapChanged(FleetEvent):
    """``ip-to-id`` / ``id-to-ip`` entries appeared or vanished."""

    changed: int


@dataclass(frozen=True, slots=True)
class StatusesChanged(FleetEvent):
    """Agents published (``updated``) or lost (``removed``) their ``status/<id>``."""

    updated: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True, slots=True)
class OverridesChanged(FleetEvent):
    """``control/reject_all/<id>`` set or cleared for these hosts."""

    instance_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class DefaultsChanged(FleetEvent):
    defaults: FleetDefaults | None


@dataclass(frozen=True, slots=True)
class PhaseChanged(FleetEvent):
    phase: PhaseRecord | None


@dataclass(frozen=True, slots=True)
class MaxchangeChanged(FleetEvent):
    maxchange: int | None


@dataclass(frozen=True, slots=True)
class AuditAppended(FleetEvent):
    records: tuple[AuditRecord, ...]


@dataclass(frozen=True, slots=True)
class InstancesChanged(FleetEvent):
    """A new EC2 inventory arrived; counts are against the previous one."""

    added: int
    removed: int
    changed: int


@dataclass(frozen=True, slots=True)
class ZkHealthChanged(FleetEvent):
    health: ZkHealth


@dataclass(frozen=True, slots=True)
class Ec2HealthChanged(FleetEvent):
    health: Ec2Health


@dataclass(frozen=True, slots=True)
class ProblemsFound(FleetEvent):
    """Nodes that are not in Neti's format (shown, never acted on)."""

    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FleetBatch:
    """Everything that changed in one coalescing window, and the fleet after it.

    ``changed_keys`` are rows added or updated, ``removed_keys`` rows gone; a consumer that missed
    a batch (``seq`` not contiguous) should diff ``snapshot.rows`` against what it shows instead.
    """

    seq: int
    events: tuple[FleetEvent, ...]
    changed_keys: frozenset[str]
    removed_keys: frozenset[str]
    snapshot: FleetSnapshot

    def of(self, kind: type[FleetEvent]) -> list[FleetEvent]:
        return [event for event in self.events if isinstance(event, kind)]
