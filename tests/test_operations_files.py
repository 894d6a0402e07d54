"""What operations load as they are: the Prometheus alert rules and the systemd unit.

The rules are unit-tested by ``promtool test rules`` (Debian's ``prometheus`` package), and every
metric they name must be one the agent really exports; the unit must pass ``systemd-analyze verify``
without a warning.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.exposition import generate_latest

from agent.metrics import AgentMetrics

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "conf" / "prometheus" / "neti-alerts.yml"
RULE_TESTS = REPO / "tests" / "prometheus" / "neti-agent-alerts-test.yml"
UNIT = REPO / "conf" / "neti-agent.service"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/install-deps installs it)"
    return path


def test_the_alert_rules_are_valid_and_pass_their_promtool_tests():
    checked = subprocess.run([_tool("promtool"), "check", "rules", str(RULES)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run([_tool("promtool"), "test", "rules", str(RULE_TESTS)], capture_output=True,
                            text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_metric_an_alert_uses_is_exported_by_the_agent():
    exported = {line.split("{")[0].split(" ")[0]
                for line in generate_latest(AgentMetrics().registry).decode().splitlines()
                if line and not line.startswith("#")}
    groups = yaml.safe_load(RULES.read_text())["groups"]
    agent = next(group for group in groups if group["name"] == "neti-agent")
    assert len(agent["rules"]) == 7
    used = {name for rule in agent["rules"] for name in re.findall(r"\bneti_[a-z_]+", rule["expr"])}
    assert used, "no neti_* metric in the rules?"
    assert used <= exported, f"alerts on metrics the agent does not export: {sorted(used - exported)}"


def test_the_systemd_unit_verifies_without_a_warning(tmp_path):
    """``systemd-analyze verify`` also checks that ExecStart exists: point it at this checkout's
    neti-agent (the installed path differs per machine); every other line is verified as shipped."""
    agent = Path(sys.executable).parent / "neti-agent"
    assert agent.exists()
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/neti-agent " in text
    unit = tmp_path / "neti-agent.service"
    unit.write_text(text.replace("/usr/local/bin/neti-agent", str(agent)))
    result = subprocess.run([_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warnings: none allowed


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a bad value in the unit is a fatal error."""
    unit = tmp_path / "neti-agent.service"
    agent = Path(sys.executable).parent / "neti-agent"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/neti-agent", str(agent))
                    .replace("DynamicUser=yes", "DynamicUser=perhaps"))
    result = subprocess.run([_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "Failed to parse boolean value: perhaps" in result.stderr


def test_the_tmpfiles_entry_creates_the_xtables_lock_the_unit_hands_over(tmp_path):
    """The unit's StandardInput=file:/run/xtables.lock needs the file at boot: tmpfiles makes it,
    root's and 0600 like iptables makes it (checked in a scratch root, not this machine's /run)."""
    config = REPO / "conf" / "neti-tmpfiles.conf"
    assert "StandardInput=file:/run/xtables.lock" in UNIT.read_text()
    result = subprocess.run([_tool("systemd-tmpfiles"), "--create", f"--root={tmp_path}", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lock = (tmp_path / "run" / "xtables.lock").stat()
    assert (lock.st_uid, lock.st_gid, lock.st_mode & 0o7777) == (0, 0, 0o600)
