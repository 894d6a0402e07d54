"""Choosing the backend: nft or legacy detection (Felix's way), make_backend, and the recording backend."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from neti_core.config import NetiConfig
from neti_core.firewall.base import BackendConflictError, FirewallUnavailableError, make_backend
from neti_core.firewall.detect import decide, detect, native_nft, system_mode
from neti_core.firewall.recording import RecordingBackend
from neti_core.lab.netns import Namespace
from neti_core.members import Member, Side
from neti_core.rules import build_ruleset

A = IPv4Address
FLEET = [Member(A(f"54.0.0.{i}"), A(f"10.0.0.{i}"), A(f"192.168.0.{i}"), Side.EC2) for i in range(1, 6)]
RS0 = build_ruleset(Side.EC2, FLEET, NetiConfig(ssh_whitelist=(IPv4Network("10.9.0.0/16"),)), True)
RS1 = build_ruleset(Side.EC2, FLEET[1:], NetiConfig(ssh_whitelist=(IPv4Network("10.9.0.0/16"),)), False)


@pytest.mark.parametrize(("nft", "legacy", "system", "mode", "why"), [
    (0, 0, "nft", "nft", "no rules yet; iptables is nft"),
    (0, 0, "legacy", "legacy", "no rules yet; iptables is legacy"),
    (0, 0, None, "nft", "no rules yet; iptables mode unknown, nft by default"),
    (12, 0, "legacy", "nft", "12 rules in nft, none in legacy"),
    (0, 7, "nft", "legacy", "7 rules in legacy, none in nft"),
    (3, 40, "nft", "legacy", "rules in both (3 nft, 40 legacy): following the larger"),
    (40, 3, "legacy", "nft", "rules in both (40 nft, 3 legacy): following the larger"),
    (5, 5, "legacy", "legacy", "equal rule counts in both; iptables is legacy"),
    (None, 9, "nft", "legacy", "only iptables-legacy is installed"),
    (9, None, "legacy", "nft", "only iptables-nft is installed"),
])
def test_decide_follows_where_the_rules_are_then_the_system_default(nft, legacy, system, mode, why) -> None:
    detection = decide(nft, legacy, system)
    assert (detection.mode, detection.reason) == (mode, why)


def test_decide_without_any_iptables_is_a_clear_error() -> None:
    with pytest.raises(FirewallUnavailableError, match="neither"):
        decide(None, None, None)


@pytest.mark.netns
def test_detect_in_a_namespace_follows_its_rules(fw_ns: Namespace) -> None:
    fresh = fw_ns.call(detect)
    assert fresh.mode == system_mode() and (fresh.nft_rules, fresh.legacy_rules) == (0, 0)
    assert fw_ns.run(["cat", "/proc/net/ip_tables_names"]).stdout == ""  # detection created nothing
    fw_ns.run(["iptables-legacy", "-A", "INPUT", "-s", "192.0.2.1", "-j", "DROP"])
    assert fw_ns.call(detect).mode == "legacy"
    # Another tool's legacy rules do not keep auto off nft (Neti's own table runs beside them)...
    assert type(fw_ns.call(make_backend, NetiConfig())).__name__ == "NftBackend"
    # ... but where nft cannot be used, auto follows the legacy rules.
    assert type(fw_ns.call(make_backend, NetiConfig(firewall_backend="iptc"))).__name__ == "IptcBackend"
    restore = fw_ns.call(make_backend, NetiConfig(firewall_backend="restore"))
    assert restore.describe() == "restore (iptables-legacy)"  # never splits across flavours


@pytest.mark.netns
def test_auto_on_an_nft_host_is_nft_restore_follows_the_flavour_and_iptc_is_refused(
        fw_ns: Namespace) -> None:
    fw_ns.run(["iptables-nft", "-A", "INPUT", "-s", "192.0.2.1", "-j", "DROP"])
    backend = fw_ns.call(make_backend, NetiConfig())
    assert backend.describe() == "nft (table ip neti)"
    assert backend.detection.native_reason == "the kernel has nf_tables and nft is installed"
    restore = fw_ns.call(make_backend, NetiConfig(firewall_backend="restore"))
    assert restore.describe() == "restore (iptables-nft)"
    assert restore.detection.reason == "1 rules in nft, none in legacy"
    with pytest.raises(BackendConflictError, match="legacy tables"):
        fw_ns.call(make_backend, NetiConfig(firewall_backend="iptc"))


@pytest.mark.netns
def test_make_backend_with_netns_runs_everything_inside(fw_ns: Namespace) -> None:
    backend = make_backend(NetiConfig(), netns=fw_ns.name)
    try:
        backend.apply(RS0)
        backend.verify(RS0)
    finally:
        backend.close()
    assert "jump NETI-INPUT" in fw_ns.run(["nft", "list", "chain", "ip", "neti", "INPUT"]).stdout


@pytest.mark.parametrize(("works", "in_legacy", "native", "why"), [
    (None, False, True, "the kernel has nf_tables and nft is installed"),
    (None, True, False, "Neti's chains are in legacy iptables"),
    ("nft is not installed", False, False, "nft is not installed"),
    ("nft list tables: Operation not supported", False, False, "nft list tables: Operation not supported"),
])
def test_auto_takes_nft_only_where_it_runs_and_neti_is_not_in_legacy(works, in_legacy, native, why) -> None:
    assert native_nft(works, in_legacy) == (native, why)


def test_recording_backend_records_what_a_kernel_backend_would_run(tmp_path: Path) -> None:
    log = tmp_path / "fw.jsonl"
    backend = make_backend(NetiConfig(firewall_backend="recording"), record_path=log)
    assert isinstance(backend, RecordingBackend) and backend.describe().startswith("recording")
    assert backend.apply(RS0).mode == "full"
    assert backend.apply(RS1).mode == "delta"
    assert backend.apply(RS1).mode == "noop"
    assert not backend.drift(RS1)
    full, delta = backend.records
    assert "-I INPUT 1 -j NETI-INPUT" in full.iptables and "swap ec2_whitelist" in full.ipset
    assert delta.iptables.startswith("*filter\n:NETI-INPUT - [0:0]\n")
    assert delta.ipset == "del ec2_whitelist 10.0.0.1\n"
    assert [json.loads(line)["operation"] for line in log.read_text().splitlines()] == ["full", "delta"]


def test_recording_backend_simulates_drift_repair_plan_and_flush() -> None:
    backend = RecordingBackend("ec2_whitelist")
    backend.apply(RS0)
    backend.state.chains[("filter", "NETI-FAILSAFE")] = []
    backend.state.ipset = backend.state.ipset - {"10.0.0.2"}
    assert str(backend.drift(RS0)).splitlines() == [
        "ipset ec2_whitelist: 1 members missing: 10.0.0.2",
        "filter NETI-FAILSAFE: 1 rules missing from the end, first "
        "'-s 10.9.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT'",
    ]
    assert "2 difference(s) would be fixed" in backend.plan(RS0)
    assert backend.repair(RS0).mode == "repair"
    assert not backend.drift(RS0)
    backend.flush()
    assert backend.records[-1].operation == "flush"
    assert "-X NETI-INPUT" in backend.records[-1].iptables
    assert str(backend.drift(RS0)).startswith("ipset ec2_whitelist: missing")
    assert backend.apply(RS0).mode == "full"  # after a flush the next apply starts over
