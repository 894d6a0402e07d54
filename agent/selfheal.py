"""Self-heal: this host's own nodes, put back when someone deletes or changes them under a live session.

ZooKeeper removes an ephemeral node only when its session ends; a live agent whose party entry,
overlay pair or status vanished was deleted by another client (a script, an operator's mistake),
and every other host would drop it at the end of its grace period. Each sync checks the three and
restores what is missing, with a watch on each so a deletion wakes the loop at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from kazoo.client import KazooClient

from agent.status import StatusPublisher
from neti_core.registry import OverlayRegistry, PartyMembership

log = logging.getLogger(__name__)


class SelfHeal:
    def __init__(self, client: KazooClient, *, registry: OverlayRegistry, membership: PartyMembership,
                 publisher: StatusPublisher, instance_id: str, overlay_ip: object,
                 wake: Callable[[object], None]) -> None:
        self.client = client
        self.registry = registry
        self.membership = membership
        self.publisher = publisher
        self.instance_id = instance_id
        self.overlay_ip = overlay_ip
        self.wake = wake

    def check(self, party_names: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Restore what is missing: (one note per restored node, problems it could not fix)."""
        notes: list[str] = []
        entry = self.membership.party.node
        if entry not in set(party_names) and self.membership.restore():
            notes.append(f"restored the party entry {entry}")
        restored, conflicts = self.registry.restore_pair(self.instance_id, self.overlay_ip,  # type: ignore[arg-type]
                                                         watch=self.wake)
        notes += restored
        if self.publisher.verify(watch=self.wake):
            notes.append("restored status (deleted or changed by another client)")
        for note in notes:
            log.warning("self-heal: %s", note)
        return tuple(notes), conflicts
