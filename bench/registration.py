"""Register N instances concurrently, each with its own ZooKeeper session; count duplicate IPs.

    python bench/registration.py --hosts 200 [--zk HOST:PORT]

Starts its own ZooKeeper unless --zk is given. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.client import KazooClient

from neti_core.config import ZkPaths
from neti_core.lab.zkserver import zookeeper_hosts
from neti_core.registry import OverlayRegistry


def run(hosts: str, count: int, subnet: IPv4Network) -> dict[str, object]:
    paths = ZkPaths.under(f"/bench-{uuid.uuid4().hex[:8]}")
    with ThreadPoolExecutor(max_workers=32) as pool:
        clients = list(pool.map(lambda _: _connect(hosts), range(count)))
    print(f"{count} sessions open", file=sys.stderr)
    barrier = threading.Barrier(count)
    latencies: list[float] = []

    def register(n: int) -> str:
        registry = OverlayRegistry(clients[n], paths, subnet)
        barrier.wait()
        began = time.perf_counter()
        ip = str(registry.register(f"i-{n:017x}").overlay_ip)
        latencies.append(time.perf_counter() - began)
        return ip

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        ips = list(pool.map(register, range(count)))
    seconds = time.perf_counter() - started
    checker = OverlayRegistry(clients[0], paths, subnet)
    ip_to_id, id_to_ip = checker.read_maps()
    problems = checker.audit()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(_close, clients))
    duplicates = sum(n - 1 for n in Counter(ips).values() if n > 1)
    latencies.sort()
    return {
        "hosts": count,
        "duplicates": duplicates,
        "seconds": round(seconds, 3),
        "registrations_per_s": round(count / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "ip_to_id": len(ip_to_id),
        "id_to_ip": len(id_to_ip),
        "registry_problems": len(problems),
        "subnet": str(subnet),
    }


def _connect(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=30)
    client.start(timeout=60)
    return client


def _close(client: KazooClient) -> None:
    client.stop()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--zk", help="HOST:PORT of an existing ZooKeeper (default: start one)")
    parser.add_argument("--subnet", type=IPv4Network, default=IPv4Network("192.168.0.0/16"))
    args = parser.parse_args()
    with zookeeper_hosts(args.zk) as hosts:
        result = run(hosts, args.hosts, args.subnet)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
