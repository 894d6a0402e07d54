"""Hosts ZooKeeper no longer knows but the operator must still see.

A host cut off from ZooKeeper loses its party entry and its status (both ephemeral) within a
session timeout, and a terminated member's rules stay on every agent for the removal grace period
(or until the mass-change guard lets them go). Shown from what they last reported, they read as
"out of contact" or "leaving", never as an instance that was never in Neti. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView, Mapping
from dataclasses import replace

from neti_core.aws import Instance
from neti_core.fleet.state import HostRow, RuleState
from neti_core.schema import AgentStatus


def out_of_contact(last_known: HostRow, instance: Instance) -> HostRow:
    """Was in Neti and EC2 says it still runs: cut off from ZooKeeper, or its agent stopped."""
    return replace(last_known, running=True, in_party=False, state=RuleState.OUT_OF_CONTACT,
                   was=last_known.state_label, name=instance.name or last_known.name,
                   detail=(f"no party entry or status in ZooKeeper, but EC2 says it runs: cut off or "
                           f"its agent stopped; last known: {last_known.state_label}"
                           + (f" ({last_known.detail})" if last_known.detail else "")))


def leaving(last_known: HostRow, *, held: bool) -> HostRow:
    """A member that left (its instance no longer runs) while agents still keep its rules: in the
    removal grace period, or held by the mass-change guard (``M`` raises maxchange to let it go)."""
    why = ("held by the mass-change guard: M raises maxchange to release it" if held
           else "removal pending: agents keep its rules for removal_grace_seconds")
    return replace(last_known, running=False, in_party=False, state=RuleState.LEAVING,
                   was=last_known.state_label, detail=f"left the party; {why}")


def without_contact(last_known: HostRow, instance: Instance | None,
                    removals: tuple[int, int]) -> HostRow | None:
    """The row of a host with neither party entry nor status; None once nothing holds it."""
    if instance is not None:
        return out_of_contact(last_known, instance)
    pending, held = removals
    if pending or held:
        return leaving(last_known, held=held > 0)
    return None


def removal_counts(statuses: Iterable[AgentStatus]) -> tuple[int, int]:
    """(pending, held) removals: each agent counts the same departures, so the most any reports."""
    pending = held = 0
    for status in statuses:
        pending = max(pending, status.pending_removals)
        if status.guard is not None:
            held = max(held, status.guard.blocked_removals)
    return pending, held


class LastKnownRows:
    """The last row of each host built from its own data (party entry or status): what a host cut
    off from ZooKeeper, or a member on its way out, is shown with until nothing holds it."""

    def __init__(self) -> None:
        self._rows: dict[str, HostRow] = {}
        self.removals = (0, 0)  # (pending, held) removals, the most any agent reports

    def keys(self) -> KeysView[str]:
        return self._rows.keys()

    def remember(self, key: str, row: HostRow, *, full_report: bool) -> None:
        """A host's full report (member and status) replaces what we knew; half of one only stands
        in until there is one."""
        if full_report or key not in self._rows:
            self._rows[key] = row

    def stale_after(self, statuses: Mapping[str, AgentStatus]) -> set[str]:
        """The hosts whose rows must be rebuilt because the agents' removal counts changed."""
        removals = removal_counts(statuses.values())
        if removals == self.removals:
            return set()
        self.removals = removals
        return set(self._rows.keys() - statuses.keys())

    def row_without_contact(self, key: str, instance: Instance | None) -> HostRow | None:
        known = self._rows.get(key)
        if known is None:
            return None
        row = without_contact(known, instance, self.removals)
        if row is None:
            del self._rows[key]
        return row
