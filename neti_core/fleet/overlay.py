"""The console's overlay-address figure: used, free, and idle (pure).

*Idle* addresses are held by an instance that is neither running in EC2 nor live in Neti (no
party entry announces the address, no status): the most ``neti registry reclaim`` could give
back. The console does not call them reclaimable: a stopped instance is idle but keeps its
address, and the quarantine is the reclaim command's to judge (it asks EC2 for every state).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network


@dataclass(frozen=True, slots=True)
class OverlayUsage:
    used: int = 0
    total: int | None = None  # usable addresses of overlay_subnet; None when not configured
    idle: int | None = None  # None until the EC2 inventory is known

    @property
    def free(self) -> int | None:
        return None if self.total is None else max(self.total - self.used, 0)


def usable_addresses(subnet: IPv4Network | None) -> int | None:
    return None if subnet is None else max(subnet.num_addresses - 2, 0)


def overlay_usage(ip_to_id: Mapping[str, str], live_overlays: Collection[str],
                  status_ids: Collection[str], running_ids: Collection[str] | None,
                  total: int | None) -> OverlayUsage:
    """``ip_to_id``: overlay IP -> owner; ``running_ids``: None while EC2 is not known."""
    idle = None
    if running_ids is not None:
        idle = sum(1 for ip, owner in ip_to_id.items()
                   if ip not in live_overlays and owner not in status_ids and owner not in running_ids)
    return OverlayUsage(len(ip_to_id), total, idle)
