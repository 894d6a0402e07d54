"""What one membership change costs: bytes per agent and for the ensemble, mirror against ip-map.

    python bench/fanout.py --members 1000 10000 [--sessions 100] [--changes 5]

Starts its own ZooKeeper and, for each fleet size, seeds N members as agents of this version leave
them (the ``ip-map`` entry and its mirror twin, same name). Then:

* one probe session runs the agent's membership code (:class:`neti_core.party.view.MirrorView`):
  a joining or leaving host (:class:`neti_core.party.mirror.MirroredParty`, another session) and
  the bytes the probe's socket received from the change until its view shows it (``tcp_info``
  ``bytes_received`` of kazoo's socket), the max over ``--changes`` joins and as many leaves;
* the same with the original layout, in the same run, as the raw baseline: a session that keeps a
  child watch on ``ip-map`` and re-reads it on every change (what every agent did before);
* ``--sessions`` light sessions each running a MirrorView: the bytes all of them received per
  change (the ensemble's fan-out), and ZooKeeper's watch count, znode count and RSS (``mntr``);
* that ``ip-map`` is complete and correct afterwards: every member there, well-formed, equal to
  the mirror.

``goals_met``: bytes per change per agent ≤ 8 KB for a join and for a leave at every size, with
``ip-map`` complete and correct. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from neti_core.config import ZkPaths
from neti_core.lab.zkserver import ZooKeeperServer, four_letter_word
from neti_core.members import Member, Side, format_party_entry, parse_ipv4, parse_party
from neti_core.party.mirror import MirroredParty, bucket_of, ensure_buckets
from neti_core.party.view import MirrorView

GOAL_BYTES = 8 * 1024
_TCPI_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in Linux's struct tcp_info


def member(n: int) -> Member:
    octets = f"{n // 250 % 250}.{n % 250 + 1}"
    side = Side.VPC if n % 5 == 0 else Side.EC2
    return Member(parse_ipv4(f"54.{n // 62500}.{octets}"), parse_ipv4(f"10.{n // 62500 + 1}.{octets}"),
                  parse_ipv4(f"172.{16 + n // 62500}.{octets}"), side)


def bytes_received(client: KazooClient) -> int:
    """Bytes the session's TCP connection has received (kazoo keeps its socket private)."""
    sock: socket.socket = client._connection._socket
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("Q", info, _TCPI_BYTES_RECEIVED)[0])


def connect(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=30)
    client.start(timeout=60)
    return client


def seed(client: KazooClient, paths: ZkPaths, count: int) -> set[str]:
    """N members, both entries each, with pipelined creates (persistent: the seeder is not an agent)."""
    client.ensure_path(paths.ip_map)
    ensure_buckets(client, paths)
    names = {format_party_entry(uuid.uuid4().hex, member(n)) for n in range(count)}
    pending = []
    for name in names:
        identifier = name.split("-", 1)[1]
        pending.append(client.create_async(f"{paths.ip_map}/{name}"))
        pending.append(client.create_async(f"{paths.members}/{bucket_of(identifier)}/{name}"))
    for result in pending:
        result.get(timeout=60)
    return names


class Watcher:
    """One session that keeps a party view current, as the agent's sync loop does."""

    def __init__(self, client: KazooClient, paths: ZkPaths, original: bool) -> None:
        self.client, self.paths, self.original = client, paths, original
        self.names: set[str] = set()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self.view = None if original else MirrorView(client, paths, self._changed.set,
                                                     legacy_poll_seconds=3600)
        self.refresh()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        if self.view is None:
            children = self.client.get_children(self.paths.ip_map, watch=lambda _e: self._changed.set())
            self.names = set(children)
        else:
            self.names = set(self.view.snapshot().names)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._changed.wait(0.2):
                self._changed.clear()
                try:
                    self.refresh()
                except (KazooException, KazooTimeoutError) as exc:  # slow under load: retry, as agents do
                    print(f"refresh failed ({type(exc).__name__}); retrying", file=sys.stderr)
                    self._changed.set()
                    time.sleep(0.5)

    def close(self) -> None:
        self._stop.set()
        if self.view is not None:
            self.view.close()
        self._thread.join(5)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the change never showed")
        time.sleep(0.002)


def measure(watchers: list[Watcher], change: Callable[[], str], joined: bool) -> int:
    """Bytes all ``watchers`` received from one change until each of them shows it."""
    before = sum(bytes_received(w.client) for w in watchers)
    name = change()
    wait_until(lambda: all((name in w.names) == joined for w in watchers))
    time.sleep(0.05)  # nothing more is coming; let a straggling packet land in the count
    return sum(bytes_received(w.client) for w in watchers) - before


def run_size(server: ZooKeeperServer, count: int, sessions: int, changes: int) -> dict[str, object]:
    hosts = server.hosts
    paths = ZkPaths.under(f"/fanout-{uuid.uuid4().hex[:8]}")
    seeder, writer = connect(hosts), connect(hosts)
    seed(seeder, paths, count)
    probe = Watcher(connect(hosts), paths, original=False)
    baseline = Watcher(connect(hosts), paths, original=True)
    with ThreadPoolExecutor(4) as pool:  # cold starts of 100 sessions in one process: not all at once
        light = list(pool.map(lambda _: Watcher(connect(hosts), paths, original=False), range(sessions)))
    mntr = four_letter_word(server.host, server.port, "mntr", timeout=5)
    result: dict[str, list[int]] = {k: [] for k in ("join", "leave", "join_orig", "leave_orig",
                                                      "join_all", "leave_all")}
    for n in range(changes):
        party = MirroredParty(writer, paths, member(count + n))

        def join(p: MirroredParty = party) -> str:
            p.join()
            return p.node_name

        def leave(p: MirroredParty = party) -> str:
            p.leave()
            return p.node_name

        result["join"].append(measure([probe], join, True))
        result["leave"].append(measure([probe], leave, False))
        result["join_orig"].append(measure([baseline], join, True))
        result["leave_orig"].append(measure([baseline], leave, False))
        result["join_all"].append(measure(light, join, True))
        result["leave_all"].append(measure(light, leave, False))
    ip_map = parse_party(seeder.get_children(paths.ip_map))
    mirror = {name for bucket in seeder.get_children(paths.members)
              for name in seeder.get_children(f"{paths.members}/{bucket}")}
    ip_map_names = {e.node_name for e in ip_map.entries}
    correct = not ip_map.malformed and len(ip_map_names) == count and ip_map_names == mirror == probe.names
    for watcher in (probe, baseline, *light):
        watcher.close()
        watcher.client.stop()
        watcher.client.close()
    for client in (seeder, writer):
        client.stop()
        client.close()
    stats = dict(line.split("\t", 1) for line in mntr.splitlines() if "\t" in line)
    return {
        "members": count,
        "join_bytes_per_agent": max(result["join"]),
        "leave_bytes_per_agent": max(result["leave"]),
        "join_bytes_per_agent_ip_map_reread": max(result["join_orig"]),
        "leave_bytes_per_agent_ip_map_reread": max(result["leave_orig"]),
        "sessions": sessions,
        "join_bytes_all_sessions": max(result["join_all"]),
        "leave_bytes_all_sessions": max(result["leave_all"]),
        "join_bytes_all_sessions_median": int(statistics.median(result["join_all"])),
        "leave_bytes_all_sessions_median": int(statistics.median(result["leave_all"])),
        "full_ip_map_reads_all_sessions": sum(w.view.full_ip_map_reads for w in light if w.view),
        "zk_watch_count": int(stats.get("zk_watch_count", -1)),
        "zk_znode_count": int(stats.get("zk_znode_count", -1)),
        "zk_approximate_data_size": int(stats.get("zk_approximate_data_size", -1)),
        "zk_rss_mb": rss_mb(server.pid),
        "ip_map_complete_and_correct": correct,
    }


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--sessions", type=int, default=100, help="light sessions running MirrorView")
    parser.add_argument("--changes", type=int, default=5, help="joins (and as many leaves) per size")
    args = parser.parse_args()
    sizes = []
    with ZooKeeperServer(heap_mb=1024) as server:
        for count in args.members:
            sizes.append(run_size(server, count, args.sessions, args.changes))
            print(json.dumps(sizes[-1]), file=sys.stderr)
    goals_met = all(s["join_bytes_per_agent"] <= GOAL_BYTES and s["leave_bytes_per_agent"] <= GOAL_BYTES
                    and s["ip_map_complete_and_correct"] for s in sizes)
    print(json.dumps({"sizes": sizes, "goal_bytes_per_change_per_agent": GOAL_BYTES,
                      "goals_met": goals_met}))


if __name__ == "__main__":
    main()
