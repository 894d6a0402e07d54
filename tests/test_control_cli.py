"""``neti control`` end to end against a real ZooKeeper: plan first, --yes writes with its audit
record, read-only refused, bad input one line, and the documented exit codes."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from neti_core.schema import AuditEntry, FleetDefaults, PhaseRecord, RejectAllOverride

HOST = "i-0123456789abcdef0"


@pytest.fixture
def neti(zk_server, zk_prefix, tmp_path):
    config = tmp_path / "neti.yml"
    config.write_text(yaml.safe_dump({"zk_prefix": zk_prefix,
                                      "zk_hosts": {"ec2": [zk_server.hosts], "vpc": [zk_server.hosts]}}))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["neti", "control", "-c", str(config), "--operator", "ops-bot", *args],
                              capture_output=True, text=True, timeout=60, check=False)
    return run


def _audit(zk, paths) -> list[AuditEntry]:
    if not zk.exists(paths.audit):
        return []
    return [AuditEntry.from_json(zk.get(f"{paths.audit}/{name}")[0])
            for name in sorted(zk.get_children(paths.audit))]


def test_a_host_override_is_planned_then_written_with_its_audit_record(neti, zk, zk_paths):
    plan = neti("reject-all", "on", HOST)
    assert plan.returncode == 0, plan.stderr
    assert f"reject_all override of {HOST}: unset → on" in plan.stdout
    assert "plan only: nothing written" in plan.stdout
    assert zk.exists(f"{zk_paths.control_reject_all}/{HOST}") is None and _audit(zk, zk_paths) == []

    done = neti("--yes", "--why", "canary", "reject-all", "on", HOST)
    assert done.returncode == 0, done.stderr
    assert "reject_all.set: changed " + HOST in done.stdout and "audit entry-" in done.stdout
    override = RejectAllOverride.from_json(zk.get(f"{zk_paths.control_reject_all}/{HOST}")[0])
    assert (override.value, override.who, override.why) == (True, "ops-bot", "canary")
    (entry,) = _audit(zk, zk_paths)
    assert (entry.action, entry.target, entry.before, entry.after, entry.who) == (
        "reject_all.set", HOST, None, True, "ops-bot")

    again = neti("--yes", "reject-all", "on", HOST)
    assert again.returncode == 0 and f"already so: {HOST}" in again.stdout
    assert len(_audit(zk, zk_paths)) == 1  # nothing changed, nothing audited


def test_fleet_default_and_maxchange_plans_read_invalid_documents_through_their_decoders(neti, zk, zk_paths):
    zk.create(zk_paths.control_defaults, b"not json", makepath=True)
    plan = neti("reject-all", "on", "--fleet")
    assert plan.returncode == 0
    assert "fleet default reject_all: invalid (control/defaults: not JSON" in plan.stdout
    assert neti("--yes", "reject-all", "on", "--fleet").returncode == 0
    assert FleetDefaults.from_json(zk.get(zk_paths.control_defaults)[0]).reject_all is True

    zk.create(zk_paths.maxchange, b"lots", makepath=True)
    plan = neti("maxchange", "7")
    assert "maxchange: invalid (maxchange: 'lots' is not a whole number >= 0) → 7" in plan.stdout
    done = neti("--yes", "maxchange", "7")
    assert done.returncode == 0, done.stderr
    assert zk.get(zk_paths.maxchange)[0] == b"7"
    actions = [(e.action, e.before, e.after) for e in _audit(zk, zk_paths)]
    assert actions == [("defaults.reject_all", None, True), ("maxchange.set", "malformed", 7)]
    assert "maxchange: 7 → 25%" in neti("maxchange", "25%").stdout  # a share of the fleet
    assert neti("--yes", "maxchange", "25%").returncode == 0
    assert zk.get(zk_paths.maxchange)[0] == b"25%"
    zk.delete(zk_paths.maxchange)
    assert "maxchange: unset (10%) → 3" in neti("maxchange", "3").stdout


def test_read_only_and_bad_input_are_refused_with_one_line_and_their_exit_codes(neti, zk, zk_paths):
    refused = neti("--readonly", "--yes", "reject-all", "off", "--fleet")
    assert refused.returncode == 3
    assert refused.stderr.strip().count("\n") == 0 and "read-only" in refused.stderr
    assert zk.exists(zk_paths.control_defaults) is None
    for args, fragment in ((("maxchange", "lots"), "not a whole number"),
                           (("maxchange", "-3"), "not a whole number"),
                           (("reject-all", "on", "not-an-id"), "instance"),
                           (("reject-all", "on"), "name instance ids, or --fleet"),
                           (("phase", "rollout"), "unknown phase 'rollout'")):
        result = neti("--yes", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    unreachable = neti("--zk", "127.0.0.1:1", "--timeout", "1", "--yes", "maxchange", "3")
    assert unreachable.returncode == 1 and "cannot reach ZooKeeper" in unreachable.stderr
    assert unreachable.stderr.strip().count("\n") == 0, unreachable.stderr
    assert _audit(zk, zk_paths) == []


def test_phase_moves_follow_the_guard(neti, seeder, zk, zk_paths):
    refused = neti("--yes", "phase", "register")  # nobody registered yet: its guard says no
    assert refused.returncode == 3, refused.stderr
    assert "[ ] hosts registered in Neti" in refused.stdout
    seeder.seed(2)
    plan = neti("phase", "register")
    assert "phase: prepare → register" in plan.stdout and "[x] hosts registered in Neti" in plan.stdout
    done = neti("--yes", "phase", "register")
    assert done.returncode == 0, done.stderr
    assert PhaseRecord.from_json(zk.get(zk_paths.control_phase)[0]).phase == "register"
    assert [(e.action, e.after) for e in _audit(zk, zk_paths)] == [("phase.move", "register")]
    skipped = neti("--yes", "phase", "reject-everywhere")
    assert skipped.returncode == 3 and "one at a time" in skipped.stderr
