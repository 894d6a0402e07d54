"""The console at fleet size: first paint, change-to-screen latency and memory, headless.

    python bench/console.py --hosts 10000 [--changes 9] [--storm] [--watch-strategies] [--zk HOST:PORT]

Starts its own ZooKeeper unless --zk is given, seeds it (in a child process, so the seeding does
not count in the console's memory) with N members as the agents would leave them: both overlay
maps, the ``ip-map`` party with its mirror twins (docs/membership.md) and one ``status/<id>`` per
host. Then it runs the real app headless
(Textual's ``run_test``) and measures:

* ``first_rows_s``: from launching the console's process (when an operator starts the clock: the
  interpreter, the imports, the app, the ZooKeeper session all count) to the first rows on screen;
  ``full_table_s``: to every host in the table and painted (``app_constructed_s`` of it is start-up
  to the app object, ``read_s`` the ZooKeeper read, ``paint_after_read_s`` model, rows, table, paint);
* ``change_visible_ms``: a status rewritten in ZooKeeper to its row repainted, median of
  ``--changes`` (the row is scrolled into view first, so it really is on screen);
* ``storm_s`` (``--storm``): every status rewritten at once from another process, as after a
  membership change, to the last row repainted (``storm_write_s`` of it is the writing);
* ``rss_mb``: the console process's resident memory after all that (seeding runs elsewhere).

``--watch-strategies`` also times the ways of watching 10,000 status nodes (see
``neti_core/fleet/watcher.py``). The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.client import KazooClient

from neti_core.config import ZkPaths, parse_config
from neti_core.lab.zkserver import ZooKeeperServer
from neti_core.members import Member, Side, format_party_entry, parse_ipv4
from neti_core.party.mirror import bucket_of, ensure_buckets
from neti_core.schema import AgentStatus
from neti_core.zkbulk import arm_data_watches, last_zxid, read_many

NOW = time.time()


def host(n: int) -> tuple[Member, AgentStatus]:
    octets = f"{n // 250 % 250}.{n % 250 + 1}"
    side = Side.VPC if n % 5 == 0 else Side.EC2
    member = Member(parse_ipv4(f"54.{n // 62500}.{octets}"), parse_ipv4(f"10.{n // 62500 + 1}.{octets}"),
                    parse_ipv4(f"172.{16 + n // 62500}.{octets}"), side, f"i-{n:017x}")
    status = AgentStatus(
        instance_id=f"i-{n:017x}", overlay_ip=str(member.overlay), side=side.value, version="1.4.2",
        reject_all=False, reject_all_source="config", membership_version=0, members=0,
        ruleset_hash="5f1e9c0a2b7d", applied_at=NOW - random.uniform(10, 3600), apply_ms=41.7,
        public_ip=str(member.public), private_ip=str(member.private), backend="iptc")
    return member, status


def seed(hosts: str, prefix: str, count: int) -> None:
    """Write the tree with pipelined creates (persistent nodes: they outlive this process)."""
    client = KazooClient(hosts=hosts, timeout=30)
    client.start(timeout=30)
    paths = ZkPaths.under(prefix)
    for path in (paths.ip_to_id, paths.id_to_ip, paths.ip_map, paths.status):
        client.ensure_path(path)
    ensure_buckets(client, paths)
    members = [host(n) for n in range(1, count + 1)]
    pending = []
    for member, _ in members:
        pending.append(client.create_async(f"{paths.ip_to_id}/{member.overlay}", member.instance_id.encode()))
        overlay = str(member.overlay).encode()
        pending.append(client.create_async(f"{paths.id_to_ip}/{member.instance_id}", overlay))
        entry = format_party_entry(uuid.uuid4().hex, member)  # and its mirror twin, as agents write them
        pending.append(client.create_async(f"{paths.ip_map}/{entry}"))
        pending.append(client.create_async(f"{paths.members}/{bucket_of(member.identifier())}/{entry}"))
    for result in pending:
        result.get()
    cversion = client.exists(paths.ip_map).cversion
    pending = [client.create_async(f"{paths.status}/{s.instance_id}", _at(s, cversion, count).to_json())
               for _, s in members]
    for result in pending:
        result.get()
    client.stop()
    client.close()


def _at(status: AgentStatus, cversion: int, members: int) -> AgentStatus:
    from dataclasses import replace

    return replace(status, membership_version=cversion, members=members)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def measure_app(hosts: str, prefix: str, count: int, changes: int, *, storm: bool,
                      started_wall: float) -> dict[str, object]:
    """Runs in a process of its own, started at ``started_wall`` (``time.time()`` in the parent just
    before it launched this one): the clock includes the interpreter, the imports and the app's
    construction, as an operator's does from pressing Enter on ``neti-console``."""
    began = time.perf_counter() - (time.time() - started_wall)  # the launch, on this clock
    from neti_tui.app import NetiConsoleApp
    from screens.fleet import FleetScreen

    config = parse_config({"zk_prefix": prefix, "zk_hosts": {"vpc": [hosts]}}, "bench")
    app = NetiConsoleApp(config, operator="bench", ec2=False)
    result: dict[str, object] = {"hosts": count, "app_constructed_s": round(time.perf_counter() - began, 3)}
    paths = ZkPaths.under(prefix)
    async with app.run_test(headless=True, size=(200, 50)) as pilot:
        screen: FleetScreen | None = None
        first_rows: float | None = None
        first_seq: int | None = None
        while True:
            if first_rows is None and isinstance(app.screen, FleetScreen) and app.screen.table.row_count:
                first_seq = first_seq or app.fleet.seq  # rows are in the table: now until painted
                if app.screen.painted[0] >= first_seq:
                    first_rows = app.screen.painted[1]
            if isinstance(app.screen, FleetScreen) and app.screen.table.row_count == count \
                    and app.fleet.zk.loaded:  # every status in, not just every row
                screen = app.screen
                if screen.painted[0] >= app.fleet.seq:
                    break
            await asyncio.sleep(0.005)
        painted = screen.painted[1]
        loaded_at = app.first_loaded_at or painted
        result["first_rows_s"] = round((first_rows or painted) - began, 3)
        result["full_table_s"] = round(painted - began, 3)
        result["read_s"] = round(app.fleet.zk.load_seconds or 0.0, 3)
        result["paint_after_read_s"] = round(painted - loaded_at, 3)
        result["rss_after_load_mb"] = rss_mb()
        writer = KazooClient(hosts=hosts, timeout=30)  # the bench's own, for the changes below
        writer.start(timeout=30)

        latencies = []
        table = screen.table
        keys = random.sample(sorted(app.fleet.rows), changes)
        for k, key in enumerate(keys):
            table.move_cursor(row=table.get_row_index(key), animate=False)
            await pilot.pause(0.2)
            status = app.fleet.rows[key].status
            assert status is not None
            marker = f"bench-{k}"
            data = _with_version(status, marker).to_json()
            start = time.perf_counter()
            await asyncio.to_thread(writer.set, f"{paths.status}/{key}", data)
            while True:
                row = app.fleet.rows.get(key)
                if row is not None and row.version == marker and screen.painted[0] >= app.fleet.seq \
                        and _cell(table, key) == marker:
                    break
                await asyncio.sleep(0.001)
            latencies.append((screen.painted[1] - start) * 1000)
            await pilot.pause(0.1)
        result["change_visible_ms"] = round(statistics.median(latencies), 1)
        result["change_visible_ms_max"] = round(max(latencies), 1)
        result["change_visible_ms_all"] = [round(x) for x in latencies]

        if storm:
            marker = "storm"
            start = time.perf_counter()
            # Written from another process, as 10,000 agents would: not competing for this one's GIL.
            await asyncio.to_thread(subprocess.run, [sys.executable, __file__, "--rewrite-only", prefix,
                                                     "--zk", hosts, "--hosts", str(count)], check=True)
            written = time.perf_counter()
            while True:
                if all(row.version == marker for row in app.fleet.rows.values()) \
                        and screen.painted[0] >= app.fleet.seq:
                    break
                await asyncio.sleep(0.01)
            result["storm_s"] = round(screen.painted[1] - start, 3)
            result["storm_write_s"] = round(written - start, 3)
        result["rss_mb"] = rss_mb()
        result["rss_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    writer.stop()
    writer.close()
    return result


def rewrite(hosts: str, prefix: str, count: int) -> None:
    """Every agent publishes a new status (version "storm") at once, pipelined."""
    client = KazooClient(hosts=hosts, timeout=30)
    client.start(timeout=30)
    paths = ZkPaths.under(prefix)
    version = client.exists(paths.ip_map).cversion
    pending = [client.set_async(f"{paths.status}/{status.instance_id}",
                                _with_version(_at(status, version, count), "storm").to_json())
               for _, status in (host(n) for n in range(1, count + 1))]
    for result in pending:
        result.get()
    client.stop()
    client.close()


def _with_version(status: AgentStatus | None, version: str) -> AgentStatus:
    from dataclasses import replace

    assert status is not None
    return replace(status, version=version)


def _cell(table, key: str) -> str:
    value = table.get_cell(key, "version")
    return value.plain if hasattr(value, "plain") else str(value)


def measure_watch_strategies(hosts: str, prefix: str) -> dict[str, float]:
    """Seconds to read every status/ node: without watches, with one-shot watches riding on pipelined
    reads, with kazoo's DataWatch recipe (one synchronous read each), and as the console does it:
    multi-reads, then the watches armed in bulk (neti_core/zkbulk.py)."""
    paths = ZkPaths.under(prefix)
    results = {}
    for name in ("pipelined_no_watch", "pipelined_with_watch", "datawatch_recipe", "multi_read_set_watches"):
        client = KazooClient(hosts=hosts, timeout=30)
        client.start(timeout=30)
        began = time.perf_counter()
        children = client.get_children(paths.status)
        if name == "datawatch_recipe":
            for child in children:
                client.DataWatch(f"{paths.status}/{child}", lambda data, stat: None)
        elif name == "multi_read_set_watches":
            since = last_zxid(client)
            names = [f"{paths.status}/{child}" for child in children]
            read_many(client, names)
            arm_data_watches(client, names, lambda event: None, since)
        else:
            watch = (lambda event: None) if name == "pipelined_with_watch" else None
            pending = [client.get_async(f"{paths.status}/{child}", watch=watch) for child in children]
            for result in pending:
                result.get()
        results[f"{name}_s"] = round(time.perf_counter() - began, 3)
        client.stop()
        client.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=9)
    parser.add_argument("--storm", action="store_true", help="also rewrite every status at once")
    parser.add_argument("--watch-strategies", action="store_true", help="also time ways of watching")
    parser.add_argument("--zk", help="an existing ZooKeeper (default: start one)")
    parser.add_argument("--seed-only", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--rewrite-only", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--measure-only", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(asyncio.run(measure_app(args.zk, args.measure_only, args.hosts, args.changes,
                                                 storm=args.storm, started_wall=args.started))))
        return 0
    if args.seed_only:
        seed(args.zk, args.seed_only, args.hosts)
        return 0
    if args.rewrite_only:
        rewrite(args.zk, args.rewrite_only, args.hosts)
        return 0
    server = None
    hosts = args.zk
    if hosts is None:
        server = ZooKeeperServer(heap_mb=1024).start()
        hosts = server.hosts
    try:
        prefix = f"/bench-console-{uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--seed-only", prefix, "--zk", hosts, "--hosts",
                        str(args.hosts)], check=True)
        print(f"seeded {args.hosts} hosts in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        # The console runs in a fresh process, launched now: the clock starts as an operator's does.
        measured = subprocess.run([sys.executable, __file__, "--measure-only", prefix, "--zk", hosts,
                                   "--hosts", str(args.hosts), "--changes", str(args.changes),
                                   *(["--storm"] if args.storm else []), "--started", repr(time.time())],
                                  check=True, stdout=subprocess.PIPE, text=True)
        result = json.loads(measured.stdout.strip().splitlines()[-1])
        if args.watch_strategies:
            result["watch_strategies"] = measure_watch_strategies(hosts, prefix)
        # The goals, from launching the console: first rows ≤ 1.5 s, whole fleet ≤ 3 s,
        # a change ≤ 250 ms to the screen, RSS ≤ 250 MB.
        result["goals_met"] = bool(result["first_rows_s"] <= 1.5  # type: ignore[operator]
                                   and result["full_table_s"] <= 3  # type: ignore[operator]
                                   and result["change_visible_ms"] <= 250  # type: ignore[operator]
                                   and result["rss_mb"] <= 250)  # type: ignore[operator]
    finally:
        if server is not None:
            server.cleanup()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
