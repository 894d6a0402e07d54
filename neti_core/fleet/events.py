"""Typed events of the live fleet view, delivered in batches.

A front end gets one :class:`FleetBatch` per coalescing window: the events a consumer acts on (new
audit records), the keys of the rows that changed (so a table updates those rows in place instead
of redrawing 10,000), and the snapshot after them. Everything else (health, settings, counts) is
read from the snapshot; a batch goes out whenever any of it changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from neti_core.fleet.state import AuditRecord, FleetSnapshot


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class AuditAppended(FleetEvent):
    """New audit records (the host screen refreshes its history on them)."""

    records: tuple[AuditRecord, ...]


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
