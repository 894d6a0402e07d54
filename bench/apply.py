"""Apply N members with each firewall backend and with the raw tools, in a throw-away namespace.

    python bench/apply.py --members 10000 [--repeat 5] [--backends restore,iptc,restore-legacy,nft]

Creates a network namespace, re-runs itself inside it (``ip netns exec``, as the agent runs), and
deletes it afterwards. For each backend it measures, as medians of ``--repeat`` runs:

* full sync (everything already installed, rewritten: the periodic resync / repair) and the first
  install on a clean kernel;
* a one-add-one-remove delta;
* a drift check (read everything back, normalise, compare);

and the same operations done by the raw tools on the identical text in the same run
(``iptables-{nft,legacy}-restore --noflush`` and ``ipset -exist restore``; for the drift check,
``iptables-save`` + ``ipset save`` alone; for ``nft``, ``nft -f`` of the identical script and
``nft -j list table``), with the ratios. One JSON line per backend, the last lines printed; the nft
line's ``goals_met`` also holds issue 16's "faster than restore" for full sync and delta, from the
restore line of the same run. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from neti_core.config import NetiConfig
from neti_core.firewall.base import BackendBase
from neti_core.firewall.nft_render import render_nft_delta, render_nft_full
from neti_core.lab.netns import temporary_namespace
from neti_core.members import Member, Side
from neti_core.render import (
    render_ipset_delta,
    render_ipset_full,
    render_iptables_delta,
    render_iptables_full,
)
from neti_core.rules import RuleSet, build_ruleset, diff

GOALS = {"full_ratio": 1.3, "delta_ratio": 1.5, "drift_ms": 100.0}


def members(count: int, offset: int = 0) -> list[Member]:
    """``count`` members, alternating sides, with distinct addresses and overlay IPs."""
    out = []
    for i in range(offset, offset + count):
        side = Side.EC2 if i % 2 else Side.VPC
        out.append(Member(public=IPv4Address(0x36000000 + i), private=IPv4Address(0x0A000000 + i),
                          overlay=IPv4Address(0xC0A80000 + 1 + i % 65000) if i < 65000
                          else IPv4Address(0xC0A80000 + 1), side=side))
    return out


def backend_for(kind: str) -> BackendBase:
    if kind == "nft":
        from neti_core.firewall.nft_backend import NftBackend

        return NftBackend("ec2_whitelist")
    if kind == "iptc":
        from neti_core.firewall.iptc_backend import IptcBackend

        return IptcBackend("ec2_whitelist")
    from neti_core.firewall.restore import RestoreBackend

    return RestoreBackend("ec2_whitelist", flavour="legacy" if kind == "restore-legacy" else "nft")


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def run(argv: list[str], text: str | None = None) -> None:
    result = subprocess.run(argv, input=text, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {result.stderr}")


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def raw_tools(kind: str, flavour: str, rs0: RuleSet, rs1: RuleSet) -> RawTools:
    """The raw tools' inputs for ``kind``: the identical text the backend feeds the kernel."""
    if kind == "nft":
        script = render_nft_full(rs0)
        deltas = [render_nft_delta(c) or "" for c in (diff(rs0, rs1), diff(rs1, rs0))]
        return RawTools(lambda text: run(["nft", "-f", "-"], text), script, script, deltas,
                        lambda: run(["nft", "-j", "list", "table", "ip", "neti"]))
    restore, save = f"iptables-{flavour}-restore", f"iptables-{flavour}-save"
    jumps = {(j.table, j.chain): [j.rule.spec()] for j in rs0.jumps}
    ipset_full = render_ipset_full(rs0)

    def apply(pair: tuple[str, str]) -> None:
        run(["ipset", "-exist", "restore"], pair[0])
        run([restore, "--noflush", "-w", "10"], pair[1])

    changes = [(render_ipset_delta(c.new.ipset_name, c.ipset_add, c.ipset_del), render_iptables_delta(c))
               for c in (diff(rs0, rs1), diff(rs1, rs0))]
    return RawTools(apply, (ipset_full, render_iptables_full(rs0)),
                    (ipset_full, render_iptables_full(rs0, jumps)), changes,
                    lambda: (run([save]), run(["ipset", "save"])))


def bench_backend(kind: str, rs0: RuleSet, rs1: RuleSet, repeat: int) -> dict[str, object]:
    backend = backend_for(kind)
    raw = raw_tools(kind, getattr(backend, "flavour", "nft"), rs0, rs1)

    first, full, delta, drift = [], [], [], []
    raw_first, raw_full, raw_delta, raw_read = [], [], [], []
    # Backend and raw runs alternate inside each round, so both see the same machine load.
    for _ in range(repeat):
        backend.flush()
        first.append(timed(lambda: backend.apply(rs0, full=True)))
        full.append(timed(lambda: backend.apply(rs0, full=True)))
        for target in (rs1, rs0):
            delta.append(timed(lambda t=target: backend.apply(t)))
        drift.append(timed(lambda: backend.drift(rs0)))
        found = backend.drift(rs0)
        assert not found, f"{kind}: drift after apply:\n{found}"
        backend.flush()
        raw_first.append(timed(lambda: raw.apply(raw.first)))
        raw_full.append(timed(lambda: raw.apply(raw.full)))
        for change in raw.deltas:
            raw_delta.append(timed(lambda c=change: raw.apply(c)))
        raw_read.append(timed(raw.read))
        backend.forget()
    backend.flush()
    result: dict[str, object] = {
        "backend": kind, "describe": backend.describe(), "members": len(rs0.members),
        "dnat_rules": len(rs0.dnat), "repeat": repeat,
        "full_sync_ms": median(full), "raw_full_sync_ms": median(raw_full),
        "full_ratio": round(median(full) / median(raw_full), 3),
        "first_install_ms": median(first), "raw_first_install_ms": median(raw_first),
        "first_ratio": round(median(first) / median(raw_first), 3),
        "delta_ms": median(delta), "raw_delta_ms": median(raw_delta),
        "delta_ratio": round(median(delta) / median(raw_delta), 3),
        "drift_ms": median(drift), "raw_read_ms": median(raw_read),
        "drift_ratio": round(median(drift) / median(raw_read), 3),
    }
    result["goals_met"] = {
        "full": result["full_ratio"] <= GOALS["full_ratio"],
        "delta": result["delta_ratio"] <= GOALS["delta_ratio"],
        "drift": result["drift_ms"] <= GOALS["drift_ms"],
    }
    return result


@dataclass(frozen=True)
class RawTools:
    """How the raw tools apply a text, the texts (first install, full, the two deltas) and a read."""

    apply: Callable[[Any], None]
    first: Any
    full: Any
    deltas: list[Any]
    read: Callable[[], object]


def against_restore(nft: dict[str, Any], restore: dict[str, Any] | None) -> None:
    """Issue 16: the nft backend's full sync and delta beat the restore backend's, same run."""
    if restore is None:
        return
    nft["restore_full_sync_ms"], nft["restore_delta_ms"] = restore["full_sync_ms"], restore["delta_ms"]
    nft["goals_met"] |= {"full_faster_than_restore": nft["full_sync_ms"] < restore["full_sync_ms"],
                         "delta_faster_than_restore": nft["delta_ms"] < restore["delta_ms"]}


def inner(args: argparse.Namespace) -> None:
    fleet = members(args.members)
    config = NetiConfig()
    rs0 = build_ruleset(Side.EC2, fleet, config, True)
    # One member leaves, a new one joins: the smallest real change.
    rs1 = build_ruleset(Side.EC2, [*fleet[1:], *members(1, offset=args.members + 7)], config, True)
    assert len(diff(rs0, rs1).ipset_add) == 1 and len(diff(rs0, rs1).dnat_del) == 1
    build_ms = timed(lambda: build_ruleset(Side.EC2, fleet, config, True).hash)
    print(f"# {args.members} members: building the RuleSet and its hash takes {build_ms:.1f} ms",
          file=sys.stderr)
    kinds = args.backends.split(",")
    results: dict[str, dict[str, Any]] = {}
    for kind in [k for k in kinds if k != "nft"] + [k for k in kinds if k == "nft"]:
        results[kind] = bench_backend(kind, rs0, rs1, args.repeat)
        if kind == "nft":
            against_restore(results[kind], results.get("restore"))
        print(json.dumps(results[kind]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="restore,iptc,restore-legacy,nft")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/apply.py needs root (it creates a network namespace)")
    with temporary_namespace("nbench") as ns:
        command = ["ip", "netns", "exec", ns.name, sys.executable, str(Path(__file__).resolve()),
                   "--inner", "--members", str(args.members), "--repeat", str(args.repeat),
                   "--backends", args.backends]
        code = subprocess.run(command).returncode
    sys.exit(code)


if __name__ == "__main__":
    main()
