"""The agent on the nft backend (what ``auto`` picks here), end to end with real ZooKeeper and
packets between namespaces; and a host switched between backends keeps no rules of the old one."""

from __future__ import annotations

import re
import time

import pytest
import yaml

from neti_core.members import Side
from tests.fixtures.agent import connect_from, wait_for

pytestmark = pytest.mark.netns
NFT = {"firewall_backend": "auto"}
CUT = ["-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP"]


def _nft(host, *args: str) -> str:
    return host.host.shell("nft", *args).stdout


def _kernel_state(host) -> str:
    """Everything nftables holds (iptables-nft included) and ipset, without counters."""
    saved = _nft(host, "list", "ruleset") + host.host.shell("ipset", "save").stdout
    return re.sub(r"counter packets \d+ bytes \d+", "", saved)


def test_agents_on_nft_converge_reach_overlay_ips_and_the_deadman_rolls_back(agent_fleet):
    a = agent_fleet.add(Side.EC2, **NFT)
    v = agent_fleet.add(Side.VPC, **NFT)
    outsider = agent_fleet.add_outsider("out")
    wait_for(lambda: agent_fleet.converged(members=2), what="2 agents converged")
    assert "dnat to ip daddr map @overlay_dnat" in _nft(a, "list", "chain", "ip", "neti", "NETI-DNAT")
    assert "NETI" not in a.host.shell("iptables-save").stdout
    overlay = {h.instance_id: agent_fleet.status(h).overlay_ip for h in (a, v)}
    assert connect_from(a.ns, overlay[v.instance_id]) == str(a.public)
    assert connect_from(v.ns, overlay[a.instance_id]) == str(v.public)
    assert connect_from(outsider.name, v.public) == str(outsider.address)  # reject_all off

    agent_fleet.set_host_reject_all(v, True)
    wait_for(lambda: agent_fleet.status(v).deadman == "pending", timeout=20, what="deadman pending")
    v.host.shell("iptables", "-w", "-I", "OUTPUT", *CUT)  # cut ZooKeeper before it can confirm
    assert connect_from(outsider.name, v.public) is None  # reject_all in force meanwhile
    wait_for(lambda: connect_from(outsider.name, v.public) == str(outsider.address), timeout=20,
             what="rules rolled back")
    v.host.shell("iptables", "-w", "-D", "OUTPUT", *CUT)
    status = wait_for(lambda: (s := agent_fleet.status(v)) and s.deadman == "rolled_back" and s,
                      timeout=30, what="rollback reported")
    assert status.reject_all is False
    # The cut outlived v's session (4 s), so v left the party and rejoins once healed; a lets it
    # back in at its next sync. Overlay traffic must work again, not merely within the same instant.
    began = time.monotonic()
    wait_for(lambda: connect_from(a.ns, overlay[v.instance_id]) == str(a.public), timeout=15,
             what="a reaches v's overlay IP again after the rollback")
    print(f"overlay traffic back {time.monotonic() - began:.1f} s after the rollback was reported")


def test_nft_rules_broken_by_hand_are_repaired_at_the_next_resync(agent_fleet):
    a = agent_fleet.add(Side.EC2, **NFT)
    b = agent_fleet.add(Side.EC2, **NFT)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    a.host.shell("nft", "flush", "chain", "ip", "neti", "NETI-INPUT")
    a.host.shell("nft", "flush", "set", "ip", "neti", "ec2_whitelist")
    status = wait_for(lambda: (s := agent_fleet.status(a)) and s.drift_repairs == 1 and s, timeout=20,
                      what="drift found and repaired (resync_seconds=5)")
    assert status.drift_detected
    assert "ip saddr @ec2_whitelist accept" in _nft(a, "list", "chain", "ip", "neti", "NETI-INPUT")
    assert str(b.address) in _nft(a, "list", "set", "ip", "neti", "ec2_whitelist")


def test_a_flushed_set_is_repaired_on_time_while_changes_keep_coming(agent_fleet):
    """Every sync here applies a change (reject_all flips each second), so the periodic resync never
    comes on its own: the full check that falls due on a changing sync must still look at the
    kernel. Before, a delta reset the clock and the empty set stayed while the flips went on."""
    a = agent_fleet.add(Side.EC2, **NFT)
    b = agent_fleet.add(Side.EC2, **NFT)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    a.host.shell("nft", "flush", "set", "ip", "neti", "ec2_whitelist")
    began, on = time.monotonic(), False
    while str(b.address) not in _nft(a, "list", "set", "ip", "neti", "ec2_whitelist"):
        assert time.monotonic() - began < 30, "set still empty after 30 s of changes (resync_seconds=5)"
        on = not on
        agent_fleet.set_host_reject_all(a, on)
        time.sleep(1.0)
    wait_for(lambda: agent_fleet.status(a).drift_repairs >= 1, timeout=10, what="the repair reported")


def test_dry_run_changes_nothing_and_flush_removes_only_netis_table(agent_fleet):
    a = agent_fleet.add(Side.EC2, **NFT)
    wait_for(lambda: agent_fleet.converged(members=1), what="converged")
    a.host.stop_agent()
    agent_fleet.add(Side.VPC, **NFT)
    wait_for(lambda: len(agent_fleet.zk.get_children(agent_fleet.paths.ip_map)) == 1, what="a left")
    before = _kernel_state(a)
    result = a.host.run_agent("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "nft (table ip neti)" in result.stdout
    assert _kernel_state(a) == before
    a.host.shell("iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    result = a.host.run_agent("--flush")
    assert result.returncode == 0, result.stderr
    assert "table ip neti" not in _nft(a, "list", "tables")
    assert "--dport 9999 -j ACCEPT" in a.host.shell("iptables-save").stdout


def _set_backend(host, backend: str) -> None:
    config = yaml.safe_load(host.host.config_path.read_text())
    host.host.config_path.write_text(yaml.safe_dump(config | {"firewall_backend": backend}))


def test_switching_a_host_between_backends_leaves_no_rules_of_the_old_one(agent_fleet):
    a = agent_fleet.add(Side.EC2, start=False)  # restore (the fixture's setting) first
    assert a.host.run_agent("--once").returncode == 0
    assert "-A INPUT -j NETI-INPUT" in a.host.shell("iptables-save").stdout
    assert a.host.shell("ipset", "list", "-n").stdout.split() == ["ec2_whitelist"]

    _set_backend(a, "auto")  # the upgrade: auto is nft on this kernel
    result = a.host.run_agent("--once")
    assert result.returncode == 0, result.stderr
    assert "NETI" not in a.host.shell("iptables-save").stdout  # no double rules
    assert a.host.shell("ipset", "list", "-n").stdout.strip() == ""
    assert "jump NETI-INPUT" in _nft(a, "list", "chain", "ip", "neti", "INPUT")

    _set_backend(a, "restore")  # and back (a rollback of the upgrade)
    result = a.host.run_agent("--once")
    assert result.returncode == 0, result.stderr
    assert "table ip neti" not in _nft(a, "list", "tables")
    assert "-A INPUT -j NETI-INPUT" in a.host.shell("iptables-save").stdout
