"""neti_core.lab.netns and neti_core.lab.simnet: the namespace helpers of the traffic tests and the lab."""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from neti_core.lab.netns import Netns, NetnsWorker, call_in_netns, exists, temporary_namespace
from neti_core.lab.simnet import SimHost, SimNetwork
from neti_core.members import Side

pytestmark = pytest.mark.netns


def netns_id() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def interfaces() -> list[str]:
    lines = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def test_a_callable_runs_inside_the_namespace_and_the_caller_stays_outside(as_root: None) -> None:
    mine = netns_id()
    with temporary_namespace("ntest") as ns:
        inside = ns.call(netns_id)
        assert inside != mine and netns_id() == mine
        assert ns.call(interfaces) == ["lo"]
        assert ns.run(["ip", "-o", "link"]).stdout.count(": lo:") == 1
        with pytest.raises(ZeroDivisionError):
            ns.call(lambda: 1 / 0)
        worker = NetnsWorker(ns.name)
        try:
            assert worker.call(netns_id) == inside
            assert worker.call(lambda: __import__("threading").get_ident()) == \
                worker.call(lambda: __import__("threading").get_ident())
        finally:
            worker.close()
        name = ns.name
    assert not exists(name)


def test_every_namespace_of_a_group_is_removed_even_when_the_build_fails(as_root: None) -> None:
    group = Netns()
    with pytest.raises(RuntimeError), group:
        a, b = group.namespace("a"), group.namespace("b")
        group.veth(a, "x0", b, "y0")
        a.add_address("x0", "10.77.0.1/24")
        b.add_address("y0", "10.77.0.2/24")
        server = a.call(socket.create_server, ("10.77.0.1", 7777))  # a socket stays in its namespace
        with server, b.call(socket.create_connection, ("10.77.0.1", 7777), 2):
            assert server.accept()[1][0] == "10.77.0.2"
        raise RuntimeError("half-way")
    assert not exists(f"{group.prefix}-a") and not exists(f"{group.prefix}-b")


def test_sysctl_changes_only_that_namespace(as_root: None) -> None:
    host_value = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    with temporary_namespace("ntest") as ns:
        ns.sysctl("net.ipv4.ip_forward", "1")
        assert ns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_value


def test_simnet_cleans_up_when_a_host_does_not_fit_its_segment(as_root: None) -> None:
    bad = SimNetwork([SimHost("ec2a", Side.EC2, IPv4Address("10.10.0.11"), IPv4Address("198.51.100.11")),
                      SimHost("vpc9", Side.VPC, IPv4Address("10.10.0.99"))])  # EC2 address on the VPC side
    with pytest.raises(ValueError, match="vpc9"):
        bad.build()
    assert not exists(f"{bad.group.prefix}-sw") and not exists(f"{bad.group.prefix}-ec2a")


def test_simnet_router_rules_are_a_one_to_one_nat_and_isolate_private_subnets() -> None:
    network = SimNetwork([SimHost("ec2a", Side.EC2, IPv4Address("10.10.0.11"), IPv4Address("198.51.100.11")),
                          SimHost("out", None, IPv4Address("203.0.113.9"))])
    assert network.router_rules().splitlines() == [
        "*raw",
        "-A PREROUTING -i ec2 -d 10.20.0.0/24 -j DROP",
        "-A PREROUTING -i vpc -d 10.10.0.0/24 -j DROP",
        "-A PREROUTING -i net -d 10.10.0.0/24 -j DROP",
        "-A PREROUTING -i net -d 10.20.0.0/24 -j DROP",
        "COMMIT", "*nat",
        "-A PREROUTING -d 198.51.100.11/32 -j DNAT --to-destination 10.10.0.11",
        "-A POSTROUTING -s 10.10.0.11/32 -j SNAT --to-source 198.51.100.11",
        "COMMIT",
    ]
    with pytest.raises(ValueError, match="host name"):
        SimHost("a-name-far-too-long", Side.EC2, IPv4Address("10.10.0.2"))


def test_call_in_netns_returns_the_value_and_times_out_cleanly(as_root: None) -> None:
    with temporary_namespace("ntest") as ns:
        assert call_in_netns(ns.name, lambda x: x * 2, 21) == 42
        with pytest.raises(Exception, match="still running"):
            call_in_netns(ns.name, __import__("time").sleep, 0.5, timeout=0.05)
