"""A simulated instance: a network namespace with its own metadata service, ZooKeeper reachable
through a portal, and a real ``neti-agent`` process running inside.

Shared by the lab and the agent tests, so both run exactly what a real host runs: the agent finds
its identity at ``imds_url`` and ZooKeeper at ``127.0.0.1:2181`` inside its own namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from neti_core.firewall.netns_thread import call_in_netns
from neti_core.lab.imds_server import ImdsServer, metadata_tree
from neti_core.lab.portal import Portal
from neti_core.members import Side

IMDS_PORT = 8169
ZK_PORT = 2181
EC2_PORT = 5000


def last_line(path: Path, tail_bytes: int = 4096) -> str | None:
    """The last non-empty line of a log (an agent's one-line error, or a traceback's last line)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - tail_bytes))
            lines = log.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1].strip()[:300] if lines else None


def agent_command() -> list[str]:
    """The installed neti-agent next to this interpreter (the venv's), else ``python -m``."""
    script = Path(sys.executable).parent / "neti-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]


@dataclass
class SimInstance:
    """``netns`` None: no namespace (the lab without root): the agent records instead of
    programming a kernel, and ZooKeeper and metadata listen on free loopback ports."""

    netns: str | None
    instance_id: str
    private_ip: IPv4Address
    public_ip: IPv4Address
    side: Side
    workdir: Path
    mac: str = "02:00:00:00:00:01"
    vpc_id: str | None = None
    name: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    imds: ImdsServer | None = field(default=None, init=False, repr=False)
    portals: list[Portal] = field(default_factory=list, init=False, repr=False)
    zk_portals: list[Portal] = field(default_factory=list, init=False, repr=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "neti.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def prepare(self, zk_target: tuple[str, int] | Sequence[tuple[str, int]], config: dict[str, Any],
                ec2_target: tuple[str, int] | None = None) -> None:
        """Serve metadata and reach ZooKeeper (and the EC2 API) from inside the namespace.

        ``zk_target`` may be every member of an ensemble: one portal each (ports 2181, 2182, …),
        all in the agent's connect string, so it fails over as a real host's agent would.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        tree = metadata_tree(self.instance_id, str(self.private_ip), str(self.public_ip), self.mac,
                             self.vpc_id if self.side is Side.VPC else None)
        imds_port = IMDS_PORT if self.netns is not None else 0
        if self.netns is None:
            self.imds = ImdsServer(tree, "127.0.0.1", imds_port)
        else:  # the server's socket belongs to the namespace of the thread that makes it
            self.imds = call_in_netns(self.netns, ImdsServer, tree, "127.0.0.1", imds_port)
        self.imds.start()
        targets = [zk_target] if isinstance(zk_target[0], str) else list(zk_target)
        for index, target in enumerate(targets):
            self.zk_portals.append(Portal(self.netns, ("127.0.0.1", ZK_PORT + index if self.netns else 0),
                                          target).start())  # type: ignore[arg-type]
        self.portals.extend(self.zk_portals)
        connect = [f"127.0.0.1:{portal.port}" for portal in self.zk_portals]
        settings: dict[str, Any] = {
            "zk_hosts": {"ec2": connect, "vpc": connect},
            "imds_url": self.imds.url,
            "table_files_path": str(self.workdir / "state"),
        }
        if self.netns is None:
            settings |= {"firewall_backend": "recording", "metrics_port": 0}
        if ec2_target is not None:
            ec2_portal = Portal(self.netns, ("127.0.0.1", EC2_PORT if self.netns else 0), ec2_target).start()
            self.portals.append(ec2_portal)
            settings |= {"ec2_endpoint_url": f"http://127.0.0.1:{ec2_portal.port}", "aws_region": "us-east-1",
                         "aws_key": "testing", "aws_secret_key": "testing"}
        self.config_path.write_text(yaml.safe_dump(settings | config, sort_keys=True))

    def _inside(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns is not None else []

    @property
    def zk_portal(self) -> Portal:
        return self.zk_portals[0]

    def start_agent(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [*self._inside(), *agent_command(), "-c", str(self.config_path), *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )
        log.close()
        return self.process

    def run_agent(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the agent to completion (--once, --dry-run, --flush) and capture its output."""
        return subprocess.run(
            [*self._inside(), *agent_command(), "-c", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout, check=False)

    def kill_agent(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def request_stop(self) -> None:
        """SIGTERM without waiting, so a whole fleet of agents can shut down in parallel."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop_agent(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_agent()
        self.process = None

    def shell(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._inside(), *command], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def cleanup(self) -> None:
        self.stop_agent()
        for portal in self.portals:
            with contextlib.suppress(OSError):
                portal.stop()
        self.portals.clear()
        self.zk_portals.clear()
        if self.imds is not None:
            self.imds.stop()
            self.imds = None
