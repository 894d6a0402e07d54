"""Time from one member joining until every agent's status shows it applied.

    python bench/convergence.py --agents 100 [--rounds 5] [--processes P] [--zk HOST:PORT] [--tls]
    python bench/convergence.py --agents 1 --members 10000   # one agent in a big fleet

The agents run as threads of this process, or spread over P worker processes, each agent with
its own ZooKeeper session, its own reconcile loop and a recording backend (no kernel: what is
measured is the path ZooKeeper watch → sync → status, with the default interval of 1 s).
Starts its own ZooKeeper unless --zk is given; with --tls that ZooKeeper serves only TLS
(secureClientPort, Netty) and every session, the observer's too, is a TLS one: run the bench with
and without to see what TLS costs. ``--members N`` first seeds N members (their ``ip-map``
entries and mirror twins, as agents of this version leave them) and runs the agents in worker
processes, so ``agent_rss_mb`` (the largest worker's resident memory after the rounds) is the
agents' own. ``goals_met``: p99 ≤ 2 s, and with --members, agent RSS ≤ 80 MB per agent process of
one agent. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.client import KazooClient

from agent.agent import Agent
from bench.fanout import seed
from neti_core.config import NetiConfig, parse_config
from neti_core.firewall.recording import RecordingBackend
from neti_core.imds import Identity
from neti_core.lab.pki import issue, make_ca
from neti_core.lab.zkserver import ServerTls, ZooKeeperServer, zookeeper_hosts
from neti_core.members import Side
from neti_core.schema import AgentStatus
from neti_core.zkclient import make_client

GOAL_P99_S = 2.0
GOAL_AGENT_RSS_MB = 80.0


def identity(n: int) -> Identity:
    side = Side.VPC if n % 4 == 0 else Side.EC2
    private = f"172.31.{n // 250}.{n % 250 + 2}" if side is Side.VPC else f"10.0.{n // 250}.{n % 250 + 2}"
    return Identity(f"i-{n:017x}", IPv4Address(private), IPv4Address(f"198.18.{n // 250}.{n % 250 + 2}"),
                    "02:00:00:00:00:01", side)


def statuses(client: KazooClient, paths: object, ids: list[str]) -> list[AgentStatus | None]:
    pending = [client.get_async(f"{paths.status}/{i}") for i in ids]  # type: ignore[attr-defined]
    out = []
    for result in pending:
        try:
            out.append(AgentStatus.from_json(result.get(timeout=10)[0]))
        except Exception:
            out.append(None)
    return out


def bench_config(prefix: str, ca: str | None = None) -> NetiConfig:
    tls = {"zk_tls_ca_file": ca} if ca else {}
    return parse_config({"zk_prefix": prefix, "metrics_port": 0, "removal_grace_seconds": 60,
                         "firewall_backend": "recording", **tls})


@contextmanager
def tls_zookeeper() -> Iterator[tuple[str, str]]:
    """A TLS-only ZooKeeper with a throwaway CA: (connect string, CA file)."""
    workdir = Path(tempfile.mkdtemp(prefix="neti-conv-tls-"))
    ca = make_ca(workdir / "pki")
    server_cert = issue(ca, "zookeeper", server=True)
    with ZooKeeperServer(heap_mb=512, tls=ServerTls(server_cert.combined, ca.cert)) as server:
        yield server.hosts, str(ca.cert)


def start_agents(hosts: str, prefix: str, numbers: range, workdir: Path,
                 ca: str | None = None) -> list[Agent]:
    config = bench_config(prefix, ca)
    agents = [Agent(config, identity(n), RecordingBackend(config.ipset_name), zk_hosts=hosts,
                    state_dir=workdir / str(n)) for n in numbers]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda a: a.start(), agents))
    return agents


def worker(hosts: str, prefix: str, first: int, count: int, ca: str | None) -> None:
    """``--worker``: run agents first..first+count-1 until stdin closes (the parent is done)."""
    agents = start_agents(hosts, prefix, range(first, first + count),
                          Path(tempfile.mkdtemp(prefix="neti-conv-")), ca)
    print("ready", flush=True)
    sys.stdin.read()
    for agent in agents:
        agent.stop()


def run(hosts: str, count: int, rounds: int, processes: int = 1, ca: str | None = None, *,
        members: int = 0) -> dict[str, object]:
    prefix = f"/bench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="neti-conv-"))
    config = bench_config(prefix, ca)
    if members:
        seeder = make_client(config, hosts)
        seeder.start(timeout=30)
        seed(seeder, config.zk_paths, members)
        seeder.stop()
        seeder.close()
        print(f"{members} members seeded", file=sys.stderr)
    started = time.perf_counter()
    agents: list[Agent] = []
    workers: list[subprocess.Popen[str]] = []
    if processes <= 1 and not members:
        agents = start_agents(hosts, prefix, range(count), workdir, ca)
    else:
        share = -(-count // processes)
        for first in range(0, count, share):
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", "--zk", hosts, "--prefix", prefix, "--first",
                 str(first), "--agents", str(min(share, count - first)), *(["--ca", ca] if ca else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for process in workers:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    print(f"{count} agents started in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    observer = make_client(config, hosts)
    observer.start(timeout=30)
    paths = config.zk_paths
    ids = [identity(n).instance_id for n in range(count)]

    def converged_at(version: int) -> bool:
        return all(s is not None and s.membership_version >= version for s in statuses(observer, paths, ids))

    deadline = time.monotonic() + 120
    while not converged_at(observer.exists(paths.ip_map).cversion):
        if time.monotonic() > deadline:
            raise SystemExit("agents never converged on the initial membership")
        time.sleep(0.2)
    samples: list[float] = []
    newcomers = []
    for round_number in range(rounds):
        time.sleep(1.5)  # let every loop go idle, so each round starts from a quiet fleet
        newcomer = Agent(config, identity(count + round_number), RecordingBackend(config.ipset_name),
                         zk_hosts=hosts, state_dir=workdir / f"new{round_number}")
        newcomer.connect()
        joined = time.perf_counter()
        newcomer.register()  # joins the party: one membership change
        newcomers.append(newcomer)
        version = observer.exists(paths.ip_map).cversion
        seen: dict[str, float] = {}
        while len(seen) < count:
            for instance_id, status in zip(ids, statuses(observer, paths, ids), strict=True):
                if instance_id not in seen and status is not None and status.membership_version >= version:
                    seen[instance_id] = time.perf_counter() - joined
            if time.perf_counter() - joined > 60:
                raise SystemExit(f"round {round_number}: only {len(seen)} of {count} agents applied it")
            time.sleep(0.01)
        samples.extend(seen.values())
        print(f"round {round_number}: slowest agent {max(seen.values()):.2f} s", file=sys.stderr)
    worker_rss = [rss_mb(process.pid) for process in workers]
    for agent in [*agents, *newcomers]:
        agent.stop()
    for process in workers:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(60)
    observer.stop()
    observer.close()
    samples.sort()
    p99 = round(samples[max(0, int(len(samples) * 0.99) - 1)], 3)
    agent_rss = max(worker_rss) if worker_rss else None
    goals_met = p99 <= GOAL_P99_S and (not members or (agent_rss is not None and count <= len(workers)
                                                       and agent_rss <= GOAL_AGENT_RSS_MB))
    return {
        "agents": count,
        "members_seeded": members,
        "rounds": rounds,
        "mode": (f"{max(processes, 1)} process(es); one thread and one ZooKeeper session per agent; "
                 "recording backend"),
        "p50_s": round(statistics.median(samples), 3),
        "p99_s": p99,
        "max_s": round(samples[-1], 3),
        "interval_s": 1.0,
        "tls": ca is not None,
        "agent_rss_mb": agent_rss,
        "goal_p99_s": GOAL_P99_S,
        "goals_met": goals_met,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1,
                        help="spread the agents over this many processes (less GIL contention)")
    parser.add_argument("--members", type=int, default=0,
                        help="seed this many members first (agents then run in worker processes)")
    parser.add_argument("--zk", help="HOST:PORT of an existing ZooKeeper (default: start one)")
    parser.add_argument("--tls", action="store_true",
                        help="start a TLS-only ZooKeeper and connect every session over TLS")
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.zk, args.prefix, args.first, args.agents, args.ca)
        return
    if args.tls:
        if args.zk:
            parser.error("--tls starts its own TLS-only ZooKeeper; it does not go with --zk")
        with tls_zookeeper() as (hosts, ca):
            result = run(hosts, args.agents, args.rounds, args.processes, ca, members=args.members)
    else:
        with zookeeper_hosts(args.zk) as hosts:
            result = run(hosts, args.agents, args.rounds, args.processes, members=args.members)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
