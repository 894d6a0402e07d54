"""Which members to program: asymmetric convergence and the mass-change guard, as pure logic.

Additions apply at the next sync. A member that disappears from the party keeps its rules for a
grace period, so an agent restart or a short session loss elsewhere cuts no traffic. When more
members would be removed at once than ``maxchange`` allows, none is removed (the guard) until they
come back or an operator raises ``maxchange``; additions still go through.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from neti_core.errors import MalformedEntryError
from neti_core.maxchange import MaxChange
from neti_core.members import Member, parse_identifier


def member_key(member: Member) -> str:
    return member.identifier()


@dataclass(frozen=True, slots=True)
class MembershipPlan:
    members: tuple[Member, ...]   # what to program
    live: int                     # members announced in the party now
    in_grace: int                 # vanished, still programmed until their grace period ends
    removed: int                  # vanished and dropped by this plan
    blocked_removals: int         # vanished members the guard holds (0: the guard is not tripped)
    maxchange: int                # the limit this plan applied (a share resolved to a count)
    maxchange_setting: str        # as configured: "20" or "10%"
    next_expiry: float | None     # monotonic time at which a grace period ends

    @property
    def guard_tripped(self) -> bool:
        return self.blocked_removals > 0


class MembershipTracker:
    """Remembers what was last programmed and since when each vanished member has been gone."""

    def __init__(self, grace_seconds: float, applied: Iterable[Member] = ()) -> None:
        self.grace_seconds = grace_seconds
        self.applied: dict[str, Member] = {member_key(m): m for m in applied}
        self._vanished_since: dict[str, float] = {}

    def plan(self, live: Sequence[Member], now: float, maxchange: MaxChange | int) -> MembershipPlan:
        """``maxchange`` as a share is of the members last programmed: the fleet before the loss."""
        if isinstance(maxchange, int):
            maxchange = MaxChange(count=maxchange)
        limit = maxchange.limit(len(self.applied))
        live_by_key = {member_key(m): m for m in live}
        for key in live_by_key:
            self._vanished_since.pop(key, None)
        gone = [key for key in self.applied if key not in live_by_key]
        for key in gone:
            self._vanished_since.setdefault(key, now)
        in_grace = [k for k in gone if now - self._vanished_since[k] < self.grace_seconds]
        expired = [k for k in gone if now - self._vanished_since[k] >= self.grace_seconds]
        # The guard counts every member that would be removed, whether its grace period has run out
        # or not: a mass outage shows up as staggered session expiries, never as one big step.
        tripped = len(gone) > limit
        blocked = expired if tripped else []
        # Live entries win an overlay IP over kept ones (a host that came back with new addresses).
        by_overlay: dict[object, Member] = {}
        for member in [*live_by_key.values(), *(self.applied[k] for k in [*in_grace, *blocked])]:
            by_overlay.setdefault(member.overlay, member)
        expiries = [self._vanished_since[k] + self.grace_seconds for k in in_grace]
        return MembershipPlan(
            members=tuple(sorted(by_overlay.values(), key=lambda m: int(m.overlay))),
            live=len(live_by_key),
            in_grace=len(in_grace),
            removed=len(expired) - len(blocked),
            blocked_removals=len(gone) if tripped else 0,  # all of them are held, in grace or not
            maxchange=limit,
            maxchange_setting=str(maxchange),
            next_expiry=min(expiries) if expiries else None,
        )

    def commit(self, plan: MembershipPlan) -> None:
        """Call once the plan's rules are in the kernel."""
        self.applied = {member_key(m): m for m in plan.members}
        for key in list(self._vanished_since):
            if key not in self.applied:
                del self._vanished_since[key]


def save_applied(path: Path, members: Iterable[Member]) -> None:
    """Persist the programmed members, so grace and guard also hold across an agent restart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(sorted(m.identifier() for m in members)).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".applied-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_applied(path: Path) -> tuple[list[Member], list[str]]:
    """The members saved by the last run, and a note for each entry that did not parse."""
    try:
        identifiers = json.loads(path.read_bytes())
    except FileNotFoundError:
        return [], []
    except (OSError, ValueError) as exc:
        return [], [f"{path}: unreadable ({exc}); starting without it"]
    if not isinstance(identifiers, list):
        return [], [f"{path}: not a list; starting without it"]
    members, problems = [], []
    for identifier in identifiers:
        try:
            members.append(parse_identifier(identifier))
        except MalformedEntryError as exc:
            problems.append(f"{path}: {exc}")
    return members, problems
