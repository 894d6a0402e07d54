"""Every kernel backend against real iptables and ipset, each test in its own fresh namespace.

What an operator would check with ``iptables-save`` and ``ipset save``: Neti's chains hold exactly
the RuleSet, other tools' rules survive every operation, drift is found and repaired, a plan
changes nothing, a refused apply leaves the previous rules, a flush leaves the tables as they were
before Neti came.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from neti_core.config import NetiConfig, PortRange
from neti_core.firewall.base import FirewallApplyError
from neti_core.lab.netns import Namespace
from neti_core.members import Member, Side
from neti_core.rules import FAILSAFE_CHAIN, INPUT_CHAIN, Chain, Rule, RuleSet, build_ruleset
from tests.fixtures.netns import KERNEL_BACKENDS, kernel_snapshot, make_backend_in

pytestmark = pytest.mark.netns
REPO = Path(__file__).resolve().parent.parent
CONFIG = NetiConfig(ssh_whitelist=(IPv4Network("10.99.0.0/16"),), open_ports=(PortRange(80, 80),),
                    vpc_private_range=IPv4Network("172.31.0.0/16"))
FOREIGN = """*filter
:FOREIGN - [0:0]
-A INPUT -s 192.0.2.1/32 -j DROP
-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT
-A OUTPUT -j FOREIGN
-A FOREIGN -j RETURN
COMMIT
*nat
-A OUTPUT -d 192.0.2.55/32 -j DNAT --to-destination 192.0.2.66
-A POSTROUTING -o lo -j RETURN
COMMIT
"""


def fleet(count: int, first: int = 1) -> list[Member]:
    return [Member(IPv4Address(f"54.0.0.{i}"), IPv4Address(f"10.0.0.{i}"), IPv4Address(f"192.168.0.{i}"),
                   Side.EC2 if i % 3 else Side.VPC) for i in range(first, first + count)]


RS0 = build_ruleset(Side.EC2, fleet(20), CONFIG, True)
RS1 = build_ruleset(Side.EC2, fleet(20, first=2), CONFIG, False)  # one leaves, one joins, open up


@pytest.fixture(params=sorted(KERNEL_BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def tool(kind: str, suffix: str = "") -> str:
    return f"iptables-{KERNEL_BACKENDS[kind]}{suffix}"


def neti_lines(ns: Namespace, kind: str) -> list[str]:
    """iptables-save lines that belong to Neti (its chains and the jumps into them)."""
    lines = ns.run([tool(kind, "-save")]).stdout.splitlines()
    return [line for line in lines if "NETI-" in line]


def set_members(ns: Namespace, name: str = "ec2_whitelist") -> set[str]:
    out = ns.run(["ipset", "save", name]).stdout
    return {line.split()[2] for line in out.splitlines() if line.startswith("add ")}


def install_foreign(ns: Namespace, kind: str) -> None:
    ns.run([tool(kind, "-restore"), "--noflush"], input=FOREIGN)
    ns.run(["ipset", "restore"], input="create foreign_set hash:net\nadd foreign_set 192.0.2.0/24\n")


def test_apply_installs_exactly_the_ruleset_with_the_failsafe_first(fw_ns: Namespace, kind: str) -> None:
    backend = make_backend_in(kind, fw_ns)
    result = backend.apply(RS0)
    assert result.mode == "full" and result.ruleset_hash == RS0.hash
    backend.verify(RS0)
    lines = neti_lines(fw_ns, kind)
    neti_input = [
        "-A NETI-INPUT -j NETI-FAILSAFE",
        "-A NETI-INPUT -i lo -j ACCEPT",
        "-A NETI-INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j DROP",
        "-A NETI-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A NETI-INPUT -m set --match-set ec2_whitelist src -j ACCEPT",
        "-A NETI-INPUT -p tcp -m tcp --dport 80 -j ACCEPT",
        "-A NETI-INPUT -p udp -m udp --dport 80 -j ACCEPT",
        "-A NETI-INPUT -j DROP",
    ]
    expected = [
        ":NETI-FAILSAFE - [0:0]", ":NETI-INPUT - [0:0]", ":NETI-DNAT - [0:0]",
        "-A INPUT -j NETI-INPUT",
        "-A NETI-FAILSAFE -s 10.99.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT",
        *neti_input,
        "-A OUTPUT -d 192.168.0.0/16 -j NETI-DNAT",
        *[f"-A NETI-DNAT {spec}" for spec in RS0.dnat_specs],
    ]
    assert sorted(lines) == sorted(expected)  # (legacy and nft print the tables in other orders)
    assert [line for line in lines if line.startswith("-A NETI-INPUT")] == neti_input
    assert set_members(fw_ns) == {str(ip) for ip in RS0.members}
    assert "-A NETI-DNAT -d 192.168.0.3/32 -j DNAT --to-destination 54.0.0.3" in lines  # VPC member
    assert "-A NETI-DNAT -d 192.168.0.4/32 -j DNAT --to-destination 10.0.0.4" in lines  # same side
    assert "ec2_whitelist-stage" not in fw_ns.run(["ipset", "list", "-n"]).stdout


def test_other_tools_rules_survive_every_operation_and_flush_restores_the_tables(
        fw_ns: Namespace, kind: str) -> None:
    flavour = KERNEL_BACKENDS[kind]
    install_foreign(fw_ns, kind)
    before = kernel_snapshot(fw_ns, flavour)
    backend = make_backend_in(kind, fw_ns)
    foreign = [line for line in before["rules"].splitlines() if line.startswith("-A")]
    assert len(foreign) == 6

    def foreign_intact() -> None:
        now = fw_ns.run([tool(kind, "-save")]).stdout.splitlines()
        assert [line for line in now if line.startswith("-A") and "NETI-" not in line] == foreign
        assert "add foreign_set 192.0.2.0/24" in fw_ns.run(["ipset", "save"]).stdout

    steps = (lambda: backend.apply(RS0), lambda: backend.apply(RS1),
             lambda: backend.apply(RS1, full=True), lambda: backend.repair(RS0), lambda: backend.plan(RS1))
    for step in steps:
        step()
        foreign_intact()
    assert neti_lines(fw_ns, kind)[0] in (":NETI-DNAT - [0:0]", ":NETI-FAILSAFE - [0:0]")
    backend.flush()
    assert kernel_snapshot(fw_ns, flavour) == before
    backend.flush()  # idempotent: nothing of Neti's left to remove
    assert kernel_snapshot(fw_ns, flavour) == before


def test_failsafe_chain_survives_every_update(fw_ns: Namespace, kind: str) -> None:
    backend = make_backend_in(kind, fw_ns)
    failsafe = "-A NETI-FAILSAFE -s 10.99.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT"
    for desired in (RS0, RS1, RS0, build_ruleset(Side.VPC, fleet(3), CONFIG, True)):
        backend.apply(desired)
        lines = neti_lines(fw_ns, kind)
        assert failsafe in lines
        assert next(line for line in lines if line.startswith("-A NETI-INPUT")) == \
            "-A NETI-INPUT -j NETI-FAILSAFE"
        assert [line for line in lines if line.startswith("-A INPUT")] == ["-A INPUT -j NETI-INPUT"]
        backend.verify(desired)


def test_delta_touches_only_what_changed(fw_ns: Namespace, kind: str) -> None:
    backend = make_backend_in(kind, fw_ns)
    backend.apply(RS0)
    result = backend.apply(RS1)
    assert result.mode == "delta"
    assert result.summary == ("ipset ec2_whitelist: +1 -1", "filter NETI-INPUT: rewrite (7 rules)",
                              "nat NETI-DNAT: +1 -1")
    backend.verify(RS1)
    assert backend.apply(RS1).mode == "noop"
    assert set_members(fw_ns) == {str(ip) for ip in RS1.members}


def test_drift_is_reported_and_repaired(fw_ns: Namespace, kind: str) -> None:
    backend = make_backend_in(kind, fw_ns)
    backend.apply(RS0)
    assert not backend.drift(RS0)
    ipt = tool(kind)
    fw_ns.sh(f"{ipt} -F NETI-FAILSAFE; {ipt} -D INPUT -j NETI-INPUT; "
             f"{ipt} -t nat -D NETI-DNAT -d 192.168.0.4/32 -j DNAT --to-destination 10.0.0.4; "
             f"{ipt} -t nat -A NETI-DNAT -d 192.168.7.7/32 -j DNAT --to-destination 10.7.7.7; "
             "ipset del ec2_whitelist 10.0.0.4; ipset add ec2_whitelist 10.6.6.6")
    drift = backend.drift(RS0)
    assert str(drift).splitlines() == [
        "ipset ec2_whitelist: 1 members missing: 10.0.0.4",
        "ipset ec2_whitelist: 1 unexpected members: 10.6.6.6",
        "filter NETI-FAILSAFE: 1 rules missing from the end, first "
        "'-s 10.99.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT'",
        "nat NETI-DNAT: 1 rules missing: -d 192.168.0.4/32 -j DNAT --to-destination 10.0.0.4",
        "nat NETI-DNAT: 1 unexpected rules: -d 192.168.7.7/32 -j DNAT --to-destination 10.7.7.7",
        "filter INPUT: jump missing: '-j NETI-INPUT'",
    ]
    result = backend.repair(RS0)
    assert result.mode == "repair" and result.drift == drift
    assert not backend.drift(RS0)
    assert [line for line in neti_lines(fw_ns, kind) if line.startswith("-A INPUT")] == [
        "-A INPUT -j NETI-INPUT"]


def test_delta_falls_back_to_a_full_sync_when_the_kernel_changed_behind_its_back(
        fw_ns: Namespace, kind: str) -> None:
    backend = make_backend_in(kind, fw_ns)
    backend.apply(RS0)
    fw_ns.run([tool(kind), "-t", "nat", "-F", "NETI-DNAT"])  # the delete in the delta cannot match
    result = backend.apply(RS1)
    assert result.mode == "full-after-failed-delta"
    backend.verify(RS1)


def broken(ruleset: RuleSet) -> RuleSet:
    """RuleSet whose filter chain the kernel refuses (jump to a chain that does not exist)."""
    chains = tuple(Chain(c.table, c.name, (*c.rules, Rule(target="NO-SUCH-CHAIN")))
                   if c.name == INPUT_CHAIN else c for c in ruleset.filter_chains)
    return replace(ruleset, filter_chains=chains)


def test_a_refused_apply_raises_and_leaves_the_previous_rules(fw_ns: Namespace, kind: str) -> None:
    flavour = KERNEL_BACKENDS[kind]
    backend = make_backend_in(kind, fw_ns)
    backend.apply(RS0)
    before = kernel_snapshot(fw_ns, flavour)
    with pytest.raises(FirewallApplyError):
        backend.apply(broken(RS1))  # a delta, then the fallback full sync: both refused
    assert kernel_snapshot(fw_ns, flavour) == before
    assert backend.applied is None
    with pytest.raises(FirewallApplyError):
        backend.apply(broken(RS1))  # a first (full) apply refused
    assert kernel_snapshot(fw_ns, flavour) == before
    backend.apply(RS1)
    backend.verify(RS1)


def test_a_set_swap_refused_leaves_neither_rules_nor_set_changed(fw_ns: Namespace, kind: str) -> None:
    """A foreign set of another type squats on Neti's set name: the swap is refused. It must be
    refused before the iptables commit, or new rules would be live over the wrong set."""
    flavour = KERNEL_BACKENDS[kind]
    fw_ns.run(["ipset", "create", "ec2_whitelist", "hash:net"])
    for table in ("filter", "nat"):  # reading a legacy table creates it (empty): not a change
        fw_ns.run([tool(kind), "-w", "-t", table, "-S"])
    before = kernel_snapshot(fw_ns, flavour)
    backend = make_backend_in(kind, fw_ns)
    with pytest.raises(FirewallApplyError):
        backend.apply(RS0)
    assert kernel_snapshot(fw_ns, flavour) == before
    fw_ns.run(["ipset", "destroy", "ec2_whitelist"])
    backend.apply(RS0)
    backend.verify(RS0)


def test_plan_prints_the_changes_and_leaves_the_kernel_byte_identical(fw_ns: Namespace, kind: str) -> None:
    flavour = KERNEL_BACKENDS[kind]
    backend = make_backend_in(kind, fw_ns)
    empty = kernel_snapshot(fw_ns, flavour)
    plan = backend.plan(RS0, commands=True)
    assert "ipset ec2_whitelist: missing" in plan and "-I INPUT 1 -j NETI-INPUT" in plan
    assert kernel_snapshot(fw_ns, flavour) == empty
    backend.apply(RS0)
    before = kernel_snapshot(fw_ns, flavour)
    plan = backend.plan(RS1, commands=True)
    assert "ipset ec2_whitelist: 1 members missing: 54.0.0.21" in plan
    assert "filter NETI-INPUT: 1 unexpected rules at the end, first '-j DROP'" in plan
    # The original dry-run swapped the live set before printing; this one must not even stage one.
    assert kernel_snapshot(fw_ns, flavour) == before
    assert backend.plan(RS0).splitlines()[1] == "  in sync: nothing would change"


def test_backend_in_a_process_started_with_ip_netns_exec(fw_ns: Namespace, tmp_path: Path) -> None:
    """How the agent runs: the whole process inside the namespace, backend chosen by make_backend."""
    script = tmp_path / "agent_like.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from neti_core.config import NetiConfig\n"
        "from neti_core.firewall.base import make_backend\n"
        "from neti_core.members import Member, Side\n"
        "from neti_core.rules import build_ruleset\n"
        "from ipaddress import IPv4Address as A\n"
        "backend = make_backend(NetiConfig(firewall_backend=sys.argv[1]))\n"
        "m = Member(A('54.0.0.1'), A('10.0.0.1'), A('192.168.0.1'), Side.EC2)\n"
        "rs = build_ruleset(Side.EC2, [m], NetiConfig(), True)\n"
        "backend.apply(rs); backend.verify(rs)\n"
        "print(backend.describe())\n")
    out = fw_ns.run([sys.executable, str(script), "restore"]).stdout
    assert out.strip() == "restore (iptables-nft)"  # Debian 12: iptables is nft, no rules yet
    assert "-A INPUT -j NETI-INPUT" in fw_ns.run(["iptables-nft-save"]).stdout


def test_iptc_takes_the_xtables_lock(fw_ns: Namespace, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """python-iptables ignores the lock iptables-legacy -w honours; the backend must not."""
    lock = tmp_path / "xtables.lock"
    monkeypatch.setenv("XTABLES_LOCKFILE", str(lock))
    backend = make_backend_in("iptc", fw_ns)
    backend.backend.wait_seconds = 0.3
    backend.apply(RS0)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a concurrent iptables-legacy would
        with pytest.raises(FirewallApplyError, match="xtables lock"):
            backend.apply(RS1)
    backend.apply(RS1)
    backend.verify(RS1)


def test_restore_waits_for_the_xtables_lock_instead_of_failing(fw_ns: Namespace) -> None:
    """iptables-legacy-restore -w: a briefly held lock delays the apply, it does not break it."""
    backend = make_backend_in("restore-legacy", fw_ns)
    holder = subprocess.Popen(["flock", os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock"),
                               "sleep", "0.3"])
    try:
        backend.apply(RS0)
    finally:
        holder.wait(timeout=10)
    backend.verify(RS0)
    assert FAILSAFE_CHAIN in "\n".join(neti_lines(fw_ns, "restore-legacy"))
