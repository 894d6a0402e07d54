"""Which row a party member belongs to: a pure calculation over the maps the tracker keeps.

A member entry names addresses, not an instance; its row is the instance that its overlay map
(``ip-to-id``), its agent's status, or the EC2 inventory ties it to. Only when none does, it gets a
row of its own under its overlay address. While a full read is still arriving (the console's first
rows), such members wait instead: their maps may be on the way, and a row under a key it would lose
a moment later is noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from neti_core.fleet.state import OVERLAY_KEY_PREFIX
from neti_core.members import Member
from neti_core.schema import AgentStatus


def index_members(party: Iterable[Member], ip_to_id: Mapping[str, str],
                  statuses: Mapping[str, AgentStatus], by_address: Mapping[str, str], *,
                  loading: bool) -> dict[str, Member]:
    """Row key → member (the first member wins a key, as before)."""
    by_status_overlay = {status.overlay_ip: key for key, status in statuses.items()}
    index: dict[str, Member] = {}
    for member in party:
        overlay = str(member.overlay)
        key = (ip_to_id.get(overlay) or by_status_overlay.get(overlay)
               or by_address.get(str(member.private)) or by_address.get(str(member.public)))
        if key is None and loading:
            continue
        index.setdefault(key or f"{OVERLAY_KEY_PREFIX}{overlay}", member)
    return index
