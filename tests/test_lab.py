"""The lab end to end: `neti lab up` converges, lab hosts reach each other through overlay IPs
across sides, and `neti lab down` leaves nothing behind, even after the daemon crashed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError

from neti_core.lab.state import alive, read_state
from tests.fixtures.agent import ECHO_PORT, connect_from, wait_for

pytestmark = pytest.mark.netns
NETI = str(Path(sys.executable).parent / "neti")


@pytest.fixture
def lab_env(as_root, tmp_path):
    prefix = f"nlt{secrets.token_hex(2)}"
    env = {**os.environ, "NETI_LAB_DIR": str(tmp_path / "lab"), "NETI_LAB_NETNS_PREFIX": prefix}
    yield env, prefix, tmp_path / "lab"
    subprocess.run([NETI, "lab", "down"], env=env, capture_output=True, timeout=120, check=False)


def _neti(env, *args, timeout=300):
    return subprocess.run([NETI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _namespaces(prefix: str) -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in names.splitlines() if line.startswith(prefix + "-")]


def _anonymous_client_can_do_nothing(directory: Path, hosts: str | None = None) -> None:
    """The lab is secured by default: without credentials a client (even over TLS with the lab's
    CA) gets a session and nothing else, in the prefix or outside it. ``hosts``: one member."""
    state = read_state(directory)
    assert state is not None and state.secured
    hosts = hosts or f"127.0.0.1:{state.zk_port}"
    plain = KazooClient(hosts=hosts, connection_retry={"max_tries": 1})
    with pytest.raises(KazooTimeoutError):
        plain.start(timeout=3)  # a plain-text client to the TLS port is dropped
    plain.stop()
    plain.close()
    anonymous = KazooClient(hosts=hosts, use_ssl=True, ca=str(directory / "trust" / "pki" / "ca.pem"))
    anonymous.start(timeout=15)
    try:
        host, maxchange = state.hosts[0]["instance_id"], "/neti/maxchange"
        attempts = {
            "read members": lambda: anonymous.get_children("/neti/ip-map"),
            "false member": lambda: anonymous.create(f"/neti/ip-map/{'0' * 32}-1.2.3.4|10.0.0.9|1.1.1.1|0"),
            "fleet default": lambda: anonymous.create("/neti/control/defaults", b'{"reject_all": false}'),
            "audit": lambda: anonymous.create("/neti/audit/entry-", b"{}", sequence=True),
            "maxchange": lambda: (anonymous.set(maxchange, b"9999") if anonymous.exists(maxchange)
                                  else anonymous.create(maxchange, b"9999")),  # absent means 10%
            "delete a host's pair": lambda: anonymous.delete(f"/neti/id-to-ip/{host}"),
            "outside the prefix": lambda: anonymous.create("/probe", b"x"),
        }
        for what, attempt in attempts.items():
            with pytest.raises(NoAuthError):
                attempt()
                pytest.fail(f"an anonymous client could: {what}")
    finally:
        anonymous.stop()
        anonymous.close()


def test_lab_up_converges_connects_across_sides_and_down_leaves_nothing(lab_env):
    env, prefix, directory = lab_env
    up = _neti(env, "lab", "up", "--hosts", "4", "--vpc", "50", "--unregistered", "1", "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "4 agents all in sync" in up.stdout
    assert f"agents in sync [{'█' * 24}] 4/4" in up.stdout, up.stdout  # the progress it showed
    # It says what it started, by the names the walkthrough uses.
    assert "launched 1 instances without Neti (legacy-005)" in up.stdout
    assert re.search(r"security groups: lab-fleet sg-\w+ and lab-fleet-vpc sg-\w+ \(the fleet\)", up.stdout)
    assert f"console: {Path(sys.executable).parent / 'neti-console'} -c " in up.stdout \
        or "console: neti-console -c " in up.stdout
    status = json.loads(_neti(env, "lab", "status", "--json").stdout)
    _security_group_commands_work(env, status)
    assert (status["agents"], status["in_sync"], status["instances"], status["mode"]) == (4, 4, 5, "netns")
    hosts = {h["name"]: h for h in status["hosts"]}
    assert hosts["legacy-005"]["agent"] is False
    assert list(hosts) == ["app-001", "app-002", "app-003", "app-004", "legacy-005"]  # in name order
    # The lab's hosts run the native nft backend (auto on this kernel): Neti's own table.
    assert {h["backend"] for h in status["hosts"] if h["agent"]} == {"nft"}
    ec2 = next(h for h in status["hosts"] if h["agent"] and h["side"] == "ec2")
    vpc = next(h for h in status["hosts"] if h["agent"] and h["side"] == "vpc")
    echo = subprocess.Popen(["ip", "netns", "exec", vpc["netns"], sys.executable, "-c",
                             "import socket\ns=socket.socket();s.setsockopt(1,2,1);"
                             f"s.bind(('0.0.0.0',{ECHO_PORT}));s.listen()\n"
                             "while True:\n c,a=s.accept();c.send(a[0].encode());c.close()"])
    try:
        # EC2 → VPC through the overlay IP: DNAT to the public address; the VPC host sees ours.
        wait_for(lambda: connect_from(vpc["netns"], "127.0.0.1"), timeout=15, what="the listener")
        assert connect_from(ec2["netns"], vpc["overlay"], timeout=2) == ec2["public"]
        # The private ranges do not route to each other, as on AWS.
        assert connect_from(ec2["netns"], vpc["private"], timeout=1) is None
    finally:
        echo.kill()
        echo.wait()
    _anonymous_client_can_do_nothing(directory)
    # The console, attached to the lab, shows the fleet as it is.
    asyncio.run(_console_shows(Path(status["console_config"]), status["hosts"]))
    # Installing Neti on the unregistered instance brings it into the fleet.
    adopt = _neti(env, "lab", "adopt", "legacy-005")
    assert adopt.returncode == 0, adopt.stderr
    wait_for(lambda: (s := json.loads(_neti(env, "lab", "status", "--json").stdout))["in_sync"] == 5 and s,
             timeout=30, what="legacy-005 in sync")
    state = read_state(directory)
    pids = [state.pid, state.zk_pid, state.moto_pid, *(h["pid"] for h in state.hosts if h["pid"])]
    down = _neti(env, "lab", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "stopping 5 agents with their metadata services and ZooKeeper portals, ZooKeeper" in down.stdout
    assert _namespaces(prefix) == []
    assert not any(alive(pid) for pid in pids)
    assert not directory.exists()


def _security_group_commands_work(env, status: dict) -> None:
    """The last phases can be rehearsed: the commands `lab status` prints run as printed."""
    text = _neti(env, "lab", "status").stdout
    groups = status["security_groups"]
    assert set(groups) == {"lab-fleet", "lab-fleet-vpc", "lab-zk", "lab-zkneti"}
    for prefix in ("open the fleet to AWS's ranges: ", "ZooKeeper and its proxies: "):
        command = next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix):]
        plan = subprocess.run(command.split(), env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert plan.returncode == 0, plan.stderr
        # aws-ranges: 4 ranges (54.214/16 lies in 54.208/13) x tcp/udp x 2 groups;
        # sync-zk-proxy: each side from the other one.
        expected = "plan: 16 to authorize" if "aws-ranges" in command else "plan: 2 to authorize"
        assert expected in plan.stdout, plan.stdout


async def _console_shows(config_path: Path, hosts: list[dict]) -> None:
    from neti_core.config import load_config
    from neti_tui.app import NetiConsoleApp
    from tests.fixtures.console import cell, wait_until

    app = NetiConsoleApp(load_config(config_path), operator="tester")
    async with app.run_test(size=(170, 45)) as pilot:
        registered = [h for h in hosts if h["agent"]]
        await wait_until(pilot, lambda: app.screen.table.row_count == len(hosts), timeout=20,
                         what="every lab instance in the fleet table")
        await wait_until(pilot, lambda: all(cell(app, h["instance_id"], "state") == "in sync"
                                            for h in registered), timeout=20, what="members in sync")
        assert cell(app, hosts[-1]["instance_id"], "state") == "unregistered"
        assert {cell(app, h["instance_id"], "overlay") for h in registered} == \
            {h["overlay"] for h in registered}


async def _console_says_recording(config_path: Path) -> None:
    from neti_core.config import load_config
    from neti_tui.app import NetiConsoleApp
    from tests.fixtures.console import wait_until

    app = NetiConsoleApp(load_config(config_path), operator="tester")
    async with app.run_test(size=(170, 45)) as pilot:
        await wait_until(pilot, lambda: "2 agents only record rules" in str(
            app.screen.query_one("#header").render()), timeout=20, what="the recording notice")


def test_down_cleans_up_after_the_lab_daemon_crashed(lab_env):
    env, prefix, directory = lab_env
    up = _neti(env, "lab", "up", "--hosts", "2", "--vpc", "50", "--unregistered", "0", "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr
    again = _neti(env, "lab", "up", "--no-console")  # `make demo` twice: the running lab is kept
    assert again.returncode == 0 and "already running" in again.stdout
    state = read_state(directory)
    os.kill(state.pid, signal.SIGKILL)
    pids = [state.zk_pid, state.moto_pid, *(h["pid"] for h in state.hosts if h["pid"])]
    assert any(alive(pid) for pid in pids) and _namespaces(prefix)
    down = _neti(env, "lab", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "removed namespace" in down.stdout
    assert _namespaces(prefix) == []
    assert not any(alive(pid) for pid in pids)
    assert not directory.exists()


def test_lab_up_rejects_a_bad_fleet_with_one_line(lab_env):
    env, _, _ = lab_env
    result = _neti(env, "lab", "up", "--hosts", "4", "--vpc", "150", "--no-console")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--vpc" in result.stderr


def test_without_namespaces_the_agents_record_and_still_converge(lab_env):
    """What a user without root gets: real agents and ZooKeeper, a recording backend, no kernel."""
    env, prefix, directory = lab_env
    up = _neti(env, "lab", "up", "--hosts", "2", "--vpc", "50", "--unregistered", "0", "--no-console",
               "--no-netns")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "agents record their rules" in up.stdout
    status = json.loads(_neti(env, "lab", "status", "--json").stdout)
    assert (status["mode"], status["in_sync"]) == ("recording", 2)
    assert {h["backend"] for h in status["hosts"]} == {"recording"}
    asyncio.run(_console_says_recording(Path(status["console_config"])))
    assert _namespaces(prefix) == []
    assert _neti(env, "lab", "down").returncode == 0
    assert not directory.exists()


def test_fault_drills_zookeeper_outage_cut_and_churn(lab_env):
    env, _, _ = lab_env
    up = _neti(env, "lab", "up", "--hosts", "3", "--vpc", "34", "--unregistered", "0", "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr

    def status() -> dict:
        return json.loads(_neti(env, "lab", "status", "--json").stdout)

    names = sorted(h["name"] for h in status()["hosts"])
    assert _neti(env, "lab", "zk", "stop").returncode == 0
    assert _neti(env, "lab", "status").returncode == 1  # no ZooKeeper: nothing can be shown in sync
    assert _neti(env, "lab", "zk", "start").returncode == 0
    wait_for(lambda: status()["in_sync"] == 3, timeout=60, what="every agent back after the outage")

    cut = _neti(env, "lab", "cut", names[0])
    assert cut.returncode == 0 and "cut off" in cut.stdout
    assert _neti(env, "lab", "heal", names[0]).returncode == 0
    bad = _neti(env, "lab", "cut", "no-such-host")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1

    churn = _neti(env, "lab", "churn", "--count", "1", "--rate", "5")
    assert churn.returncode == 0, churn.stderr
    after = wait_for(lambda: (s := status())["in_sync"] == 3 and s, timeout=60, what="churned fleet in sync")
    new_names = sorted(h["name"] for h in after["hosts"])
    assert len(set(new_names) - set(names)) == 1 and len(new_names) == 3


def test_down_without_a_lab_of_its_own_never_removes_a_running_labs_namespaces(lab_env):
    """`neti lab down` for a state directory with no lab removes only idle namespaces of its own
    prefix: a running lab's (processes inside) and another prefix's stay. It once tore down a lab in
    the middle of a soak because a test's clean-up ran `down` twice."""
    env, prefix, _ = lab_env
    busy, idle, default_lab = f"{prefix}-busy", f"{prefix}-idle", f"nlab-{prefix}-idle"
    for name in (busy, idle, default_lab):
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    sleeper = subprocess.Popen(["ip", "netns", "exec", busy, "sleep", "120"])
    try:
        def running_inside() -> str:
            return subprocess.run(["ip", "netns", "pids", busy], capture_output=True, text=True,
                                  timeout=10).stdout.strip()

        wait_for(running_inside, timeout=10, what="a process in the namespace")
        down = _neti(env, "lab", "down")
        assert down.returncode == 0, down.stderr
        assert f"removed namespace {idle}" in down.stdout
        assert _namespaces(prefix) == [busy]
        assert default_lab in _namespaces("nlab"), "another lab's prefix is not this one's"
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
        for name in (busy, idle, default_lab):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
