"""The lab on a 3-node ZooKeeper ensemble: leader kill during churn, rolling restart, a follower
cut off, each under the chaos checker's real-traffic probes, with 0 violations (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from neti_core.config import ZkPaths
from neti_core.lab.chaos_probe import Checker
from neti_core.lab.cli import lab_client
from neti_core.lab.state import read_state
from neti_core.lab.zkserver import ServerTls, four_letter_word
from tests.fixtures.agent import wait_for
from tests.test_lab import _anonymous_client_can_do_nothing, _neti, lab_env  # noqa: F401 - the fixture

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def _status(env) -> dict:
    return wait_for(lambda: (doc := json.loads(_neti(env, "lab", "status", "--json").stdout))
                    and all("members" in h for h in doc["hosts"]) and doc, timeout=60, what="lab status")


def _all_in_sync(env, what: str) -> None:
    """Every agent in sync within 120 s; otherwise fail with what `neti lab status` says."""
    try:
        wait_for(lambda: (s := _status(env))["in_sync"] == s["agents"], timeout=120, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_neti(env, 'lab', 'status').stdout}") from None


def _members(state) -> list[tuple[int, int]]:
    """(member number, client port) of each ensemble member, from the connect string."""
    return [(i + 1, int(hp.rsplit(":", 1)[1])) for i, hp in enumerate(state.zk_hosts.split(","))]


def _mode(directory: Path, port: int) -> str:
    """leader or follower, asked over the member's TLS-only client port with the lab's CA."""
    ca = directory / "trust" / "pki" / "ca.pem"
    text = four_letter_word("127.0.0.1", port, "srvr", tls=ServerTls(ca, ca).client_context())
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Mode:")), "")


class _Watch:
    """The chaos checker over one drill: real traffic between members, one overlay IP per
    instance, no agent death, all in sync at the end."""

    def __init__(self, directory: Path) -> None:
        state = read_state(directory)
        self.client = lab_client(state)  # the secured lab: TLS and the operator's credentials
        self.client.start(timeout=30)
        self.checker = Checker(self.client, ZkPaths.under(state.zk_prefix),
                               lambda: read_state(directory).hosts, time.monotonic(),
                               grace_seconds=30, session_seconds=10, outsider=state.outsider_netns).start()

    def finish(self, env) -> None:
        _all_in_sync(env, "in sync")
        time.sleep(3)  # a last round of probes on the settled fleet
        self.checker.stop()
        self.client.stop()
        self.client.close()
        assert self.checker.probes >= 3 and self.checker.outsider_probes >= 1
        assert [v.record() for v in self.checker.violations] == []
        assert _status(env)["agent_restarts"] == 0, "no agent died"


def test_ensemble_lab_survives_leader_kill_during_churn_rolling_restart_and_a_stopped_follower(lab_env):  # noqa: F811
    env, _, directory = lab_env
    up = _neti(env, "lab", "up", "--hosts", "5", "--vpc", "40", "--unregistered", "0", "--ensemble", "3",
               "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr
    state = read_state(directory)
    assert len(state.zk_hosts.split(",")) == 3 and len(state.zk_pids) == 3
    assert state.secured and "TLS-only, ACLs" in up.stdout, "the ensemble lab is secured too"
    for _, port in _members(state):  # every member: TLS only, nothing without credentials
        _anonymous_client_can_do_nothing(directory, f"127.0.0.1:{port}")
    config = (directory / "hosts" / state.hosts[0]["name"] / "neti.yml").read_text()
    assert "127.0.0.1:2181" in config and "127.0.0.1:2183" in config, "agents know every member"

    # The drills churn a host more than once within the removal grace: more than the default guard
    # (10% of 5: 1) lets go. The guard is not this test's subject; an operator raises the limit.
    raised = _neti(env, "control", "-c", str(state.console_config), "--operator", "test", "--yes",
                   "maxchange", "5")
    assert raised.returncode == 0, raised.stdout + raised.stderr

    # 1. The leader is killed while hosts churn.
    watch = _Watch(directory)
    # One host: two at once would be more than the default guard (10% of 5) lets go, held for good.
    churn = threading.Thread(target=_neti, args=(env, "lab", "churn", "--count", "1", "--rate", "0.5"))
    churn.start()
    time.sleep(1)
    killed = _neti(env, "lab", "zk", "kill-leader")
    assert killed.returncode == 0 and "leader (member" in killed.stdout, killed.stderr
    churn.join(120)
    member = int(killed.stdout.split("member ")[1].split(",")[0])
    assert _neti(env, "lab", "zk", "start", "--member", str(member)).returncode == 0
    watch.finish(env)

    # 2. A rolling restart, followers first, the leader last.
    watch = _Watch(directory)
    rolled = _neti(env, "lab", "zk", "restart", "--rolling", timeout=400)
    assert rolled.returncode == 0 and "rolling restart of 3 members done" in rolled.stdout, rolled.stderr
    watch.finish(env)

    # 3. One follower stops answering anyone (SIGSTOP: a partitioned, hung peer) while a host churns.
    state = read_state(directory)
    follower = next(port for _, port in _members(state) if _mode(directory, port) == "follower")
    pid = next(p for p in state.zk_pids if _port_of(directory, p) == follower)
    watch = _Watch(directory)
    os.kill(pid, signal.SIGSTOP)
    try:
        churned = _neti(env, "lab", "churn", "--count", "1", "--rate", "1")
        assert churned.returncode == 0, churned.stderr
        _all_in_sync(env, "in sync with a follower gone")
    finally:
        os.kill(pid, signal.SIGCONT)
    watch.finish(env)


def _port_of(directory: Path, pid: int) -> int | None:
    """The client port in the zoo.cfg that process ``pid`` was started with."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    config = next((a.decode() for a in args if a.endswith(b"zoo.cfg")), None)
    if config is None:
        return None
    for line in Path(config).read_text().splitlines():
        if line.startswith(("clientPort=", "secureClientPort=")):
            return int(line.split("=")[1])
    return None
