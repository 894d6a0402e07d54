"""The unit's privilege model, proven: ``neti-agent --once`` as a systemd dynamic user would run it
(a uid with no passwd entry, no groups, only CAP_NET_ADMIN and CAP_NET_RAW as ambient, bounding and
inherited capabilities, no new privileges; the xtables lock handed over as stdin the way
``StandardInput=file:/run/xtables.lock`` does) on an nft host and on a legacy one, in a namespace.

A legacy host is one whose ``iptables`` is iptables-legacy (Debian's alternatives); here that is a
PATH entry for the agent only, so nothing of this machine's configuration changes.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from neti_core.members import Side

REPO = Path(__file__).resolve().parent.parent
LOCK = "/run/xtables.lock"
CAPS = "-all,+net_admin,+net_raw"


def unit_user() -> int:
    """A uid from systemd's DynamicUser range (61184-65519) that no account owns."""
    taken = {int(line.split(":")[2]) for line in Path("/etc/passwd").read_text().splitlines()
             if line.count(":") > 2}
    return random.choice([uid for uid in range(61184, 65520) if uid not in taken])


def python_for(uid: int) -> list[str]:
    """An interpreter the unprivileged user can execute, and this checkout's packages on its path."""
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in candidates:
        code = "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"
        # through env: setpriv's own exec still holds root's capabilities, the next one does not
        probe = subprocess.run([*unit_credentials(uid), "env", "-i", candidate, "-c", code],
                               capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return [candidate]
    pytest.fail(f"no Python {version} executable by uid {uid}")


def unit_credentials(uid: int) -> list[str]:
    """setpriv as the unit: DynamicUser (uid = gid, no groups), AmbientCapabilities=,
    CapabilityBoundingSet= CAP_NET_ADMIN CAP_NET_RAW, NoNewPrivileges=yes."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", f"--inh-caps={CAPS}",
            f"--ambient-caps={CAPS}", f"--bounding-set={CAPS}", "--no-new-privs", "--"]


def as_unit(ns: str, uid: int, *command: str, env: dict[str, str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *unit_credentials(uid), "env", "-i",
            *(f"{k}={v}" for k, v in env.items()), *command]


@pytest.fixture
def unit_workdir(agent_fleet):
    """Config and state where the unit's user can reach them (pytest's tmp dirs are root-only)."""
    workdir = Path(tempfile.mkdtemp(prefix="neti-unit-"))
    workdir.chmod(0o755)
    agent_fleet.workdir = workdir
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


# Backend per case: auto is the native nft table; restore on iptables-nft; iptc on legacy (what auto
# picked there before the nft backend, and what a legacy host with Neti's chains keeps).
_BACKEND = {"native": "auto", "nft": "restore", "legacy": "iptc"}


@pytest.mark.netns
@pytest.mark.parametrize("flavour", ["native", "nft", "legacy"])
def test_the_agent_runs_as_the_units_user_with_only_its_capabilities(agent_fleet, unit_workdir, flavour):
    host = agent_fleet.add(Side.EC2, start=False, echo=False, firewall_backend=_BACKEND[flavour])
    uid = unit_user()
    state = unit_workdir / "h1" / "state"
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, uid, uid)  # StateDirectory=neti: owned by the dynamic user
    for path in (unit_workdir / "h1", host.host.config_path):
        path.chmod(0o755 if path.is_dir() else 0o644)
    bin_dir = unit_workdir / "bin"
    if flavour == "legacy":  # this host's `iptables` is iptables-legacy
        bin_dir.mkdir()
        for tool in ("iptables", "iptables-save", "iptables-restore"):
            (bin_dir / tool).symlink_to(shutil.which(tool.replace("iptables", "iptables-legacy")))
    paths = sysconfig.get_paths()
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(REPO), paths["purelib"], paths["platlib"]]))}
    agent = [*python_for(uid), "-m", "agent.cli", "-c", str(host.host.config_path), "--once"]

    show = "id -u; id -G; grep ^Cap /proc/self/status"
    credentials = subprocess.run(as_unit(host.ns, uid, "sh", "-c", show, env=env), capture_output=True,
                                 text=True, timeout=30)
    assert credentials.stdout.split()[:2] == [str(uid), str(uid)], credentials.stdout + credentials.stderr
    assert "CapEff:\t0000000000003000" in credentials.stdout  # CAP_NET_ADMIN | CAP_NET_RAW, nothing else
    assert "CapAmb:\t0000000000003000" in credentials.stdout

    fd = os.open(LOCK, os.O_RDONLY | os.O_CREAT, 0o600)  # what systemd-tmpfiles and StandardInput= do
    try:
        result = subprocess.run(as_unit(host.ns, uid, *agent, env=env), stdin=fd, capture_output=True,
                                text=True, timeout=120)
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied 1 members" in result.stdout, result.stdout + result.stderr
    if flavour == "native":
        rules = host.host.shell("nft", "list", "chain", "ip", "neti", "NETI-INPUT").stdout
        assert "ip saddr @ec2_whitelist accept" in rules, result.stdout + result.stderr
        return
    tool = "iptables-legacy" if flavour == "legacy" else "iptables-nft"
    rules = host.host.shell(tool, "-w", "-S", "NETI-INPUT").stdout
    assert "match-set" in rules, f"{flavour}: no Neti rules in {tool}:\n{result.stdout}{result.stderr}"
    assert host.instance_id in agent_fleet.zk.get_children(agent_fleet.paths.id_to_ip)


@pytest.mark.netns
def test_on_a_legacy_host_without_the_lock_handed_over_the_agent_says_why_and_changes_nothing(
        agent_fleet, unit_workdir):
    """The failure the unit's StandardInput= line prevents: clear, one line, nothing applied."""
    host = agent_fleet.add(Side.EC2, start=False, echo=False)
    uid = unit_user()
    (unit_workdir / "h1").chmod(0o755)
    host.host.config_path.chmod(0o644)
    state = unit_workdir / "h1" / "state"
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, uid, uid)
    paths = sysconfig.get_paths()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(REPO), paths["purelib"], paths["platlib"]]))}
    agent = [*python_for(uid), "-m", "agent.cli", "-c", str(host.host.config_path), "--once"]
    host.host.config_path.write_text(host.host.config_path.read_text() + "firewall_backend: iptc\n")
    result = subprocess.run(as_unit(host.ns, uid, *agent, env=env), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"cannot open {LOCK}: Permission denied (run under conf/neti-agent.service" in output, output
    assert "NETI-INPUT" not in host.host.shell("iptables-legacy", "-w", "-S").stdout
