"""Register N instances concurrently, each with its own ZooKeeper session; count duplicate IPs.

    python bench/registration.py --hosts 1000 --processes 4 [--zk HOST:PORT]

With ``--processes P`` the hosts register from P worker processes (each host still its own
session), as a real registration storm does; the clock runs from the go signal to the last
registration. Starts its own ZooKeeper unless --zk is given. ``goals_met``: 0 duplicates, an
audit-clean registry and ≤ 10 s. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.client import KazooClient

from neti_core.config import ZkPaths
from neti_core.lab.zkserver import zookeeper_hosts
from neti_core.registry import OverlayRegistry

GOAL_SECONDS = 10.0


def register_all(hosts: str, paths: ZkPaths, numbers: range, subnet: IPv4Network, *,
                 before_go: Callable[[], object]) -> tuple[list[str], list[float], list[KazooClient]]:
    """Open one session per host, call ``before_go``, then register them all at once."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        clients = list(pool.map(lambda _: _connect(hosts), numbers))
    barrier = threading.Barrier(len(numbers), action=before_go)
    latencies: list[float] = []

    def register(k: int) -> str:
        registry = OverlayRegistry(clients[k], paths, subnet)
        barrier.wait()
        began = time.perf_counter()
        ip = str(registry.register(f"i-{numbers[k]:017x}").overlay_ip)
        latencies.append(time.perf_counter() - began)
        return ip

    with ThreadPoolExecutor(max_workers=len(numbers)) as pool:
        ips = list(pool.map(register, range(len(numbers))))
    return ips, latencies, clients


def worker(hosts: str, prefix: str, first: int, count: int, subnet: IPv4Network) -> None:
    """``--worker``: register hosts first..first+count-1 when the parent says go (a stdin line)."""
    def ready_then_wait_for_go() -> None:  # every session of this worker is open
        print("ready", flush=True)
        sys.stdin.readline()

    ips, latencies, clients = register_all(hosts, ZkPaths.under(prefix), range(first, first + count),
                                           subnet, before_go=ready_then_wait_for_go)
    print(json.dumps({"ips": ips, "latencies": latencies}), flush=True)
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(_close, clients))


def run_processes(hosts: str, count: int, subnet: IPv4Network, processes: int) -> dict[str, object]:
    prefix = f"/bench-{uuid.uuid4().hex[:8]}"
    share = -(-count // processes)
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", "--zk", hosts, "--prefix", prefix,
                                 "--first", str(first), "--hosts", str(min(share, count - first)),
                                 "--subnet", str(subnet)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for first in range(0, count, share)]
    for process in workers:  # "ready": all of that worker's sessions are open
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for process in workers:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    ips: list[str] = []
    latencies: list[float] = []
    for process in workers:
        assert process.stdout is not None
        reply = json.loads(process.stdout.readline())
        ips += reply["ips"]
        latencies += reply["latencies"]
    seconds = time.perf_counter() - started
    for process in workers:
        process.wait(60)
    checker = _connect(hosts)
    result = summary(checker, ZkPaths.under(prefix), subnet, ips, latencies=latencies, seconds=seconds)
    _close(checker)
    return result | {"processes": len(workers)}


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
    result = summary(clients[0], paths, subnet, ips, latencies=latencies, seconds=seconds)
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(_close, clients))
    return result | {"processes": 1}


def summary(client: KazooClient, paths: ZkPaths, subnet: IPv4Network, ips: list[str], *,
            latencies: list[float], seconds: float) -> dict[str, object]:
    checker = OverlayRegistry(client, paths, subnet)
    ip_to_id, id_to_ip = checker.read_maps()
    problems = checker.audit()
    duplicates = sum(n - 1 for n in Counter(ips).values() if n > 1)
    count = len(ips)
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
        "goals_met": duplicates == 0 and not problems and len(id_to_ip) == count and seconds <= GOAL_SECONDS,
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
    parser.add_argument("--processes", type=int, default=1, help="register from this many processes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.zk, args.prefix, args.first, args.hosts, args.subnet)
        return
    with zookeeper_hosts(args.zk) as hosts:
        if args.processes > 1:
            result = run_processes(hosts, args.hosts, args.subnet, args.processes)
        else:
            result = run(hosts, args.hosts, args.subnet)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
