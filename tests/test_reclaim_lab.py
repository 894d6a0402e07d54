"""The lab's churn drill leaks addresses; `neti registry reclaim --apply` gives them back.

The whole product, as an operator runs it: `neti lab up` (agents, ZooKeeper, moto), `neti lab
churn` (terminate hosts, launch new ones), then the reclaim command on the lab's operator config,
whose quarantine is 10 s instead of days. No namespaces (agents record rules): what is measured
here is the registry, not the firewall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.agent import wait_for

pytestmark = pytest.mark.slow
NETI = str(Path(sys.executable).parent / "neti")
HOSTS = 5
CHURN = 3


@pytest.fixture
def lab_env(tmp_path):
    env = {**os.environ, "NETI_LAB_DIR": str(tmp_path / "lab")}
    yield env
    subprocess.run([NETI, "lab", "down"], env=env, capture_output=True, timeout=120, check=False)


def _neti(env, *args, timeout=300):
    return subprocess.run([NETI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _json(env, *args) -> dict:
    done = _neti(env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _lab_status(env) -> dict:
    """`neti lab status --json` (exit 1 while some agent is not in sync, with the same document)."""
    return json.loads(_neti(env, "lab", "status", "--json").stdout)


def test_churn_then_reclaim_brings_used_addresses_back_to_the_live_instances(lab_env):
    env = lab_env
    up = _neti(env, "lab", "up", "--hosts", str(HOSTS), "--vpc", "40", "--unregistered", "0",
               "--no-console", "--no-netns")
    assert up.returncode == 0, up.stdout + up.stderr
    config = _lab_status(env)["console_config"]
    # The churn drill removes more hosts at once than the default guard (10% of 5: 1) lets go; an
    # operator raises the limit first, as the walkthrough does before its churn drill.
    raised = _neti(env, "control", "-c", config, "--operator", "test", "--yes", "maxchange", str(HOSTS))
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert _neti(env, "lab", "churn", "--count", str(CHURN), "--rate", "5").returncode == 0
    wait_for(lambda: _lab_status(env)["in_sync"] == HOSTS, timeout=120,
             what="the churned fleet in sync")
    # The leak the issue reports: terminated hosts keep their addresses.
    assert _json(env, "report", "-c", config, "--used-ips", "--json")["used"] == HOSTS + CHURN

    # The terminated agents' sessions end; then the first apply starts their quarantine.
    wait_for(lambda: _json(env, "registry", "reclaim", "-c", config, "--json")["summary"]["newly_gone"]
             == CHURN, timeout=60, what="the terminated hosts' party entries and statuses to go")
    first = _json(env, "registry", "reclaim", "-c", config, "--apply", "--json")
    assert (first["result"]["marked"], first["result"]["reclaimed"]) == (CHURN, 0)
    assert {row["ec2"] for row in first["addresses"]} == {"terminated"}
    wait_for(lambda: _json(env, "registry", "reclaim", "-c", config, "--json")["summary"]["reclaimable"]
             == CHURN, timeout=60, what="the lab's quarantine (console.yml: reclaim_quarantine: 10s)")
    second = _json(env, "registry", "reclaim", "-c", config, "--apply", "--json")
    assert second["result"]["reclaimed"] == CHURN

    usage = _json(env, "report", "-c", config, "--used-ips", "--json")
    live = [h for h in _lab_status(env)["hosts"] if h["agent"]]
    assert usage["used"] == len(live) == HOSTS
    assert usage["reclaimable"] == 0
    # Every live host still holds the address it announces.
    report = _json(env, "report", "-c", config, "--json")
    assert report["summary"]["in_neti"] == HOSTS
    assert all(not row["notes"] for row in report["instances"])
