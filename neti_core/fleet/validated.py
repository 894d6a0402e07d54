"""The nodes the console decodes, each either a typed value or the problem that kept it out.

Every input the console reads from ZooKeeper passes through here before it can name a row, an
instruction or a count: a node that does not decode is listed as a problem (path and why) and its
previous value is dropped, never guessed at, so a malformed override is never shown as an
operator's instruction and a malformed status never as an agent's report. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from neti_core.errors import MalformedEntryError
from neti_core.maxchange import decode_guard_limit
from neti_core.members import Member, parse_party_entry
from neti_core.schema import AgentStatus, RejectAllOverride, decode_maxchange

T = TypeVar("T")


class ValidatedNodes:
    """Party entries, agents' statuses and host overrides as decoded, plus every node's problem."""

    def __init__(self) -> None:
        self.party: dict[str, Member] = {}
        self.party_bad: dict[str, str] = {}  # party entry name -> why it does not parse
        self.statuses: dict[str, AgentStatus] = {}
        self.overrides: dict[str, RejectAllOverride] = {}
        self.bad: dict[str, str] = {}  # node path (relative to the prefix) -> problem

    def clear(self) -> None:
        """Before a full read: a node's problem goes with the read that found it."""
        for table in (self.party, self.party_bad, self.statuses, self.overrides, self.bad):
            table.clear()

    @property
    def problems(self) -> tuple[str, ...]:
        party = [f"ip-map/{name}: {why}" for name, why in sorted(self.party_bad.items())]
        return tuple(party + [f"{path}: {why}" for path, why in sorted(self.bad.items())])

    def parse_party_entry(self, name: str) -> None:
        try:
            self.party[name] = parse_party_entry(name).member
        except MalformedEntryError as exc:
            self.party_bad[name] = str(exc)

    def decode_status(self, instance_id: str, data: bytes) -> None:
        """A status must name the instance whose node it is in: one host cannot speak for another."""
        path = f"status/{instance_id}"
        try:
            status = AgentStatus.from_json(data)
            if status.instance_id != instance_id:
                raise MalformedEntryError(f"names instance {status.instance_id}")
        except MalformedEntryError as exc:
            self.statuses.pop(instance_id, None)
            self.bad[path] = str(exc)
            return
        self.statuses[instance_id] = status
        self.bad.pop(path, None)

    def decode_override(self, instance_id: str, data: bytes) -> None:
        path = f"control/reject_all/{instance_id}"
        try:
            self.overrides[instance_id] = RejectAllOverride.from_json(data)
            self.bad.pop(path, None)
        except MalformedEntryError as exc:
            self.overrides.pop(instance_id, None)  # a bad override is never taken for an instruction
            self.bad[path] = str(exc)

    def decode(self, path: str, decode: Callable[[bytes], T], data: bytes | None) -> T | None:
        """A control document's value, or None (absent, or reported as a problem when it is bad)."""
        self.bad.pop(path, None)
        if data is None:
            return None
        try:
            return decode(data)
        except MalformedEntryError as exc:
            self.bad[path] = str(exc)
            return None


def guard_limit_text(data: bytes) -> str:
    """maxchange as set, a count or a share (what the agents' guard accepts); raises when malformed."""
    return str(decode_guard_limit(data, decode_maxchange))
