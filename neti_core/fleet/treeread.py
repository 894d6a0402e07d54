"""What one pass over the ZooKeeper tree returns (start-up or after a reconnection), as raw bytes
for the tracker to decode, and the audit entries' sequence numbers."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from neti_core.fleet.state import AuditRecord
from neti_core.members import Member

AUDIT_KEEP = 1000


@dataclass
class TreeRead:
    """Everything read from ZooKeeper in one pass (start-up or after a reconnection)."""

    party: list[str] = field(default_factory=list)
    # The same entries as the reader already parsed them (name -> member, name -> problem), so
    # that 10,000 names are not parsed twice; None: parse ``party``.
    parsed: tuple[dict[str, Member], dict[str, str]] | None = None
    cversion: int | None = None
    ip_to_id: dict[str, bytes] = field(default_factory=dict)
    id_to_ip: list[str] = field(default_factory=list)
    statuses: dict[str, bytes] = field(default_factory=dict)
    overrides: dict[str, bytes] = field(default_factory=dict)
    defaults: bytes | None = None
    phase: bytes | None = None
    maxchange: bytes | None = None
    interval: bytes | None = None
    audit: dict[str, bytes] = field(default_factory=dict)
    audit_names: int = 0

    @property
    def nodes(self) -> int:
        return (len(self.party) + len(self.ip_to_id) + len(self.id_to_ip) + len(self.statuses)
                + len(self.overrides) + len(self.audit) + 3)


def audit_seq(name: str) -> int | None:
    """``entry-0000000042`` → 42; None for anything else."""
    prefix, _, digits = name.rpartition("-")
    return int(digits) if prefix == "entry" and digits.isdigit() else None


def insert_in_order(audit: list[AuditRecord], record: AuditRecord, keep: int) -> bool:
    """Insert by sequence number (entries can arrive out of order), keeping the newest ``keep``;
    False if that number is already there."""
    index = len(audit)
    if audit and audit[-1].seq >= record.seq:
        index = bisect.bisect_left([r.seq for r in audit], record.seq)
    if index < len(audit) and audit[index].seq == record.seq:
        return False
    audit.insert(index, record)
    if len(audit) > keep:
        del audit[: len(audit) - keep]
    return True
