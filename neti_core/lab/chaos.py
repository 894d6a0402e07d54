"""``neti lab chaos --minutes N --seed S``: run the schedule on a running lab, check as it goes.

Faults go through the lab daemon (kill -9, cut/heal, break, churn) and, for reject_all, through
the operator path (FleetControl), as an on-call engineer would flip it. Prints progress every
10 s and a final JSON line; exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from typing import Any

from kazoo.client import KazooClient

from neti_core.config import ZkPaths
from neti_core.lab.chaos_plan import ChaosPlan, Step, plan_chaos
from neti_core.lab.chaos_probe import (
    BREAK_SETTLE_SECONDS,
    SETTLE_SECONDS,
    Checker,
    agent_resources,
    resource_report,
)
from neti_core.lab.rpc import request
from neti_core.lab.state import LabState, read_state
from neti_core.maxchange import read_guard_limit
from neti_core.operator_actions import FleetControl
from neti_core.schema import decode_maxchange

RECOVERY_BOUND_SECONDS = 120.0  # after the schedule, every agent back in sync within this
LAB_GRACE_SECONDS, LAB_SESSION_SECONDS = 30.0, 10.0


def run_chaos(args: argparse.Namespace, state: LabState) -> int:
    from neti_core.lab.cli import fleet_sync, lab_client

    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    paths = ZkPaths.under(state.zk_prefix)
    # The operator's credentials (a secured lab): the reject_all flips go through the operator path.
    client: KazooClient = lab_client(state)
    client.start(timeout=30)
    agents = sorted(h["name"] for h in state.hosts if h["agent"])
    limit = read_guard_limit(client.get(paths.maxchange)[0] if client.exists(paths.maxchange)
                             else None, decode_maxchange)[0].limit(len(agents))
    zk_members = len(state.zk_connect.split(","))
    plan = plan_chaos(args.seed, args.minutes, len(agents), every=args.every, guard_limit=limit,
                      soak=args.soak, zk_members=zk_members)
    resources_at_start = agent_resources(state.hosts)
    print(f"chaos: seed {args.seed}, {len(plan.steps)} steps over {plan.seconds:.0f} s on {len(agents)} "
          f"agents; faults {plan.faults_by_kind()}", flush=True)
    started = time.monotonic()
    checker = Checker(client, paths, lambda: (read_state(args.state_dir) or state).hosts, started,
                      grace_seconds=LAB_GRACE_SECONDS, session_seconds=LAB_SESSION_SECONDS,
                      outsider=state.outsider_netns).start()
    runner = _Runner(args, client, paths, checker)
    done: Counter[str] = Counter()
    last_progress = started
    try:
        for step in plan.steps:
            while time.monotonic() - started < step.at:
                time.sleep(0.2)
            runner.perform(step)
            done[step.action] += 1
            if time.monotonic() - last_progress >= 10:
                last_progress = time.monotonic()
                _progress(plan, started, done, checker)
        runner.undo_all()
        recovery = _recover(state, args, fleet_sync)
    finally:
        checker.stop()
        client.stop()
        client.close()
    end_state = read_state(args.state_dir) or state
    return _report(plan, done, checker, recovery,
                   resource_report(resources_at_start, agent_resources(end_state.hosts)))


def _progress(plan: ChaosPlan, started: float, done: Counter[str], checker: Checker) -> None:
    faults = sum(n for a, n in done.items() if a in plan.faults_by_kind())
    print(f"chaos: {time.monotonic() - started:4.0f}/{plan.seconds:.0f} s, {faults} faults, "
          f"{checker.probes} probes, {len(checker.violations)} violations", flush=True)


def _recover(state: LabState, args: argparse.Namespace, fleet_sync: Any) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < RECOVERY_BOUND_SECONDS:
        try:
            in_sync, agents, _ = fleet_sync(read_state(args.state_dir) or state)
            if in_sync == agents:
                return round(time.monotonic() - began, 1)
        except Exception:  # ZooKeeper still settling
            pass
        time.sleep(0.5)
    return None


def _report(plan: ChaosPlan, done: Counter[str], checker: Checker, recovery: float | None,
            resources: dict[str, Any]) -> int:
    violations = [v.record() for v in checker.violations]
    if recovery is None:
        detail = f"not every agent in sync {RECOVERY_BOUND_SECONDS:.0f} s after the schedule"
        violations.append({"at_s": None, "invariant": "recovers", "detail": detail})
    faults = {k: done[k] for k in plan.faults_by_kind() if done[k]}
    print(json.dumps({"seed": plan.seed, "seconds": plan.seconds, "faults": sum(faults.values()),
                      "faults_by_kind": faults, "probes": checker.probes,
                      "outsider_probes": checker.outsider_probes, "violations": len(violations),
                      "violation_details": violations[:50], "recovery_seconds": recovery,
                      "recovery_bound_seconds": RECOVERY_BOUND_SECONDS, "agents": resources}), flush=True)
    return 1 if violations else 0


class _Runner:
    def __init__(self, args: argparse.Namespace, client: KazooClient, paths: ZkPaths,
                 checker: Checker) -> None:
        self.args, self.checker = args, checker
        self.control = FleetControl(client, paths, "lab-chaos")
        self.cut: set[str] = set()
        self.rejected: set[str] = set()
        self.fleet_rejected = False

    def _hosts(self) -> list[dict[str, Any]]:
        state = read_state(self.args.state_dir)
        return sorted((h for h in (state.hosts if state else []) if h["agent"]), key=lambda h: h["name"])

    def _lab(self, command: str, **extra: Any) -> None:
        reply = request(self.args.state_dir / "control.sock", command, timeout=120, **extra)
        if not reply.get("ok"):
            print(f"chaos: {command} {extra}: {reply.get('error')}", flush=True)

    def perform(self, step: Step) -> None:
        hosts = self._hosts()
        targets = [hosts[s % len(hosts)] for s in step.slots] if hosts else []
        names = [h["name"] for h in targets]
        known = self.checker.known
        settle = time.monotonic() + SETTLE_SECONDS
        with self.checker.lock:
            if step.action in ("cut", "mass-cut"):
                known.cut |= set(names)
            for name in names if step.action in ("kill-agent", "break", "heal", "mass-heal") else ():
                known.unsettled[name] = settle if step.action != "break" else \
                    time.monotonic() + BREAK_SETTLE_SECONDS
            if step.action == "kill-agent":
                for name in names:
                    known.kills[name] = known.kills.get(name, 0) + 1
            if step.action == "mass-cut":
                known.mass_cut_since, known.mass_cut_members = time.monotonic(), len(hosts)
            if step.action == "mass-heal":
                known.mass_cut_since = known.mass_cut_members = None
        ids = [h["instance_id"] for h in targets]
        with self.checker.lock:  # reject_all wanted off: from before the write (never expected on)
            if step.action == "reject-host-off":
                for instance_id in ids:
                    known.rejected_since.pop(instance_id, None)
                    known.reject_off_at[instance_id] = time.monotonic()
            if step.action == "reject-fleet-off":
                known.fleet_rejected_since = None
                known.reject_off_at["*"] = time.monotonic()
        self._act(step.action, names, targets)
        with self.checker.lock:  # ... wanted on: from after it
            if step.action == "reject-host":
                known.rejected_since.update(dict.fromkeys(ids, time.monotonic()))
            if step.action == "reject-fleet":
                known.fleet_rejected_since = time.monotonic()
            if step.action in ("heal", "mass-heal"):
                known.healed_at.update(dict.fromkeys(names, time.monotonic()))
                known.cut -= set(names)
            if step.action == "churn":  # the new host settles; the old one's name is gone
                for host in self._hosts():
                    known.unsettled.setdefault(host["name"], settle)

    def _act(self, action: str, names: list[str], targets: list[dict[str, Any]]) -> None:
        ids = [h["instance_id"] for h in targets]
        if action in ("cut", "mass-cut", "heal", "mass-heal"):
            for name in names:
                self._lab("heal" if "heal" in action else "cut", host=name)
            self.cut = self.cut - set(names) if "heal" in action else self.cut | set(names)
        elif action == "kill-agent":
            self._lab("kill", host=names[0])
        elif action == "break":
            self._lab("break", host=names[0])
        elif action == "churn":
            self._lab("churn", count=1, rate=10, hosts=names)
        elif action in ("zk-kill-leader", "zk-kill-follower", "zk-start"):
            self._lab(action)  # zk-start: every member not running (the one killed) comes back
        elif action in ("reject-host", "reject-host-off"):
            self.control.set_host_reject_all(ids, True if action == "reject-host" else None, why="lab chaos")
            self.rejected = self.rejected | set(ids) if action == "reject-host" else self.rejected - set(ids)
        elif action in ("reject-fleet", "reject-fleet-off"):
            self.fleet_rejected = action == "reject-fleet"
            self.control.set_fleet_reject_all(True if self.fleet_rejected else None, why="lab chaos")

    def undo_all(self) -> None:
        """Whatever the schedule left (it should leave nothing): heal, clear."""
        for name in sorted(self.cut):
            self._lab("heal", host=name)
        if self.rejected:
            self.control.set_host_reject_all(sorted(self.rejected), None, why="lab chaos: end")
        if self.fleet_rejected:
            self.control.set_fleet_reject_all(None, why="lab chaos: end")
