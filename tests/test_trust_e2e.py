"""Real agents with TLS and their own credentials in namespaces, and securing a live open tree."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from kazoo.security import OPEN_ACL_UNSAFE

from neti_core.members import Side
from neti_core.operator_actions import FleetControl
from neti_core.zkclient import install_acl
from tests.fixtures.agent import connect_from, wait_for
from tests.fixtures.trust import SecureFleet

pytestmark = pytest.mark.netns


def acls(fleet: SecureFleet) -> dict[str, str]:
    """Every node's ACL, to prove a plan changes nothing."""
    client, found = fleet.operator, {}

    def walk(path: str) -> None:
        found[path] = repr(sorted(map(repr, client.get_acls(path)[0])))
        for child in client.get_children(path):
            walk(f"{path}/{child}")

    walk(fleet.prefix)
    return found


def rules(host) -> list[str]:
    save = host.host.shell("iptables-save").stdout.splitlines()
    return [line for line in save if not line.startswith("#")] + [host.host.shell("ipset", "save").stdout]


def test_an_agent_with_tls_and_credentials_converges_and_follows_a_console_flip(secure_fleet, tmp_path):
    secure_fleet.zk.secure(secure_fleet.prefix)
    install_acl(secure_fleet.operator, secure_fleet.fleet.paths)
    fleet = secure_fleet.fleet
    a, v = secure_fleet.add(Side.EC2), secure_fleet.add(Side.VPC)
    outsider = fleet.add_outsider("out")
    wait_for(lambda: fleet.converged(members=2), what="2 agents converged over TLS with credentials")
    assert connect_from(a.ns, fleet.status(v).overlay_ip) == str(a.public)
    assert "unauthenticated" not in fleet.log(a)

    control = FleetControl(secure_fleet.operator, fleet.paths, "alice")
    control.set_host_reject_all([v.instance_id], True, "drill")
    wait_for(lambda: (s := fleet.status(v)) and s.reject_all and s.deadman == "confirmed",
             timeout=30, what="reject_all applied and confirmed")
    assert connect_from(outsider.name, v.public) is None
    assert connect_from(a.ns, fleet.status(v).overlay_ip) == str(a.public)


def test_a_wrong_secret_is_one_line_exit_2_and_no_rule(secure_fleet, tmp_path):
    secure_fleet.zk.secure(secure_fleet.prefix)
    fleet = secure_fleet.fleet
    host = secure_fleet.add(Side.VPC, start=False)
    first = host.host.run_agent("--once")
    assert first.returncode == 0, first.stderr
    host.host.shell("iptables", "-F")
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-it\n")
    wrong.chmod(0o600)
    settings = yaml.safe_load(host.host.config_path.read_text())
    host.host.config_path.write_text(yaml.safe_dump(settings | {"zk_secret_file": str(wrong)}))
    before = rules(host)
    result = host.host.run_agent("--once")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"neti-agent: error: the secret of {host.instance_id} does not match the one that "
                      "owns its nodes in ZooKeeper (check zk_secret_file)"]
    assert rules(host) == before, "the rules of the first run are untouched"
    assert fleet.status(host) is None


def test_zk_secure_on_a_live_open_tree_plans_applies_and_is_idempotent(secure_fleet, tmp_path):
    fleet = secure_fleet.fleet
    hosts = [secure_fleet.add(Side.EC2), secure_fleet.add(Side.VPC)]
    wait_for(lambda: fleet.converged(members=2), what="agents converged on the open tree")
    config = secure_fleet.operator_config_file(tmp_path / "operator.yml")
    principals = secure_fleet.principals_file(tmp_path / "principals")
    neti = ["neti", "zk", "secure", "-c", str(config), "--principals", str(principals)]

    before = acls(secure_fleet)
    plan = subprocess.run(neti, capture_output=True, text=True, timeout=60, check=False)
    assert plan.returncode == 0, plan.stderr
    assert "would set ACL of" in plan.stdout and "run again with --apply" in plan.stdout
    assert acls(secure_fleet) == before, "the plan changed nothing"

    applied = subprocess.run([*neti, "--apply"], capture_output=True, text=True, timeout=120, check=False)
    assert applied.returncode == 0, applied.stderr
    assert acls(secure_fleet) != before
    install_acl(secure_fleet.operator, fleet.paths)
    control = FleetControl(secure_fleet.operator, fleet.paths, "alice")
    control.set_host_reject_all([hosts[0].instance_id], True, "after securing")
    wait_for(lambda: (s := fleet.status(hosts[0])) and s.reject_all and s.error is None, timeout=30,
             what="the running agent follows a flip on the secured tree")
    wait_for(lambda: fleet.converged(members=2), what="statuses stay in sync")
    assert all(h.host.process.poll() is None for h in hosts), "the agents kept running"

    again = subprocess.run(neti, capture_output=True, text=True, timeout=60, check=False)
    assert f"{fleet.paths.prefix}: nothing to change" in again.stdout, again.stdout

    # The rollback: every node back to world:anyone, and the agents still in sync.
    rollback = ["neti", "zk", "open", "-c", str(config), "--apply"]
    opened = subprocess.run(rollback, capture_output=True, text=True, timeout=120, check=False)
    assert opened.returncode == 0, opened.stderr
    assert set(acls(secure_fleet).values()) == {repr(sorted(map(repr, OPEN_ACL_UNSAFE)))}
    control.set_host_reject_all([hosts[0].instance_id], False, "rolled back")
    wait_for(lambda: fleet.status(hosts[0]).reject_all is False, what="still following after the rollback")
    wait_for(lambda: fleet.converged(members=2), what="statuses in sync after the rollback")
