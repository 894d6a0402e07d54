"""`neti lab chaos` on a real lab: a fault schedule checked with real traffic (issue 14)."""

from __future__ import annotations

import json

import pytest

from tests.test_lab import _neti, lab_env  # noqa: F401 - the fixture

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def _chaos(env, minutes: float) -> tuple[int, dict, str]:
    run = _neti(env, "lab", "chaos", "--minutes", str(minutes), "--seed", "1", "--every", "3",
                timeout=minutes * 60 + 300)
    lines = run.stdout.strip().splitlines()
    return run.returncode, json.loads(lines[-1]), run.stdout + run.stderr


def test_a_short_schedule_on_a_healthy_secured_ensemble_lab_breaks_no_promise(lab_env):  # noqa: F811
    env, _, _ = lab_env
    up = _neti(env, "lab", "up", "--hosts", "6", "--vpc", "34", "--unregistered", "0", "--ensemble", "3",
               "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "TLS-only, ACLs" in up.stdout
    status, report, output = _chaos(env, 1.5)
    assert status == 0 and report["violations"] == 0, output
    assert report["faults"] >= 12 and len(report["faults_by_kind"]) >= 6, report
    assert {"zk-kill-leader", "zk-kill-follower", "reject-fleet", "mass-cut"} <= set(report["faults_by_kind"])
    assert report["probes"] >= 20 and report["outsider_probes"] >= 10, report
    assert report["recovery_seconds"] is not None
    assert "chaos:   " in output and " probes, 0 violations" in output  # the progress it showed


def test_a_planted_bug_is_caught(lab_env):  # noqa: F811
    """Agents that ignore the guard drop the mass-cut hosts: the checker must say so, and fail."""
    env, _, _ = lab_env
    env = {**env, "NETI_TEST_PLANT_BUG": "ignore-guard"}
    up = _neti(env, "lab", "up", "--hosts", "6", "--vpc", "34", "--unregistered", "0", "--no-console")
    assert up.returncode == 0, up.stdout + up.stderr
    status, report, output = _chaos(env, 2.5)
    assert status == 1, output
    guard = [v for v in report["violation_details"] if v["invariant"] == "guard-holds"]
    assert guard and "while 3 are gone at once" in guard[0]["detail"], report
