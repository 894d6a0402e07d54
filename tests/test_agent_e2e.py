"""Real neti-agent processes in their own namespaces, against a real ZooKeeper, proven by status
and by real connections between namespaces."""

from __future__ import annotations

import pytest

from neti_core.members import Side
from tests.fixtures.agent import connect_from, wait_for

pytestmark = pytest.mark.netns


def test_agents_converge_and_overlay_ips_reach_members_across_sides(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    b = agent_fleet.add(Side.EC2)
    v = agent_fleet.add(Side.VPC)
    wait_for(lambda: agent_fleet.converged(members=3), what="3 agents converged")
    statuses = {h.instance_id: agent_fleet.status(h) for h in (a, b, v)}
    assert len({s.overlay_ip for s in statuses.values()}) == 3
    # Same side, same members, same config: the same rules; the VPC host's differ.
    assert statuses[a.instance_id].ruleset_hash == statuses[b.instance_id].ruleset_hash
    assert statuses[v.instance_id].ruleset_hash != statuses[a.instance_id].ruleset_hash
    assert {s.side for s in statuses.values()} == {"ec2", "vpc"}
    # interval is written with its default, as the original agent did; maxchange is not: absent, it
    # means 10 % of the fleet, and only operators may write it.
    assert agent_fleet.zk.get(agent_fleet.paths.interval)[0] == b"1"
    assert agent_fleet.zk.exists(agent_fleet.paths.maxchange) is None
    # Same side: the overlay IP reaches b's private address, and b sees a's private address.
    assert connect_from(a.ns, statuses[b.instance_id].overlay_ip) == str(a.address)
    # Across sides: a reaches v through v's public address; v sees a's public address.
    assert connect_from(a.ns, statuses[v.instance_id].overlay_ip) == str(a.public)
    assert connect_from(v.ns, statuses[a.instance_id].overlay_ip) == str(v.public)


def test_a_host_override_flips_reject_all_and_the_rules_follow(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    v = agent_fleet.add(Side.VPC)
    outsider = agent_fleet.add_outsider("out")
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    assert connect_from(outsider.name, v.public) == str(outsider.address)  # reject_all off

    agent_fleet.set_host_reject_all(v, True)
    status = wait_for(lambda: (s := agent_fleet.status(v)) and s.reject_all and s.deadman == "confirmed"
                      and s, timeout=30, what="reject_all applied and confirmed")
    assert status.reject_all_source == "host"
    assert connect_from(outsider.name, v.public) is None  # dropped
    overlay_v = agent_fleet.status(v).overlay_ip
    assert connect_from(a.ns, overlay_v) == str(a.public)  # members still get in
    assert agent_fleet.status(a).reject_all is False  # only that host

    agent_fleet.set_host_reject_all(v, False)
    wait_for(lambda: agent_fleet.status(v).reject_all is False, what="reject_all off again")
    assert connect_from(outsider.name, v.public) == str(outsider.address)


def test_the_deadman_rolls_back_when_zookeeper_is_cut_after_the_flip(agent_fleet):
    v = agent_fleet.add(Side.VPC)
    outsider = agent_fleet.add_outsider("out")
    wait_for(lambda: agent_fleet.converged(members=1), what="converged")
    agent_fleet.set_host_reject_all(v, True)
    wait_for(lambda: agent_fleet.status(v).deadman == "pending", timeout=20, what="deadman pending")
    # Cut the agent off ZooKeeper (inside its own namespace) before it can confirm.
    v.host.shell("iptables", "-w", "-I", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP")
    assert connect_from(outsider.name, v.public) is None  # reject_all is in force meanwhile
    # Within the deadline (6 s) it is not confirmed: the previous rules come back by themselves.
    wait_for(lambda: connect_from(outsider.name, v.public) == str(outsider.address), timeout=20,
             what="rules rolled back")
    v.host.shell("iptables", "-w", "-D", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP")
    status = wait_for(lambda: (s := agent_fleet.status(v)) and s.deadman == "rolled_back" and s,
                      timeout=30, what="rollback reported")
    assert status.reject_all is False
    # The same instruction is not retried: it stays rolled back until an operator changes it.
    assert connect_from(outsider.name, v.public) == str(outsider.address)
    assert "not confirmed" in agent_fleet.log(v)


def _kernel_state(host) -> str:
    """iptables and ipset as saved, without counters and timestamps: what a dry run must not touch."""
    import re

    saved = host.host.shell("iptables-save").stdout + host.host.shell("ipset", "save").stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in saved.splitlines()
                     if not line.startswith("#"))


def test_session_expiry_rejoins_with_the_same_overlay_ip_and_keeps_the_rules(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    b = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    before = agent_fleet.status(a)
    entry = next(c for c in agent_fleet.zk.get_children(agent_fleet.paths.ip_map) if before.overlay_ip in c)
    old_owner = agent_fleet.zk.exists(f"{agent_fleet.paths.ip_map}/{entry}").ephemeralOwner
    cut = ["-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP"]
    a.host.shell("iptables", "-w", "-I", "OUTPUT", *cut)
    # ZooKeeper expires the silent session (4 s timeout); a's rules stay in place meanwhile.
    wait_for(lambda: agent_fleet.status(a) is None, timeout=20, what="a's session expired")
    assert connect_from(b.ns, before.overlay_ip) == str(b.address)
    a.host.shell("iptables", "-w", "-D", "OUTPUT", *cut)
    after = wait_for(lambda: agent_fleet.status(a), timeout=30, what="a back with a new session")
    assert after.overlay_ip == before.overlay_ip
    entries = [c for c in agent_fleet.zk.get_children(agent_fleet.paths.ip_map) if before.overlay_ip in c]
    assert len(entries) == 1
    assert agent_fleet.zk.exists(f"{agent_fleet.paths.ip_map}/{entries[0]}").ephemeralOwner != old_owner
    wait_for(lambda: agent_fleet.converged(members=2), what="converged again")


def test_half_the_members_vanishing_trips_the_guard_and_nothing_is_removed(agent_fleet):
    agent_fleet.zk.ensure_path(agent_fleet.paths.prefix)
    agent_fleet.zk.create(agent_fleet.paths.maxchange, b"1")
    a, b, c, d = (agent_fleet.add(Side.EC2) for _ in range(4))
    wait_for(lambda: agent_fleet.converged(members=4), what="converged")
    agent_fleet.set_host_reject_all(a, True)
    wait_for(lambda: agent_fleet.status(a).deadman == "confirmed", what="reject_all on a")
    overlay_a = agent_fleet.status(a).overlay_ip
    c.host.kill_agent()
    d.host.kill_agent()
    status = wait_for(lambda: (s := agent_fleet.status(a)) and s.guard and s, timeout=30, what="guard")
    assert status.guard.blocked_removals == 2 and status.guard.maxchange == 1
    assert status.members == 4
    assert "neti_guard_blocked_removals 2.0" in _http_get(a, "/metrics")[1]  # NetiGuardTripped reads it
    # Nothing removed: c (its agent dead, its host alive) still gets through a's reject_all.
    assert connect_from(c.ns, overlay_a) == str(c.address)
    # An operator raises maxchange: the removals go through and the guard clears.
    agent_fleet.zk.set(agent_fleet.paths.maxchange, b"5")
    wait_for(lambda: (s := agent_fleet.status(a)) and s.guard is None and s.members == 2, timeout=30,
             what="guard cleared")
    assert "neti_guard_blocked_removals 0.0" in _http_get(a, "/metrics")[1]
    assert connect_from(c.ns, overlay_a) is None
    assert connect_from(b.ns, overlay_a) == str(b.address)


def test_a_malformed_party_entry_is_reported_and_the_agent_keeps_working(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=1), what="converged")
    agent_fleet.zk.create(f"{agent_fleet.paths.ip_map}/{'f' * 32}-1.2.3.4|10.0.0.1|192.168.0.1;reboot|0",
                          ephemeral=True)
    wait_for(lambda: agent_fleet.status(a).malformed_entries == 1, what="malformed entry reported")
    assert "neti_malformed_entries 1.0" in _http_get(a, "/metrics")[1]
    b = agent_fleet.add(Side.VPC)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged with the new member")
    assert agent_fleet.status(a).malformed_entries == 1
    assert connect_from(b.ns, agent_fleet.status(a).overlay_ip) == str(b.public)


def test_kill_9_and_restart_keeps_the_overlay_ip_and_reconciles_the_rules(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    b = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    before = agent_fleet.status(a)
    a.host.kill_agent()
    a.host.shell("iptables", "-w", "-F", "NETI-INPUT")  # someone breaks the rules while it is down
    a.host.start_agent()
    after = wait_for(lambda: (s := agent_fleet.status(a)) and s.applied_at != before.applied_at and s,
                     timeout=30, what="a restarted and applied")
    assert after.overlay_ip == before.overlay_ip
    assert after.ruleset_hash == before.ruleset_hash
    assert "match-set" in a.host.shell("iptables", "-w", "-S", "NETI-INPUT").stdout
    assert connect_from(b.ns, before.overlay_ip) == str(b.address)


def test_dry_run_prints_the_change_and_leaves_the_kernel_unchanged(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=1), what="converged")
    a.host.stop_agent()
    agent_fleet.add(Side.VPC)
    wait_for(lambda: len(agent_fleet.zk.get_children(agent_fleet.paths.ip_map)) == 1, what="a left")
    before = _kernel_state(a)
    result = a.host.run_agent("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "reject_all false from config" in result.stdout
    assert "192.168." in result.stdout or "+" in result.stdout
    assert _kernel_state(a) == before


def _http_get(host, path: str) -> tuple[int, str]:
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n")
    import sys

    out = host.host.shell(sys.executable, "-c", code, f"http://127.0.0.1:9137{path}").stdout
    status, _, body = out.partition("\n")
    return int(status), body


def test_healthz_and_prometheus_metrics_on_localhost(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    agent_fleet.add(Side.VPC)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    _, body = wait_for(lambda: (r := _http_get(a, "/healthz")) and r[0] == 200 and r, what="healthy")
    assert '"healthy": true' in body and '"members": 2' in body
    _, metrics = _http_get(a, "/metrics")
    assert "neti_members 2.0" in metrics
    assert "neti_syncs_total" in metrics and "neti_sync_duration_seconds_bucket" in metrics
    # what the alert rules read (conf/prometheus/neti-alerts.yml): the membership applied, removals held
    version = agent_fleet.status(a).membership_version
    assert f"neti_membership_version_applied {float(version)}" in metrics
    assert "neti_guard_blocked_removals 0.0" in metrics
    # Cut ZooKeeper: the agent says it is unhealthy (and keeps its rules).
    a.host.shell("iptables", "-w", "-I", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", "2181", "-j", "DROP")
    wait_for(lambda: _http_get(a, "/healthz")[0] == 503, timeout=20, what="unhealthy without ZooKeeper")
    assert "match-set" in a.host.shell("iptables", "-w", "-S", "NETI-INPUT").stdout


def test_flush_removes_netis_rules_and_nothing_else(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=1), what="converged")
    a.host.stop_agent()
    a.host.shell("iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    result = a.host.run_agent("--flush")
    assert result.returncode == 0, result.stderr
    saved = a.host.shell("iptables-save").stdout
    assert "NETI" not in saved
    assert "--dport 9999 -j ACCEPT" in saved
    assert a.host.shell("ipset", "list", "-n").stdout.strip() == ""


def test_rules_broken_by_hand_are_found_and_repaired_at_the_next_resync(agent_fleet):
    a = agent_fleet.add(Side.EC2)
    b = agent_fleet.add(Side.EC2)
    wait_for(lambda: agent_fleet.converged(members=2), what="converged")
    a.host.shell("iptables", "-w", "-F", "NETI-INPUT")  # as an operator with iptables -F would
    a.host.shell("ipset", "flush", "ec2_whitelist")
    status = wait_for(lambda: (s := agent_fleet.status(a)) and s.drift_repairs == 1 and s, timeout=20,
                      what="drift found and repaired (resync_seconds=5)")
    assert status.drift_detected
    assert "match-set" in a.host.shell("iptables", "-w", "-S", "NETI-INPUT").stdout
    assert str(b.address) in a.host.shell("ipset", "list", "ec2_whitelist").stdout
    # The next full check is clean again: the host is no longer shown as drifting.
    wait_for(lambda: agent_fleet.status(a).drift_detected is False, timeout=20, what="a clean check")


def test_once_syncs_one_time_and_exits(agent_fleet):
    a = agent_fleet.add(Side.EC2, start=False)
    result = a.host.run_agent("--once")
    assert result.returncode == 0, result.stderr
    assert "applied 1 members" in result.stdout
    assert "match-set" in a.host.shell("iptables", "-w", "-S", "NETI-INPUT").stdout
    assert agent_fleet.status(a) is None  # the status was ephemeral: gone with the process


def test_an_original_neti_yml_with_empty_aws_keys_registers_the_agent(agent_fleet):
    """The seed's cookbook writes ``aws_key: ""`` on hosts with an instance role: the agent starts."""
    original = {"aws_key": "", "aws_secret_key": "", "reject_all": False,
                "zk_update_interval_path": "interval", "zk_max_change_threshold_path": "maxchange",
                "zk_iptoid_node": "ip-to-id",
                "zk_idtoip_node": "id-to-ip", "zk_ip_map_node": "ip-map"}
    a = agent_fleet.add(Side.EC2, start=False, **original)
    assert 'aws_key: \'\'' in a.host.config_path.read_text()
    result = a.host.run_agent("--once")
    assert result.returncode == 0, result.stderr
    overlay = agent_fleet.zk.get(f"{agent_fleet.paths.id_to_ip}/{a.instance_id}")[0].decode()
    assert agent_fleet.zk.get(f"{agent_fleet.paths.ip_to_id}/{overlay}")[0].decode() == a.instance_id
    assert "applied 1 members" in result.stdout


def test_a_failed_apply_is_reported_changes_nothing_and_is_retried(agent_fleet):
    a = agent_fleet.add(Side.EC2, start=False)
    # Someone else's set squats on Neti's set name with another type: the swap must fail.
    a.host.shell("ipset", "create", "ec2_whitelist", "hash:net")
    before = _kernel_state(a)
    a.host.start_agent()
    status = wait_for(lambda: (s := agent_fleet.status(a)) and s.error and s, timeout=20,
                      what="the failed apply reported")
    assert "apply failed, previous rules kept" in status.error
    assert _kernel_state(a) == before  # nothing half-applied
    a.host.shell("ipset", "destroy", "ec2_whitelist")  # the operator clears the conflict
    wait_for(lambda: (s := agent_fleet.status(a)) and s.error is None and s.ruleset_hash, timeout=20,
             what="the retry within seconds")
    assert "match-set ec2_whitelist" in a.host.shell("iptables", "-w", "-S", "NETI-INPUT").stdout
