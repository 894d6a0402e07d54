"""What a new TCP connection to an overlay IP costs, at the start and at the end of the fleet.

    python bench/dnat.py --members 10000 [--connections 300] [--rounds 7] [--backends restore,iptc,nft]

For each backend, two fresh namespaces joined by a veth: a client holding Neti's rules for
``--members`` members (reject_all off) and a server listening on 10.77.0.2:7000. The first and the
last overlay IP of the fleet (in overlay order, so the first and last rule of an iptables DNAT
chain) are mapped to the server with ``nat_overrides``; every other member maps elsewhere. The
client opens ``--connections`` connections to each (connect, then close with RST so no TIME_WAIT
piles up), alternating first and last in ``--rounds`` rounds so both see the same load; the cost
per connection is the median over rounds. ``none`` is the same connection to the server's own
address with no rules at all. The clock runs from ``connect()`` to its return: what an
application waits for. The last line's ``goals_met`` is issue 16's: nft last/first ≤ 1.1. Needs
root.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.apply import backend_for, members
from neti_core.config import NetiConfig
from neti_core.lab.netns import Namespace, Netns
from neti_core.members import Side
from neti_core.rules import RuleSet, build_ruleset

SERVER = IPv4Address("10.77.0.2")
PORT = 7000
GOAL_LAST_OVER_FIRST = 1.1
_SERVER_CODE = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port})); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
"""


def ruleset(count: int) -> tuple[RuleSet, IPv4Address, IPv4Address]:
    fleet = members(count)
    overlays = sorted(m.overlay for m in fleet)
    first, last = overlays[0], overlays[-1]
    config = replace(NetiConfig(), nat_overrides={first: SERVER, last: SERVER})
    return build_ruleset(Side.EC2, fleet, config, False), first, last


def connect_many(address: str, count: int) -> float:
    """Seconds for ``count`` connects to address:PORT, each closed with RST right away."""
    linger = struct.pack("ii", 1, 0)
    spent = 0.0
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        started = time.perf_counter()
        sock.connect((address, PORT))
        spent += time.perf_counter() - started
        sock.close()
    return spent


def measure(client: Namespace, targets: dict[str, str], connections: int, rounds: int) -> dict[str, float]:
    """Median µs per connection for each target, targets alternating inside every round."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    client.call(connect_many, next(iter(targets.values())), 50)  # warm up caches and conntrack
    for _ in range(rounds):
        for name, address in targets.items():
            seconds = client.call(connect_many, address, connections)
            samples[name].append(seconds / connections * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def bench(kind: str, rs: RuleSet, *, first: IPv4Address, last: IPv4Address,
          connections: int, rounds: int) -> dict[str, object]:
    with Netns() as group:
        client, server = group.namespace("cli"), group.namespace("srv")
        group.veth(client, "c0", server, "s0")
        client.add_address("c0", "10.77.0.1/24")
        server.add_address("s0", f"{SERVER}/24")
        client.ip("route", "add", "default", "via", str(SERVER))  # overlay IPs route before DNAT
        listener = subprocess.Popen(["ip", "netns", "exec", server.name, sys.executable, "-c",
                                     _SERVER_CODE.format(port=PORT)])
        try:
            time.sleep(0.5)
            if kind == "none":
                costs = measure(client, {"server": str(SERVER)}, connections, rounds)
                return {"backend": "none", "no_rules_us": costs["server"]}
            backend = client.call(backend_for, kind)
            started = time.perf_counter()
            client.call(backend.apply, rs)
            apply_ms = (time.perf_counter() - started) * 1000
            costs = measure(client, {"first": str(first), "last": str(last)}, connections, rounds)
            return {"backend": kind, "describe": backend.describe(), "members": len(rs.members),
                    "apply_ms": round(apply_ms, 1), "first_us": costs["first"], "last_us": costs["last"],
                    "last_over_first": round(costs["last"] / costs["first"], 3)}
        finally:
            listener.kill()
            listener.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default="restore,iptc,nft")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/dnat.py needs root (it creates network namespaces)")
    rs, first, last = ruleset(args.members)
    results = {}
    for kind in ["none", *args.backends.split(",")]:
        results[kind] = bench(kind, rs, first=first, last=last, connections=args.connections,
                              rounds=args.rounds)
        print(json.dumps(results[kind]), flush=True)
    summary: dict[str, object] = {
        "members": args.members, "no_rules_us": results["none"]["no_rules_us"],
        **{f"{kind}_last_over_first": r["last_over_first"] for kind, r in results.items() if kind != "none"},
    }
    if "nft" in results:
        summary["goals_met"] = {
            "nft_last_over_first": results["nft"]["last_over_first"] <= GOAL_LAST_OVER_FIRST}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
