"""``neti check`` on a host in a test namespace: real iptables/ipset, a real ZooKeeper, the agent's
real health server. Rules are put in place by the real firewall backend, as the agent does."""

from __future__ import annotations

import json
import time
import uuid
from ipaddress import IPv4Address

import pytest
import yaml

from agent.metrics import AgentMetrics, HealthServer
from neti_core.cli import main
from neti_core.config import parse_config
from neti_core.firewall.base import make_backend
from neti_core.lab import netns
from neti_core.members import Member, Side
from neti_core.ops.check import CRITICAL, OK, UNKNOWN, WARNING, Finding, overall
from neti_core.ops.iptsave import parse_save, stranger_verdict
from neti_core.rules import build_ruleset
from neti_core.schema import AgentStatus, FleetDefaults

INSTANCE = "i-0123456789abcdef0"
MEMBERS = [Member(IPv4Address(f"54.0.0.{n}"), IPv4Address(f"172.31.0.{n}"),
                  IPv4Address(f"192.168.0.{n}"), Side.VPC) for n in range(1, 4)]


class Host:
    """One Neti host in a namespace: its config, its firewall backend, its status in ZooKeeper."""

    def __init__(self, ns, raw_config, config_path, *, zk, paths, health):
        self.ns, self.raw, self.config_path, self.zk, self.paths = ns, raw_config, config_path, zk, paths
        self.config = parse_config(raw_config)
        self.backend = make_backend(self.config, netns=ns)
        self.health = health

    def agent_applies(self, reject_all: bool, *, error: str | None = None) -> None:
        ruleset = build_ruleset(Side.VPC, MEMBERS, self.config, reject_all)
        self.backend.apply(ruleset, full=True)
        status = AgentStatus(instance_id=INSTANCE, overlay_ip="192.168.0.1", side="vpc", version="1.0.0",
                             reject_all=reject_all, reject_all_source="config", membership_version=1,
                             members=len(MEMBERS), ruleset_hash=ruleset.hash, applied_at=time.time(),
                             error=error)
        path = f"{self.paths.status}/{INSTANCE}"
        if self.zk.exists(path):
            self.zk.set(path, status.to_json())
        else:
            self.zk.create(path, status.to_json(), makepath=True)

    def config_copy(self, **changes: object) -> str:
        """A copy of this host's neti.yml with some keys changed."""
        path = self.config_path.replace("neti.yml", f"neti-{uuid.uuid4().hex[:6]}.yml")
        with open(path, "w") as handle:
            yaml.safe_dump({**self.raw, **changes}, handle)
        return path

    def iptables(self, *argv: str) -> None:
        netns.run(self.ns, ["iptables", *argv])

    def check(self, capsys, *extra: str, config: str | None = None) -> tuple[int, dict]:
        status = main(["check", "-c", config or self.config_path, "--instance-id", INSTANCE,
                       "--netns", self.ns, "--json", *extra])
        report = json.loads(capsys.readouterr().out)
        assert report["state"] == status
        return status, report


def messages(report: dict, state: int) -> list[str]:
    return [f"{f['check']}: {f['message']}" for f in report["findings"] if f["state"] == state]


@pytest.fixture
def host(as_root, zk, zk_paths, zk_server, tmp_path):
    yield from _host(zk, zk_paths, zk_server, tmp_path, "restore")


@pytest.fixture
def nft_host(as_root, zk, zk_paths, zk_server, tmp_path):
    yield from _host(zk, zk_paths, zk_server, tmp_path, "nft")


def _host(zk, zk_paths, zk_server, tmp_path, backend: str):
    name = f"neti-t7c-{uuid.uuid4().hex[:6]}"
    netns.create(name)
    health_state = {"healthy": True}
    server = HealthServer("127.0.0.1", 0, AgentMetrics(),
                          lambda: (health_state["healthy"], {"zookeeper": "CONNECTED"})).start()
    raw = {"zk_prefix": zk_paths.prefix, "zk_hosts": {"vpc": [zk_server.hosts]}, "reject_all": True,
           "open_ports": [80], "ssh_whitelist": ["10.0.0.0/8"], "ipset_name": "neti_t7",
           "metrics_address": "127.0.0.1", "metrics_port": server.port, "firewall_backend": backend}
    path = tmp_path / "neti.yml"
    path.write_text(yaml.safe_dump(raw))
    made = Host(name, raw, str(path), zk=zk, paths=zk_paths, health=health_state)
    try:
        yield made
    finally:
        made.backend.close()
        server.stop()
        netns.delete(name)


@pytest.mark.netns
def test_check_is_critical_while_input_does_not_drop_and_ok_once_it_does(host, capsys):
    host.agent_applies(reject_all=True)
    host.iptables("-I", "INPUT", "1", "-i", "eth0", "-j", "ACCEPT")  # in front of Neti's jump
    status, report = host.check(capsys)
    assert status == CRITICAL
    (problem,) = messages(report, CRITICAL)
    assert "INPUT does not drop strangers while reject_all expected true (config)" in problem
    assert "accepted by INPUT rule 1: -A INPUT -i eth0 -j ACCEPT" in problem

    host.iptables("-D", "INPUT", "1")
    status, report = host.check(capsys)
    assert status == OK, report
    assert any("INPUT drops strangers" in m and "NETI-INPUT" in m for m in messages(report, OK))
    assert any("live rules are the applied ruleset" in m for m in messages(report, OK))


@pytest.mark.netns
def test_check_on_nft_counts_every_table_at_the_hook_and_sees_drift_in_netis_table(nft_host, capsys):
    host = nft_host
    host.agent_applies(reject_all=True)
    host.iptables("-I", "INPUT", "1", "-i", "eth0", "-j", "ACCEPT")  # another table's accept
    status, report = host.check(capsys)
    assert status == OK, report  # ... does not undo the drop in Neti's own table
    assert any("INPUT drops strangers" in m and "table ip neti: dropped by INPUT rule 1" in m
               for m in messages(report, OK))
    assert any("live rules are the applied ruleset" in m for m in messages(report, OK))

    netns.run(host.ns, ["nft", "delete", "rule", "ip", "neti", "NETI-INPUT", "handle",
                        _handle_of_last_rule(host.ns, "NETI-INPUT")])  # Neti's final drop
    status, report = host.check(capsys)
    assert status == CRITICAL
    found = " | ".join(messages(report, CRITICAL))
    assert "INPUT does not drop strangers while reject_all expected true (config)" in found
    assert "filter NETI-INPUT: 1 rules missing from the end, first '-j DROP'" in found


def _handle_of_last_rule(ns: str, chain: str) -> str:
    listing = json.loads(netns.run(ns, ["nft", "-j", "list", "chain", "ip", "neti", chain]).stdout)
    return str([e["rule"]["handle"] for e in listing["nftables"] if "rule" in e][-1])


@pytest.mark.netns
def test_a_fleet_default_turns_reject_all_on_before_the_agent_applies_it(host, capsys):
    reject_all_off = host.config_copy(reject_all=False)
    host.agent_applies(reject_all=False)
    status, _ = host.check(capsys, config=reject_all_off)
    assert status == OK  # reject_all off everywhere: letting strangers in is right
    host.zk.create(host.paths.control_defaults, FleetDefaults(True, "oncall", time.time()).to_json(),
                   makepath=True)
    status, report = host.check(capsys, config=reject_all_off)
    assert status == CRITICAL
    found = " | ".join(messages(report, CRITICAL))
    assert "INPUT does not drop strangers while reject_all expected true (fleet)" in found
    assert "the agent applied reject_all false, reject_all expected true (fleet)" in found
    host.agent_applies(reject_all=True)
    status, report = host.check(capsys, config=reject_all_off)
    assert status == OK, report


@pytest.mark.netns
def test_drift_in_neti_objects_and_agent_problems_are_reported(host, capsys):
    host.agent_applies(reject_all=True)
    netns.run(host.ns, ["ipset", "add", "neti_t7", "203.0.113.66"])  # a member the agent never had
    status, report = host.check(capsys)
    assert status == WARNING
    assert any("not the agent's last applied ruleset" in m for m in messages(report, WARNING))

    host.iptables("-t", "nat", "-F", "NETI-DNAT")
    host.iptables("-D", "INPUT", "-j", "NETI-INPUT")
    status, report = host.check(capsys)
    assert status == CRITICAL
    found = " | ".join(messages(report, CRITICAL))
    assert "filter INPUT: jump missing" in found
    assert "INPUT does not drop strangers" in found

    host.agent_applies(reject_all=True, error="iptables-restore: exit 4")
    host.health["healthy"] = False
    status, report = host.check(capsys)
    assert status == CRITICAL
    found = " | ".join(messages(report, CRITICAL))
    assert "last sync failed: iptables-restore: exit 4" in found and "agent unhealthy" in found

    host.zk.delete(f"{host.paths.status}/{INSTANCE}")
    status, report = host.check(capsys)
    assert any(m.startswith(f"status: no status/{INSTANCE}") for m in messages(report, CRITICAL))


@pytest.mark.netns
def test_unreachable_zookeeper_is_unknown_not_a_missing_agent(host, capsys):
    host.agent_applies(reject_all=True)
    status, report = host.check(capsys, "--zk", "127.0.0.1:1", "--timeout", "0.5")
    assert status == UNKNOWN, report
    assert not messages(report, CRITICAL)
    assert any("cannot reach 127.0.0.1:1" in m for m in messages(report, UNKNOWN))


def test_table_output_is_nagios_style(host, capsys):
    host.agent_applies(reject_all=True)
    host.iptables("-P", "INPUT", "ACCEPT")
    host.iptables("-I", "INPUT", "1", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
    status = main(["check", "-c", host.config_path, "--instance-id", INSTANCE, "--netns", host.ns])
    lines = capsys.readouterr().out.splitlines()
    assert status == CRITICAL
    assert lines[0].startswith("NETI CRITICAL: reject_all: INPUT does not drop strangers")
    assert "[OK] health: agent healthy" in lines


# --- the pure parts -------------------------------------------------------------------------------

SAVED = """*filter
:INPUT {policy} [0:0]
:NETI-INPUT - [0:0]
:DOCKER-USER - [0:0]
{input}
-A DOCKER-USER -j RETURN
-A NETI-INPUT -i lo -j ACCEPT
-A NETI-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A NETI-INPUT -m set --match-set ec2_whitelist src -j ACCEPT
-A NETI-INPUT -p tcp -m tcp --dport 80 -j ACCEPT
-A NETI-INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j ACCEPT
{final}
COMMIT
"""


@pytest.mark.parametrize(("policy", "input_rules", "final", "drops"), [
    ("ACCEPT", "-A INPUT -j NETI-INPUT", "-A NETI-INPUT -j DROP", True),
    ("ACCEPT", "-A INPUT -j NETI-INPUT", "", False),
    ("DROP", "-A INPUT -j NETI-INPUT", "", True),
    ("ACCEPT", "-A INPUT -j DOCKER-USER\n-A INPUT -j NETI-INPUT", "-A NETI-INPUT -j REJECT "
     "--reject-with icmp-port-unreachable", True),
    ("DROP", "-A INPUT -p tcp -j ACCEPT\n-A INPUT -j NETI-INPUT", "-A NETI-INPUT -j DROP", False),
    ("DROP", "-A INPUT -i eth0 -j NETI-INPUT", "", True),
    ("ACCEPT", "-A INPUT -i eth0 -j NETI-INPUT", "-A NETI-INPUT -j DROP", False),  # eth1 gets in
    ("ACCEPT", "-A INPUT -j NETI-INPUT", '-A NETI-INPUT -m comment --comment "neti: rest" -j DROP', True),
])
def test_stranger_verdict(policy, input_rules, final, drops):
    table = parse_save(SAVED.format(policy=policy, input=input_rules, final=final))["filter"]
    assert stranger_verdict(table).drops is drops


def test_overall_state_precedence():
    def f(state: int) -> Finding:
        return Finding(state, "x", "y")

    assert overall([]) == OK
    assert overall([f(OK), f(UNKNOWN)]) == UNKNOWN
    assert overall([f(UNKNOWN), f(WARNING)]) == WARNING
    assert overall([f(WARNING), f(CRITICAL), f(UNKNOWN)]) == CRITICAL
