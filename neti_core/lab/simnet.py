"""An AWS-shaped network made of namespaces, for traffic tests and the lab (DESIGN.md "The lab").

::

    [ec2 hosts] --br-ec2--+                 +--br-net-- [outsiders]
                          |-- router (rt) --|
    [vpc hosts] --br-vpc--+

* The bridges live in their own namespace (``sw``); every host has one interface, ``eth0``.
* A host holds **only its private address**. Its public address is a 1:1 NAT in the router
  (DNAT on the way in, SNAT on the way out), as on AWS. This matters: the kernel picks a
  connection's source address from the route to the *overlay* IP before Neti's nat OUTPUT DNAT
  rewrites the destination, so a host that owned its public address would still send from its
  private one and the receiver, which admits cross-side members by public address, would drop it.
* The EC2 and VPC private subnets do not route to each other, and the internet reaches no private
  address; public addresses reach everyone (the router drops the rest in its raw table).
* Outsiders sit on the internet segment with their own (public) address.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from neti_core.lab.netns import Namespace, Netns
from neti_core.lab.netns import delete as delete_namespace
from neti_core.members import Side

_SEGMENTS = ("ec2", "vpc", "net")
_EC2, _VPC, _NET = IPv4Network("10.10.0.0/24"), IPv4Network("10.20.0.0/24"), IPv4Network("203.0.113.0/24")


@dataclass(frozen=True)
class SimHost:
    """A host: ``side`` None is an outsider, whose ``private`` is its internet address."""

    name: str
    side: Side | None
    private: IPv4Address
    public: IPv4Address | None = None

    def __post_init__(self) -> None:
        if not (1 <= len(self.name) <= 12) or not self.name.replace("-", "").isalnum():
            raise ValueError(f"host name {self.name!r}: 1-12 letters, digits or -")

    @property
    def segment(self) -> str:
        return self.side.value if self.side is not None else "net"


@dataclass(frozen=True)
class Segments:
    """Address plan; the router takes the first address of each segment."""

    ec2: IPv4Network = _EC2
    vpc: IPv4Network = _VPC
    net: IPv4Network = _NET

    def network(self, segment: str) -> IPv4Network:
        network: IPv4Network = getattr(self, segment)
        return network

    def gateway(self, segment: str) -> IPv4Address:
        return next(self.network(segment).hosts())


@dataclass
class SimNetwork:
    """Builds the network on :meth:`build`; :meth:`close` (or leaving the ``with``) removes it all."""

    hosts: list[SimHost]
    segments: Segments = field(default_factory=Segments)
    group: Netns = field(default_factory=Netns)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __enter__(self) -> SimNetwork:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Namespace:
        return self.namespaces[name]

    def host(self, name: str) -> SimHost:
        return next(h for h in self.hosts if h.name == name)

    def build(self) -> SimNetwork:
        """Create everything; on any failure remove what was made and re-raise."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        group, seg = self.group, self.segments
        switch = group.namespace("sw")
        router = group.namespace("rt")
        for segment in _SEGMENTS:
            group.bridge(switch, f"br-{segment}")
            group.veth(router, segment, switch, f"rt-{segment}")
            group.attach(switch, f"rt-{segment}", f"br-{segment}")
            router.add_address(segment, f"{seg.gateway(segment)}/{seg.network(segment).prefixlen}")
        router.sysctl("net.ipv4.ip_forward", "1")
        self.namespaces["rt"] = router
        self.namespaces["sw"] = switch
        for host in self.hosts:
            self._plug(host)
        self._apply_router_rules()

    def _plug(self, host: SimHost) -> Namespace:
        network = self.segments.network(host.segment)
        if host.private not in network:
            raise ValueError(f"{host.name}: {host.private} is not in the {host.segment} segment")
        ns = self.group.namespace(host.name)
        self.namespaces[host.name] = ns
        self.group.veth(ns, "eth0", self.namespaces["sw"], host.name)
        self.group.attach(self.namespaces["sw"], host.name, f"br-{host.segment}")
        ns.add_address("eth0", f"{host.private}/{network.prefixlen}")
        ns.add_route("default", str(self.segments.gateway(host.segment)))
        return ns

    def _apply_router_rules(self) -> None:
        self.namespaces["rt"].run(["iptables-restore", "-w"], input=self.router_rules())

    def add_host(self, host: SimHost) -> Namespace:
        """Plug one more host into a built network (a launched instance). Thread-safe."""
        with self._lock:
            if any(h.name == host.name for h in self.hosts):
                raise ValueError(f"host {host.name!r} exists already")
            ns = self._plug(host)
            self.hosts.append(host)
            self._apply_router_rules()
            return ns

    def remove_host(self, name: str) -> None:
        """Unplug and delete a host (a terminated instance); its public address is free again."""
        with self._lock:
            self.hosts = [h for h in self.hosts if h.name != name]
            ns = self.namespaces.pop(name)
            self._apply_router_rules()
            delete_namespace(ns.name)
            self.group.namespaces = [n for n in self.group.namespaces if n.name != ns.name]

    def router_rules(self) -> str:
        """The router's raw isolation and 1:1 NAT, as iptables-restore input."""
        seg = self.segments
        lines = ["*raw"]
        for inbound, private in (("ec2", "vpc"), ("vpc", "ec2"), ("net", "ec2"), ("net", "vpc")):
            lines.append(f"-A PREROUTING -i {inbound} -d {seg.network(private)} -j DROP")
        lines += ["COMMIT", "*nat"]
        for host in self.hosts:
            if host.public is not None and host.side is not None:
                lines.append(f"-A PREROUTING -d {host.public}/32 -j DNAT --to-destination {host.private}")
                lines.append(f"-A POSTROUTING -s {host.private}/32 -j SNAT --to-source {host.public}")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.namespaces.clear()
        self.group.close()
