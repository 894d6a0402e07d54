"""Faults on demand: what ``neti lab zk …``, ``cut``, ``kill``, ``break``, ``churn`` and ``adopt`` ask the
lab daemon to do over its control socket, and what the chaos schedule drives.

Each request gets a one-line answer for the operator; a request the lab cannot carry out (no
such host, an agent that is not running, ZooKeeper not up) is an error answer, never a crash
of the daemon that owns the whole fleet.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

from neti_core.lab.daemon import AGENT_SETTINGS, Lab, LabHost
from neti_core.lab.host import ZK_PORT
from neti_core.lab.plan import HostPlan, plan_fleet
from neti_core.lab.zkserver import ZooKeeperUnavailable
from neti_core.members import Side


class LabFaults:
    """The control socket's handler: one method per fault, each acting on the running lab."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        member = request.get("member")
        handlers = {"ping": lambda: {}, "zk-stop": lambda: self._zk("stop", member),
                    "zk-start": lambda: self._zk("start", member),
                    "zk-kill-leader": lambda: self._zk("kill-leader", None),
                    "zk-kill-follower": lambda: self._zk("kill-follower", None),
                    "zk-restart": lambda: self._zk("restart", None),
                    "cut": lambda: self._cut(request["host"], True),
                    "heal": lambda: self._cut(request["host"], False),
                    "break": lambda: self._break(request["host"]),
                    "kill": lambda: self._kill_agent(request["host"]),
                    "adopt": lambda: self._adopt(request["host"]),
                    "churn": lambda: self._churn(int(request.get("count", 1)),
                                                 float(request.get("rate", 1)), request.get("hosts")),
                    "shutdown": self._request_shutdown}
        if command not in handlers:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            return {"ok": True, **handlers[command]()}
        except KeyError as exc:
            return {"ok": False, "error": f"no such host {exc}"}
        except (ValueError, ZooKeeperUnavailable) as exc:
            return {"ok": False, "error": str(exc)}

    def _zk(self, action: str, member: int | None) -> dict[str, Any]:
        if action == "stop":
            message = self.lab.zk.stop(member) + ": agents keep their rules (fail-static)"
        elif action == "start":
            message = self.lab.zk.start_members(member) + f" on {self.lab.zk.hosts}"
        elif action in ("kill-leader", "kill-follower"):
            message = self.lab.zk.kill_role(action.removeprefix("kill-"))
        else:
            message = self.lab.zk.restart_rolling()
        self.lab.save(zk_pid=self.lab.zk.servers[0].pid, zk_pids=self.lab.zk.pids)
        return {"message": message}

    def _agent_host(self, name: str) -> LabHost:
        host = self.lab.hosts[name]
        if host.sim is None:
            raise KeyError(f"{name} (it runs no agent)")
        return host

    def _cut(self, name: str, cut: bool) -> dict[str, Any]:
        sim = self._agent_host(name).sim
        assert sim is not None
        if sim.netns is not None:
            op = "-I" if cut else "-D"
            ports = f"{ZK_PORT}:{ZK_PORT + len(sim.zk_portals) - 1}"  # every ensemble member
            sim.shell("iptables", "-w", op, "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", ports,
                      "-j", "DROP")
        else:
            for portal in sim.zk_portals:
                portal.block() if cut else portal.unblock()
        return {"message": f"{name} {'cut off from' if cut else 'reconnected to'} ZooKeeper"}

    def _kill_agent(self, name: str) -> dict[str, Any]:
        """SIGKILL the host's agent, as an OOM kill would; the supervisor restarts it."""
        sim = self._agent_host(name).sim
        assert sim is not None
        pid = sim.process.pid if sim.process is not None else None
        if pid is None or sim.process is None or sim.process.poll() is not None:
            return {"ok": False, "error": f"{name}: its agent is not running"}
        os.killpg(pid, signal.SIGKILL)
        return {"message": f"{name}: agent (pid {pid}) killed with SIGKILL; the lab restarts it in "
                           f"{self.lab.supervisor.restart_seconds:.0f} s", "pid": pid}

    def _break(self, name: str) -> dict[str, Any]:
        sim = self._agent_host(name).sim
        assert sim is not None
        if sim.netns is None:
            return {"ok": False, "error": "breaking rules needs the kernel: run the lab as root"}
        # Lab hosts run the nft backend (auto on this kernel); a host configured for an iptables
        # backend has the chain and the ipset instead. Each command fails harmlessly on the other.
        sim.shell("nft", "flush", "chain", "ip", "neti", "NETI-INPUT")
        sim.shell("nft", "flush", "set", "ip", "neti", "ec2_whitelist")
        sim.shell("iptables", "-w", "-F", "NETI-INPUT")
        sim.shell("ipset", "flush", "ec2_whitelist")
        return {"message": f"{name}: flushed NETI-INPUT and the member set; watch drift repair "
                           f"(within resync_seconds={AGENT_SETTINGS['resync_seconds']})"}

    def _churn(self, count: int, rate: float, names: list[str] | None = None) -> dict[str, Any]:
        """Terminate ``count`` agent hosts (or ``names``), launch as many new ones, ``rate`` a second."""
        with self.lab.lock:
            agents = [n for n, h in self.lab.hosts.items() if h.plan.runs_agent]
            victims = [n for n in names if n in self.lab.hosts] if names else \
                random.sample(agents, min(count, len(agents)))
        launched = []
        for name in victims:
            side = self.lab.hosts[name].plan.side
            self.lab.terminate(name)
            index = self.lab.next_index
            self.lab.next_index += 1
            plan = plan_fleet(1, 100 if side is Side.VPC else 0, 0, first_index=index)[0]
            launched.append(self.lab.launch(plan).plan.name)
            self.lab.save()
            time.sleep(1 / max(rate, 0.01))
        return {"message": f"terminated {', '.join(victims) or 'nothing'}; launched {', '.join(launched)}"}

    def _adopt(self, name: str) -> dict[str, Any]:
        """Install Neti on an instance that ran without it (what the operator does after the report)."""
        with self.lab.lock:
            host = self.lab.hosts[name]
            if host.plan.runs_agent:
                return {"ok": False, "error": f"{name} runs an agent already"}
            plan = HostPlan(host.plan.name, host.plan.side, host.plan.private, runs_agent=True)
            del self.lab.hosts[name]
        self.lab.launch_existing(plan, host.instance_id, host.public)
        self.lab.save()
        return {"message": f"{name}: agent installed and started"}

    def _request_shutdown(self) -> dict[str, Any]:
        threading.Thread(target=self.lab.shutdown, daemon=True).start()
        return {"message": "shutting down"}
