"""The lab keeps its agents running as systemd would, and the guard protects a small lab (issue 14)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.fixtures.agent import wait_for
from tests.test_lab import _neti, lab_env  # noqa: F401 - the fixture

pytestmark = pytest.mark.netns


def _status(env) -> dict:
    return json.loads(_neti(env, "lab", "status", "--json").stdout)


def test_an_agent_killed_with_9_is_restarted_by_the_lab_and_back_in_sync(lab_env):  # noqa: F811
    env, _, _ = lab_env
    up = _neti(env, "lab", "up", "--hosts", "3", "--vpc", "34", "--unregistered", "0", "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr
    before = {h["name"]: h for h in _status(env)["hosts"]}
    victim = sorted(before)[0]
    killed = _neti(env, "lab", "kill", victim)
    assert killed.returncode == 0 and "killed with SIGKILL" in killed.stdout, killed.stderr
    after = wait_for(lambda: (s := _status(env))["agent_restarts"] == 1 and s["in_sync"] == 3 and s,
                     timeout=90, what="the agent restarted and every agent in sync")
    row = {h["name"]: h for h in after["hosts"]}[victim]
    assert row["pid"] != before[victim]["pid"] and row["last_exit"] == -9
    assert row["overlay"] == before[victim]["overlay"], "it came back with its overlay IP"
    text = _neti(env, "lab", "status").stdout
    assert "restarted 1x (last exit -9)" in text and "1 agent restarts by the lab" in text
    subprocess.run(["kill", "-0", str(row["pid"])], check=True)
