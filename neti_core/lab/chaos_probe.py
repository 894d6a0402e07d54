"""The chaos checker: probes a running lab with real traffic and counts broken promises.

It knows what the schedule did (who is cut, killed, churned, held by the guard) so that it only
holds the fleet to what it promises: live members reach each other on overlay IPs except where a
fault makes that impossible; no two instances hold one overlay IP; an agent dies only when killed;
while more members are gone than the guard allows, no survivor drops any of them; an outsider
(inside the ssh whitelist) never reaches a host whose reject_all is on, except on port 22, which it
always reaches; a reject_all the operator turned on is in force on every host that could hear it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from neti_core.config import ZkPaths
from neti_core.members import parse_party
from neti_core.schema import AgentStatus

ECHO_PORT = 8080
SSH_PORT = 22  # no sshd in the namespaces: the echo listens here too, to test the ssh failsafe
# A reject_all flip is in force (or reported rolled back) within the dead-man's confirm window.
REJECT_SETTLE_SECONDS = 30.0
SETTLE_SECONDS = 20.0   # after a kill or launch: the host converges before it is held to it
# After `break`, repair comes at the next full check: within the lab's resync_seconds (30), plus margin.
BREAK_SETTLE_SECONDS = 40.0
_ECHO = ("import socket,threading\ndef serve(port):\n"
         " s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         " s.bind(('0.0.0.0',port));s.listen(64)\n"
         " while True:\n  c,a=s.accept();c.sendall(a[0].encode());c.close()\n"
         f"threading.Thread(target=serve,args=({SSH_PORT},),daemon=True).start();serve({ECHO_PORT})")
# A probe that must connect waits out TCP's SYN retries (1 s, 3 s): one packet lost on a loaded
# machine is no broken promise, a DROP rule fails them all. One that must not connect needs less.
REACH_TIMEOUT, BLOCKED_TIMEOUT = 5.0, 2.0
_CONNECT = ("import socket,sys\ntry:\n s=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
            "timeout=float(sys.argv[3]))\n"
            " print(s.recv(64).decode())\nexcept OSError as e:\n print('FAIL',type(e).__name__)")


@dataclass
class Violation:
    at: float
    invariant: str
    detail: str

    def record(self) -> dict[str, Any]:
        return {"at_s": round(self.at, 1), "invariant": self.invariant, "detail": self.detail}


@dataclass
class Knowledge:
    """What the schedule has done, as the checker needs to know it."""

    cut: set[str] = field(default_factory=set)
    unsettled: dict[str, float] = field(default_factory=dict)  # host -> monotonic time it settles
    kills: dict[str, int] = field(default_factory=dict)
    mass_cut_since: float | None = None
    mass_cut_members: int | None = None
    rejected_since: dict[str, float] = field(default_factory=dict)  # instance id -> when turned on
    fleet_rejected_since: float | None = None
    healed_at: dict[str, float] = field(default_factory=dict)  # host -> last reconnection
    reject_off_at: dict[str, float] = field(default_factory=dict)  # instance id (or "*": fleet)

    def reject_just_lifted(self, instance_id: str, now: float) -> bool:
        """reject_all turned off for this host moments ago: its status may still say on while the
        kernel already lets the outsider in (the agent applies, then publishes)."""
        lifted = max(self.reject_off_at.get(instance_id, 0), self.reject_off_at.get("*", 0))
        return now - lifted < SETTLE_SECONDS

    def reject_wanted_since(self, instance_id: str) -> float | None:
        """Since when the operator wants reject_all on for this host (None: not wanted)."""
        wanted = (self.rejected_since.get(instance_id), self.fleet_rejected_since)
        times = [t for t in wanted if t is not None]
        return min(times) if times else None


class Checker:
    def __init__(self, client: KazooClient, paths: ZkPaths, read_hosts: Any, started: float, *,
                 grace_seconds: float, session_seconds: float, outsider: str | None = None) -> None:
        self.client, self.paths, self.read_hosts = client, paths, read_hosts
        self.outsider = outsider  # the outsider's namespace (None: no outsider probes)
        self.outsider_probes = 0
        self._seen_at: dict[str, float] = {}
        self.started = started
        self.hold_after = grace_seconds + session_seconds + 5
        self.known = Knowledge()
        self.lock = threading.Lock()
        self.violations: list[Violation] = []
        self.probes = 0
        self.restarts_seen: dict[str, int] = {}
        self._echoes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._rng = random.Random(0)
        self._seen: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="chaos-checker", daemon=True)

    def start(self) -> Checker:
        self.note_hosts(self.read_hosts(), time.monotonic(), baseline=True)
        self._thread.start()
        return self

    def note_hosts(self, hosts: list[dict[str, Any]], now: float, *, baseline: bool = False) -> None:
        """The hosts there when the checker starts are held to every promise at once (a drill begins
        on a fleet in sync); one that appears later (churn launched it) converges first. The baseline
        is taken in :meth:`start`, not by the first round: a host launched in between is new."""
        with self.lock:
            for host in hosts:
                if host["name"] not in self._seen:
                    self._seen.add(host["name"])
                    self._seen_at[host["name"]] = now
                    if not baseline:
                        self.known.unsettled.setdefault(host["name"], now + SETTLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for echo in self._echoes.values():
            echo.kill()
            echo.wait(5)

    def _violate(self, invariant: str, detail: str) -> None:
        violation = Violation(time.monotonic() - self.started, invariant, detail)
        with self.lock:
            self.violations.append(violation)
        print(f"chaos: VIOLATION at {violation.at:.1f} s: {invariant}: {detail}", flush=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.round()
            except Exception as exc:  # the lab under chaos: a failed read is retried next round
                print(f"chaos: checker round skipped: {exc}", file=sys.stderr, flush=True)

    def round(self) -> None:
        hosts = [h for h in self.read_hosts() if h["agent"] and h.get("netns")]
        now = time.monotonic()
        self.note_hosts(hosts, now)
        for host in hosts:
            self._ensure_echo(host)
        statuses = self._statuses(hosts)
        self._check_overlay_unique()
        self._check_deaths(hosts)
        self._check_guard(hosts, statuses, now)
        with self.lock:
            eligible = [h for h in hosts if h["name"] not in self.known.cut
                        and self.known.unsettled.get(h["name"], 0) < now and statuses.get(h["name"])]
        for _ in range(3 if len(eligible) >= 2 else 0):
            src, dst = self._rng.sample(eligible, 2)
            self._probe(src, dst, statuses[dst["name"]])
        if self.outsider is not None and eligible:
            self._probe_from_outside(self._rng.choice(eligible), statuses, now)

    def _statuses(self, hosts: list[dict[str, Any]]) -> dict[str, AgentStatus]:
        found = {}
        for host in hosts:
            status = self._status(host)
            if status is not None:
                found[host["name"]] = status
        return found

    def _ensure_echo(self, host: dict[str, Any]) -> None:
        echo = self._echoes.get(host["name"])
        if echo is None or echo.poll() is not None:
            with self.lock:  # not probed before its listener is up
                until = self.known.unsettled.get(host["name"], 0)
                self.known.unsettled[host["name"]] = max(until, time.monotonic() + 3)
            self._echoes[host["name"]] = subprocess.Popen(
                ["ip", "netns", "exec", host["netns"], sys.executable, "-c", _ECHO],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _probe(self, src: dict[str, Any], dst: dict[str, Any], status: AgentStatus) -> None:
        result = subprocess.run(["ip", "netns", "exec", src["netns"], sys.executable, "-c", _CONNECT,
                                 status.overlay_ip, str(ECHO_PORT), str(REACH_TIMEOUT)], capture_output=True,
                                text=True, timeout=30, check=False).stdout.strip()
        self.probes += 1
        if not result or result.startswith("FAIL"):
            with self.lock:  # a fault that began during the probe excuses it, as does termination
                excused = {src["name"], dst["name"]} & (self.known.cut | {
                    n for n, t in self.known.unsettled.items() if t > time.monotonic()})
            excused |= self._terminated(src["name"], dst["name"])
            if not excused:
                self._violate("members-reach", f"{src['name']} -> {dst['name']} overlay "
                              f"{status.overlay_ip}:{ECHO_PORT}: {result or 'no answer'}")

    def _connect(self, netns: str, address: str, port: int, timeout: float) -> bool:
        return self._answer(netns, address, port, timeout) is None

    @staticmethod
    def _answer(netns: str, address: str, port: int, timeout: float) -> str | None:
        """None if ``address:port`` answered from inside ``netns``; else why not."""
        result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _CONNECT, address,
                                 str(port), str(timeout)], capture_output=True, text=True, timeout=30,
                                check=False)
        answer = result.stdout.strip()
        if not answer:
            return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer"
        return answer if answer.startswith("FAIL") else None

    def _terminated(self, *names: str) -> set[str]:
        """Which of ``names`` were churned away while being probed (the lab drops a host from its
        state before its namespace); one read of the state, and only after a failed probe."""
        return set(names) - {h["name"] for h in self.read_hosts()}

    def _excused(self, name: str) -> bool:
        with self.lock:
            return name in self.known.cut or self.known.unsettled.get(name, 0) > time.monotonic()

    def _probe_from_outside(self, host: dict[str, Any], statuses: dict[str, AgentStatus], now: float) -> None:
        """The ssh failsafe always holds; reject_all, when the host says it is on, keeps the outsider
        out; and a reject_all wanted for long enough is on (or its rollback reported)."""
        assert self.outsider is not None
        name, public = host["name"], host["public"]
        self.outsider_probes += 1
        failed = self._answer(self.outsider, public, SSH_PORT, REACH_TIMEOUT)
        if failed is not None and not self._excused(name) and not self._terminated(name):
            self._violate("ssh-failsafe", f"outsider -> {name} {public}:{SSH_PORT}: {failed}")
        status = statuses[name]
        if status.reject_all and self._connect(self.outsider, public, ECHO_PORT, BLOCKED_TIMEOUT):
            still = self._status(host)  # a flip off in between is no violation
            with self.lock:
                lifted = self.known.reject_just_lifted(host["instance_id"], time.monotonic())
            if still is not None and still.reject_all and not lifted and not self._excused(name):
                self._violate("outsider-rejected", f"outsider reached {name} {public}:{ECHO_PORT} "
                              f"while it reports reject_all on ({status.reject_all_source})")
        with self.lock:
            since = self.known.reject_wanted_since(host["instance_id"])
            since = max(since, self.known.healed_at.get(name, 0), self._seen_at.get(name, 0)) \
                if since is not None else None
        if since is not None and now - since > REJECT_SETTLE_SECONDS and not status.reject_all \
                and status.deadman != "rolled_back" and not self._excused(name):
            self._violate("reject-applied", f"{name}: reject_all wanted on for {now - since:.0f} s, "
                          f"the agent reports it off ({status.reject_all_source})")

    def _status(self, host: dict[str, Any]) -> AgentStatus | None:
        path = f"{self.paths.status}/{host['instance_id']}"
        return AgentStatus.from_json(self.client.get(path)[0]) if self.client.exists(path) else None

    def _check_overlay_unique(self) -> None:
        children = self.client.get_children(self.paths.ip_map)
        holders: dict[str, set[str]] = {}
        for member in parse_party(children).members:
            holders.setdefault(str(member.overlay), set()).add(str(member.public))
        for overlay, publics in holders.items():
            if len(publics) > 1:
                self._violate("overlay-unique", f"{overlay} held by {sorted(publics)}")

    def _check_deaths(self, hosts: list[dict[str, Any]]) -> None:
        with self.lock:
            kills = dict(self.known.kills)
        for host in hosts:
            restarts = int(host.get("restarts") or 0)
            if restarts > self.restarts_seen.get(host["name"], 0):
                self.restarts_seen[host["name"]] = restarts
                if restarts > kills.get(host["name"], 0):
                    killed = kills.get(host["name"], 0)
                    self._violate("no-unexpected-death", f"{host['name']} agent exited with "
                                  f"{host.get('last_exit')} ({restarts} restarts, {killed} kills by "
                                  f"the schedule); it said: {host.get('last_words') or '-'}")

    def _check_guard(self, hosts: list[dict[str, Any]], statuses: dict[str, AgentStatus],
                     now: float) -> None:
        with self.lock:
            since, members, cut = self.known.mass_cut_since, self.known.mass_cut_members, set(self.known.cut)
        if since is None or members is None or now - since < self.hold_after:
            return
        for host in hosts:
            status = statuses.get(host["name"])
            if host["name"] in cut or status is None:
                continue
            if status.members < members:
                self._violate("guard-holds", f"{host['name']} programs {status.members} members while "
                              f"{len(cut)} are gone at once (guard must hold all {members})")


def agent_resources(hosts: list[dict[str, Any]]) -> dict[int, tuple[float, int]]:
    """pid -> (RSS in MB, open fds) of every running agent (the neti-agent process itself)."""
    found = {}
    for host in hosts:
        pid = host.get("pid")
        if not pid:
            continue
        try:
            rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            continue
        found[pid] = (round(rss / 1024, 1), fds)
    return found


def resource_report(start: dict[int, tuple[float, int]], end: dict[int, tuple[float, int]]) -> dict[str, Any]:
    """Growth over the run, for the agents that lived through all of it (same pid at both ends)."""
    same = sorted(set(start) & set(end))

    def summary(sample: dict[int, tuple[float, int]], pids: list[int]) -> dict[str, Any]:
        rss = sorted(sample[p][0] for p in pids)
        fds = sorted(sample[p][1] for p in pids)
        return {"rss_mb_median": rss[len(rss) // 2] if rss else None, "rss_mb_max": max(rss, default=None),
                "fds_median": fds[len(fds) // 2] if fds else None, "fds_max": max(fds, default=None)}

    return {"agents_throughout": len(same), "start": summary(start, same), "end": summary(end, same),
            "rss_growth_mb_max": max((end[p][0] - start[p][0] for p in same), default=None),
            "fds_growth_max": max((end[p][1] - start[p][1] for p in same), default=None)}
