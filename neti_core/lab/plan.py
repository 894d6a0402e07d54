"""The lab's fleet as a pure plan: which hosts, on which side, with which addresses and names."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from neti_core.members import Side

EC2_PRIVATE = IPv4Network("10.0.0.0/16")
VPC_PRIVATE = IPv4Network("172.31.0.0/16")
OUTSIDE = IPv4Network("198.51.100.0/24")  # the internet segment: the "office" in the ssh whitelist
MAX_HOSTS = 500  # a lab, not a load test: each host is a real agent process


class LabPlanError(ValueError):
    """A lab request that cannot be built (one line, for the CLI)."""


@dataclass(frozen=True, slots=True)
class HostPlan:
    name: str           # the EC2 Name tag, and the host's short name in the lab
    side: Side
    private: IPv4Address
    runs_agent: bool    # False: an instance that never runs Neti (the unregistered view's content)


def plan_fleet(hosts: int, vpc_percent: float, unregistered: int, first_index: int = 1) -> list[HostPlan]:
    """``hosts`` agents (``vpc_percent`` of them in the VPC, spread evenly) plus ``unregistered``
    instances without an agent; addresses are deterministic so a lab is reproducible."""
    if hosts < 0 or unregistered < 0:
        raise LabPlanError("--hosts and --unregistered must not be negative")
    if not 0 <= vpc_percent <= 100:
        raise LabPlanError(f"--vpc must be a percentage 0-100, got {vpc_percent:g}")
    if hosts + unregistered > MAX_HOSTS:
        raise LabPlanError(f"at most {MAX_HOSTS} instances in a lab, asked for {hosts + unregistered}")
    vpc_hosts = round(hosts * vpc_percent / 100)
    plans = []
    for offset in range(hosts + unregistered):
        index = first_index + offset
        runs_agent = offset < hosts
        # Spread the VPC hosts through the fleet (every k-th), as a migration would.
        side = Side.VPC if runs_agent and vpc_hosts and offset * vpc_hosts // max(hosts, 1) != \
            (offset + 1) * vpc_hosts // max(hosts, 1) else Side.EC2
        plans.append(HostPlan(host_name(index, runs_agent), side, private_address(side, index), runs_agent))
    return plans


def host_name(index: int, runs_agent: bool = True) -> str:
    return f"{'app' if runs_agent else 'legacy'}-{index:03d}"


def private_address(side: Side, index: int) -> IPv4Address:
    network = VPC_PRIVATE if side is Side.VPC else EC2_PRIVATE
    return network.network_address + 256 + index  # skip 10.0.0.x: the gateway lives there
