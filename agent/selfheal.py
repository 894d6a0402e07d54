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
from neti_core.party.mirror import MirroredParty
from neti_core.registry import OverlayRegistry

log = logging.getLogger(__name__)


class SelfHeal:
    def __init__(self, client: KazooClient, *, registry: OverlayRegistry, membership: MirroredParty,
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
        entry = self.membership.node_name
        del party_names  # kept for the caller's signature; restore() reads ZooKeeper itself
        # The names come from the mirror view, which still lists our entry when only its ip-map
        # twin was deleted: restore() checks both nodes (and watches them) at every sync.
        if self.membership.restore(watch=self.wake):
            notes.append(f"restored the party entry {entry}")
        restored, conflicts = self.registry.restore_pair(self.instance_id, self.overlay_ip,  # type: ignore[arg-type]
                                                         watch=self.wake)
        notes += restored
        if self.publisher.verify(watch=self.wake):
            notes.append("restored status (deleted or changed by another client)")
        for note in notes:
            log.warning("self-heal: %s", note)
        return tuple(notes), conflicts
