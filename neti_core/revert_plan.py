"""Undo from the audit log, as a pure plan: which values an entry changed, and what restoring them
means. ``neti_core.operator_actions.FleetControl.revert`` checks the plan against ZooKeeper and
writes it in one transaction with its own audit record ("revert of entry N").

Every audit entry keeps the value before and after, so an entry can be undone exactly when each
value it changed still holds its ``after``: anything else would silently overwrite a newer decision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from neti_core.errors import MalformedEntryError, NetiError
from neti_core.maxchange import audit_value, decode_guard_limit, parse_maxchange
from neti_core.schema import AuditEntry, FleetDefaults, PhaseRecord, RejectAllOverride, decode_maxchange


class RevertRefused(NetiError):
    """The audit entry cannot be undone (someone changed the value since, or it has no before-value)."""


REVERTIBLE = frozenset({"reject_all.set", "reject_all.clear", "reject_all.retry", "defaults.reject_all",
                        "maxchange.set", "phase.move"})


@dataclass(frozen=True, slots=True)
class RevertPlan:
    """Reverting ``seq``: for each target, (the value to restore, the value it has now)."""

    seq: int
    entry: AuditEntry
    slots: dict[str, tuple[Any, Any]]

    def values(self) -> tuple[Any, Any]:
        """(values now, values restored) as an audit entry records them: per target for a bulk entry."""
        if len(self.slots) == 1:
            ((before, now),) = self.slots.values()
            return now, before
        return ({t: now for t, (_, now) in self.slots.items()},
                {t: before for t, (before, _) in self.slots.items()})

    def lines(self) -> list[str]:
        """One line per target, as the confirmation shows it: ``target: now → restored``."""
        return [f"{target}: {shown(now)} → {shown(before)}" for target, (before, now) in self.slots.items()]


def revert_slots(entry: AuditEntry) -> dict[str, tuple[Any, Any]]:
    """Target → (before, after) of an entry; refused for actions that have no value to restore."""
    if entry.action not in REVERTIBLE:
        raise RevertRefused(f"a {entry.action} entry cannot be reverted")
    targets = entry.extra.get("instance_ids")
    before = entry.before
    if entry.action.startswith("reject_all.") and isinstance(targets, list) and isinstance(before, dict):
        slots = {str(t): (before.get(t), entry.after) for t in targets}
    else:
        slots = {entry.target: (entry.before, entry.after)}
    for target, (before, _) in slots.items():
        if before == "malformed" or (entry.action == "maxchange.set" and isinstance(before, str)
                                     and not _is_share(before)):
            raise RevertRefused(f"{target} held a malformed value before entry; there is nothing to restore")
    return slots


def recorded_value(action: str, data: bytes | None) -> Any:
    """A control node's value as audit entries of ``action`` record it: None when unset,
    "malformed" for garbage (recorded, never restored)."""
    if data is None:
        return None
    try:
        if action.startswith("reject_all."):
            return RejectAllOverride.from_json(data).value
        if action == "defaults.reject_all":
            return FleetDefaults.from_json(data).reject_all
        if action == "phase.move":
            return PhaseRecord.from_json(data).phase
        return audit_value(decode_guard_limit(data, decode_maxchange))
    except MalformedEntryError:
        return "malformed"


def slot_document(action: str, value: Any, operator: str, at: float, why: str) -> bytes:
    """The node an action of this kind writes to set ``value``, signed with who, when and why."""
    if action == "phase.move":
        return PhaseRecord(value or "prepare", operator, at, why).to_json()
    if action == "defaults.reject_all":
        return FleetDefaults(value, operator, at, why).to_json()
    if action == "maxchange.set":
        return str(value).encode()
    return RejectAllOverride(value, operator, at, why).to_json()


def shown(value: Any) -> str:
    """Values as every view spells them: on/off/unset, never Python reprs."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {shown(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(shown(item) for item in value)
    return str(value)


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _is_share(text: str) -> bool:
    """A percentage ``maxchange`` ("10%") is a value to restore, not a malformed one."""
    try:
        return parse_maxchange(text).percent is not None
    except MalformedEntryError:
        return False
