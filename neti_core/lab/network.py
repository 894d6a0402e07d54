"""A small AWS-like network of namespaces: EC2-Classic and VPC segments, a router, the outside.

Modelled as DESIGN.md says ("The lab"): a host holds only its private address; its public address
is a 1:1 NAT on the router. The two private ranges do not route to each other, so cross-side
traffic must use public addresses, exactly as it had to during the real migration. Outsiders (not
fleet members) sit on a third segment and reach hosts only by public address.

Everything lives in namespaces this module creates; the machine's own namespace is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from neti_core.model import Side
from neti_core.netns import Namespace, Netns
from neti_core.netns import delete as netns_delete

EC2_PRIVATE = IPv4Network("10.0.0.0/16")
VPC_PRIVATE = IPv4Network("172.31.0.0/16")
OUTSIDE = IPv4Network("198.51.100.0/24")
PUBLIC = IPv4Network("198.18.0.0/16")  # the "Elastic IPs": never an address on a host
_SEGMENTS = {Side.EC2: ("br-ec2", EC2_PRIVATE), Side.VPC: ("br-vpc", VPC_PRIVATE)}
_OUTSIDE_BRIDGE = "br-out"


def _nat_rules(op: str, private: IPv4Address, public: IPv4Address, network: IPv4Network) -> str:
    """The router's 1:1 NAT of one host (``op`` -A to add, -D to delete)."""
    return (f"iptables -w -t nat {op} PREROUTING -d {public} -j DNAT --to-destination {private}\n"
            f"iptables -w -t nat {op} POSTROUTING -s {private} ! -d {network} -j SNAT --to-source {public}\n")


def _gateway(network: IPv4Network) -> IPv4Address:
    return network.network_address + 1


@dataclass
class Attached:
    """A namespace plugged into a segment."""

    namespace: Namespace
    address: IPv4Address
    public: IPv4Address | None
    side: Side | None  # None for outsiders

    @property
    def name(self) -> str:
        return self.namespace.name


@dataclass
class SimNetwork:
    netns: Netns = field(default_factory=Netns)
    hosts: list[Attached] = field(default_factory=list)
    _router: Namespace | None = None
    _next: dict[str, int] = field(default_factory=dict)
    _plugged: int = 0

    @property
    def router(self) -> Namespace:
        assert self._router is not None, "call build() first"
        return self._router

    def build(self) -> SimNetwork:
        router = self._router = self.netns.namespace("router")
        router.sysctl("net.ipv4.ip_forward", "1")
        for bridge, network in [*_SEGMENTS.values(), (_OUTSIDE_BRIDGE, OUTSIDE)]:
            self.netns.bridge(router, bridge)
            router.add_address(bridge, f"{_gateway(network)}/{network.prefixlen}")
        # Private ranges never reach each other directly: only what the router DNAT-ed (a public
        # address) may cross between the two sides.
        router.sh(
            "iptables -w -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
            "iptables -w -A FORWARD -m conntrack --ctstate DNAT -j ACCEPT\n"
            f"iptables -w -A FORWARD -s {EC2_PRIVATE} -d {VPC_PRIVATE} -j DROP\n"
            f"iptables -w -A FORWARD -s {VPC_PRIVATE} -d {EC2_PRIVATE} -j DROP\n"
        )
        return self

    def _allocate(self, key: str, network: IPv4Network) -> IPv4Address:
        index = self._next.get(key, 10)
        self._next[key] = index + 1
        return network.network_address + index

    def _plug(self, short: str, bridge: str, network: IPv4Network, address: IPv4Address) -> Namespace:
        ns = self.netns.namespace(short)
        self._plugged += 1
        veth_outside = f"v{self._plugged}"  # never reused: a removed host's name may linger briefly
        self.netns.veth(ns, "eth0", self.router, veth_outside)
        self.netns.attach(self.router, veth_outside, bridge)
        ns.add_address("eth0", f"{address}/{network.prefixlen}")
        ns.ip("route", "add", "default", "via", str(_gateway(network)))
        return ns

    def add_host(self, short: str, side: Side, private: IPv4Address | None = None,
                 public: IPv4Address | None = None) -> Attached:
        """A fleet host: private address on its side's segment, a public address NAT-ed 1:1."""
        bridge, network = _SEGMENTS[side]
        private = private or self._allocate(side.value, network)
        public = public or self._allocate("public", PUBLIC)
        ns = self._plug(short, bridge, network, private)
        self.router.sh(_nat_rules("-A", private, public, network))
        host = Attached(ns, private, public, side)
        self.hosts.append(host)
        return host

    def remove_host(self, host: Attached) -> None:
        """Unplug and delete a host (a terminated instance); its public address is free again."""
        if host.public is not None and host.side is not None:
            self.router.sh(_nat_rules("-D", host.address, host.public, _SEGMENTS[host.side][1]), check=False)
        netns_delete(host.name)
        self.netns.namespaces = [ns for ns in self.netns.namespaces if ns.name != host.name]
        self.hosts = [h for h in self.hosts if h is not host]

    def add_outsider(self, short: str) -> Attached:
        """Not a member: an address on the outside, no public NAT."""
        address = self._allocate("outside", OUTSIDE)
        host = Attached(self._plug(short, _OUTSIDE_BRIDGE, OUTSIDE, address), address, None, None)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        self.netns.close()

    def __enter__(self) -> SimNetwork:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()
