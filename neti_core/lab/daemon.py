"""The lab daemon: owns a whole simulated fleet until ``neti lab down``.

It starts ZooKeeper and moto's EC2 API on loopback, launches the instances in moto, builds the
AWS-like network (as root; otherwise hosts run without namespaces and record their rules), gives
each host its metadata service and ZooKeeper portal, and runs a real ``neti-agent`` per host. Its
manifest (``lab.json``) names every process, namespace and directory, so ``neti lab down`` can
remove them all even after this process has crashed. The faults that drills and ``neti lab chaos``
ask for over its control socket are in ``faults.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import boto3
import yaml

from neti_core.config import ZkPaths
from neti_core.errors import MalformedEntryError
from neti_core.lab.host import SimInstance, last_line
from neti_core.lab.motoserver import MotoServer
from neti_core.lab.netns import Netns
from neti_core.lab.plan import EC2_PRIVATE, OUTSIDE, VPC_PRIVATE, HostPlan, plan_fleet
from neti_core.lab.rpc import ControlServer
from neti_core.lab.simnet import Segments, SimHost, SimNetwork
from neti_core.lab.state import LabState, write_state
from neti_core.lab.supervisor import AgentSupervisor
from neti_core.lab.trust import LabTrust
from neti_core.lab.zkdrills import LabZooKeeper
from neti_core.members import Side, parse_ipv4

log = logging.getLogger("neti.lab")
NETNS_PREFIX = "nlab"
LAUNCH_WORKERS = 4
LAB_AWS_RANGES = ("3.80.0.0/12", "18.204.0.0/14", "34.192.0.0/12", "54.208.0.0/13", "54.214.0.0/16")
ZK_PREFIX = "/neti"
# (name, side, description): the fleet's groups, then the ZooKeeper ensemble's and its proxies'.
LAB_GROUPS = (("lab-fleet", Side.EC2, "the lab fleet, EC2-Classic side"),
              ("lab-fleet-vpc", Side.VPC, "the lab fleet, VPC side"),
              ("lab-zk", Side.VPC, "the ZooKeeper ensemble in the VPC"),
              ("lab-zkneti", Side.EC2, "the ZooKeeper proxies on the EC2-Classic side"))
LAB_IGNORED = ["zk-*", "zkneti-*"]  # the console's ignore_name_patterns: they never run Neti
LAB_RECLAIM_QUARANTINE = "10s"  # the console.yml of the lab (operators); a real fleet: days
AGENT_SETTINGS: dict[str, Any] = {
    "zk_prefix": ZK_PREFIX,
    "overlay_subnet": "192.168.0.0/16",
    "vpc_private_range": str(VPC_PRIVATE),
    "open_ports": [80, 443],
    "ssh_whitelist": [str(OUTSIDE)],
    "reject_all": False,
    "resync_seconds": 30,
    "removal_grace_seconds": 30,
    "reject_all_confirm_seconds": 15,
}


@dataclass
class LabHost:
    plan: HostPlan
    instance_id: str
    public: IPv4Address
    sim: SimInstance | None = None
    netns: str | None = None
    supervised: bool = False  # True once its agent runs: the supervisor restarts it if it exits
    restarts: int = 0
    last_exit: int | None = None
    last_words: str | None = None
    died_at: float | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    def last_log_line(self) -> str | None:
        return last_line(self.sim.log_path) if self.sim is not None else None

    def exit_code(self) -> int | None:
        process = self.sim.process if self.sim is not None else None
        return None if process is None else process.poll()

    def restart(self) -> None:
        assert self.sim is not None
        self.sim.start_agent()

    def start_agent(self) -> None:
        assert self.sim is not None
        self.sim.start_agent()
        self.supervised = True

    def record(self) -> dict[str, Any]:
        return {"name": self.plan.name, "instance_id": self.instance_id, "side": self.plan.side.value,
                "private": str(self.plan.private), "public": str(self.public),
                "agent": self.plan.runs_agent, "netns": self.netns,
                "pid": self.sim.process.pid if self.sim and self.sim.process else None,
                "restarts": self.restarts, "last_exit": self.last_exit, "last_words": self.last_words}


class Lab:
    def __init__(self, state_dir: Path, use_netns: bool, netns_prefix: str = NETNS_PREFIX,
                 secure: bool = True, ensemble: int = 1) -> None:
        self.dir = state_dir
        self.use_netns = use_netns
        self.state = LabState(pid=os.getpid(), mode="netns" if use_netns else "recording",
                              netns_prefix=netns_prefix, zk_prefix=ZK_PREFIX, secured=secure)
        # Secured by default: TLS-only ZooKeeper (every ensemble member), ACLs, a secret per host.
        self.trust = LabTrust(state_dir / "trust") if secure else None
        self.zk = LabZooKeeper(state_dir / "zookeeper", ensemble,
                               tls=self.trust.server_tls if self.trust else None)
        self.moto = MotoServer(log_path=state_dir / "moto.log")
        self.network = SimNetwork([], Segments(EC2_PRIVATE, VPC_PRIVATE, OUTSIDE),
                                  Netns(prefix=netns_prefix)) if use_netns else None
        self.hosts: dict[str, LabHost] = {}
        self.lock = threading.RLock()
        self.ec2: Any = None
        self.subnets: dict[Side, str] = {}
        self.vpc_ids: dict[Side, str] = {}
        self.fleet_groups: dict[Side, str] = {}
        self.next_index = 1
        self.image_id = ""
        self.stopped = threading.Event()
        self.supervisor = AgentSupervisor(lambda: list(self.hosts.values()), self.lock, self.save)

    # --- bring-up ---------------------------------------------------------------------------------

    def save(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            self.state.hosts = [h.record() for h in self.hosts.values()]
            write_state(self.dir, self.state)

    def start(self, hosts: int, vpc_percent: float, unregistered: int) -> None:
        plans = plan_fleet(hosts, vpc_percent, unregistered)
        self.save(phase="starting", progress="starting ZooKeeper")
        self.zk.start()
        if self.trust is not None:
            self.trust.secure(self.zk.hosts, ZkPaths.under(ZK_PREFIX))
        self.save(zk_port=self.zk.servers[0].port, zk_pid=self.zk.servers[0].pid, zk_hosts=self.zk.hosts,
                  zk_pids=self.zk.pids, progress="starting the EC2 API (moto)")
        self.moto.start()
        self.save(moto_port=self.moto.port, moto_pid=self.moto.process.pid if self.moto.process else None)
        self.ec2 = boto3.client("ec2", **self.moto.client_kwargs())
        self._seed_networks()
        if self.network is not None:
            self.network.build()
            # An outsider (the office in the ssh whitelist): what chaos probes reject_all and ssh with.
            outsider = OUTSIDE[10]
            netns = self.network.add_host(SimHost("outsider", None, outsider)).name
            self.save(outsider_netns=netns, outsider_ip=str(outsider))
        self._write_console_config()
        launched = 0
        # Build every host first, then start the agents together: agents started one by one
        # would each resync on every later join, which costs more CPU than the whole bring-up.
        with ThreadPoolExecutor(max_workers=LAUNCH_WORKERS) as pool:
            for _ in pool.map(lambda plan: self.launch(plan, start_agent=False), plans):
                launched += 1
                self.save(progress=f"{launched}/{len(plans)} instances launched")
        self.save(progress=f"starting {sum(p.runs_agent for p in plans)} agents")
        for host in list(self.hosts.values()):
            if host.sim is not None:
                host.start_agent()
        self.next_index = len(plans) + 1
        self.supervisor.start()
        self.save(phase="ready", progress=f"{len(plans)} instances launched")

    def _seed_networks(self) -> None:
        """Two VPCs in moto: one stands in for EC2-Classic (moto has no Classic), one is the VPC."""
        # Listing moto's ~1,300 images takes a second or two: look one up once, not per launch.
        self.image_id = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        for side, cidr in ((Side.EC2, EC2_PRIVATE), (Side.VPC, VPC_PRIVATE)):
            vpc = self.ec2.create_vpc(CidrBlock=str(cidr))["Vpc"]["VpcId"]
            self.ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": f"lab-{side.value}"}])
            subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock=str(cidr))["Subnet"]["SubnetId"]
            self.ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
            self.vpc_ids[side], self.subnets[side] = vpc, subnet
        # What the last phases of the migration act on: the fleet's security groups (one per
        # side, as a real fleet has), AWS's published ranges (a small sample in AWS's format) for
        # `neti sg aws-ranges`, and a ZooKeeper node in the VPC with its proxy on the EC2 side,
        # each in its own group, for `neti sg sync-zk-proxy` (instances only: the lab's real
        # ZooKeeper runs on loopback; the console ignores them by name, like a real fleet's).
        groups = {name: self.ec2.create_security_group(
            GroupName=name, Description=description, VpcId=self.vpc_ids[side])["GroupId"]
            for name, side, description in LAB_GROUPS}
        self.fleet_groups = {Side.EC2: groups["lab-fleet"], Side.VPC: groups["lab-fleet-vpc"]}
        for name, group in (("zk-1", groups["lab-zk"]), ("zkneti-1", groups["lab-zkneti"])):
            side = Side.VPC if name.startswith("zk-") else Side.EC2
            self.ec2.run_instances(ImageId=self.image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                   SubnetId=self.subnets[side], SecurityGroupIds=[group],
                                   TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                       {"Key": "Name", "Value": name},
                                       {"Key": "neti:side", "Value": side.value}]}])
        ranges = self.dir / "ip-ranges.json"
        ranges.write_text(json.dumps({"syncToken": "1", "createDate": "2026-01-01-00-00-00", "prefixes": [
            {"ip_prefix": prefix, "region": "us-east-1", "service": "EC2",
             "network_border_group": "us-east-1"} for prefix in LAB_AWS_RANGES]}, indent=1))
        self.save(security_group=groups["lab-fleet"], security_groups=groups, ranges_file=str(ranges))

    def _write_console_config(self) -> None:
        connect = self.zk.hosts.split(",")
        config = {"zk_prefix": ZK_PREFIX, "zk_hosts": {"ec2": connect, "vpc": connect},
                  "ec2_endpoint_url": self.moto.url, "aws_region": "us-east-1", "aws_key": "testing",
                  "aws_secret_key": "testing", "ec2_poll_seconds": 10, "metrics_port": 0,
                  "ignore_name_patterns": LAB_IGNORED,
                  "overlay_subnet": AGENT_SETTINGS["overlay_subnet"],
                  # Seconds, not days, so `neti lab churn` then `neti registry reclaim --apply`
                  # twice shows the whole cycle in the lab.
                  "reclaim_quarantine": LAB_RECLAIM_QUARANTINE}
        if self.trust is not None:
            config |= self.trust.operator_settings()
        (self.dir / "console.yml").write_text(yaml.safe_dump(config, sort_keys=True))
        self.save(console_config=str(self.dir / "console.yml"))

    def _run_instance(self, plan: HostPlan) -> tuple[str, IPv4Address]:
        image = self.image_id
        with self.lock:
            used = {h.public for h in self.hosts.values()}
        for _ in range(5):
            instance = self.ec2.run_instances(
                ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                SubnetId=self.subnets[plan.side], PrivateIpAddress=str(plan.private),
                SecurityGroupIds=[self.fleet_groups[plan.side]],
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "Name", "Value": plan.name}, {"Key": "neti:side", "Value": plan.side.value}]}],
            )["Instances"][0]
            try:
                public = parse_ipv4(instance.get("PublicIpAddress", ""))
            except MalformedEntryError:
                public = None
            if public is not None and public not in used and not any(
                    public in net for net in (EC2_PRIVATE, VPC_PRIVATE, OUTSIDE)):
                return instance["InstanceId"], public
            self.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        raise RuntimeError(f"moto gave {plan.name} no usable public address")

    def launch(self, plan: HostPlan, start_agent: bool = True) -> LabHost:
        instance_id, public = self._run_instance(plan)
        return self.launch_existing(plan, instance_id, public, start_agent)

    def launch_existing(self, plan: HostPlan, instance_id: str, public: IPv4Address,
                        start_agent: bool = True) -> LabHost:
        """Give a running instance its host: namespace, metadata, ZooKeeper portal, agent."""
        host = LabHost(plan, instance_id, public)
        with self.lock:
            self.hosts[plan.name] = host
        if plan.runs_agent:
            if self.network is not None:
                host.netns = self.network.add_host(SimHost(plan.name, plan.side, plan.private, public)).name
            host.sim = SimInstance(host.netns, instance_id, plan.private, public,
                               plan.side, self.dir / "hosts" / plan.name, name=plan.name,
                               mac=f"02:00:{random.randrange(256):02x}:00:{self.next_index % 256:02x}:01",
                               vpc_id=self.vpc_ids[Side.VPC] if plan.side is Side.VPC else None)
            settings = AGENT_SETTINGS | (self.trust.agent_settings(instance_id) if self.trust else {})
            host.sim.prepare(self.zk.targets, settings,
                             ec2_target=("127.0.0.1", self.moto.port))
            if start_agent:
                host.start_agent()
        return host

    def terminate(self, name: str) -> None:
        with self.lock:
            host = self.hosts.pop(name)
            host.supervised = False
        self.save()  # gone from the state before its namespace is: readers never probe a dead host
        self.ec2.terminate_instances(InstanceIds=[host.instance_id])
        if host.sim is not None:
            host.sim.cleanup()
        if host.netns is not None and self.network is not None:
            self.network.remove_host(host.plan.name)

    # --- tear-down --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every agent and service, delete every namespace, then the state directory."""
        self.save(phase="stopping")
        self.supervisor.stop()
        hosts = [host.sim for host in list(self.hosts.values()) if host.sim is not None]
        for sim in hosts:
            sim.request_stop()
        # Every host at once: each one's agent exit, portal poll (0.2 s) and metadata server poll
        # (0.5 s) add up when done one by one (40 hosts took half a minute).
        began = time.monotonic()
        if hosts:
            with ThreadPoolExecutor(max_workers=min(64, len(hosts)), thread_name_prefix="lab-stop") as pool:
                list(pool.map(lambda sim: sim.cleanup(), hosts))
        log.info("stopped %d hosts in %.1f s", len(hosts), time.monotonic() - began)
        if self.network is not None:
            self.network.close()
        log.info("namespaces removed at %.1f s", time.monotonic() - began)
        self.moto.stop()
        self.zk.cleanup()
        log.info("EC2 API and ZooKeeper stopped at %.1f s", time.monotonic() - began)
        self.stopped.set()


def main(argv: list[str] | None = None) -> None:
    from neti_core.lab.faults import LabFaults
    from neti_core.lab.state import remove_state_dir

    parser = argparse.ArgumentParser(description="The lab daemon (started by `neti lab up`).")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--vpc", type=float, default=25)
    parser.add_argument("--unregistered", type=int, default=5)
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--netns-prefix", default=NETNS_PREFIX)
    parser.add_argument("--insecure", action="store_true", help="open tree, plain ZooKeeper port")
    parser.add_argument("--ensemble", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lab = Lab(args.state_dir, use_netns=not args.no_netns, netns_prefix=args.netns_prefix,
              secure=not args.insecure, ensemble=args.ensemble)
    server = ControlServer(args.state_dir / "control.sock", LabFaults(lab).handle).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=lab.shutdown, daemon=True).start())
    try:
        lab.start(args.hosts, args.vpc, args.unregistered)
    except Exception as exc:
        log.exception("lab start failed")
        lab.save(phase="failed", progress=f"start failed: {exc}")
        lab.shutdown()
    lab.stopped.wait()
    server.close()
    remove_state_dir(args.state_dir)


if __name__ == "__main__":
    main()
