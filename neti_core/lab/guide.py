"""What ``neti lab`` tells the person at the terminal: what it started, what it stops, and the
commands to go on with, spelled so they work as typed (the tools live in the project's venv,
which is not on a new user's PATH after the quick start)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from neti_core.lab.plan import HostPlan
from neti_core.lab.state import LabState
from neti_core.members import Side


def tool_command(name: str, bin_dir: Path | None = None, cwd: Path | None = None) -> str:
    """``name`` when the shell finds this installation's copy; else the path that works from here
    (``.venv/bin/neti-console`` in the repository, the absolute path elsewhere)."""
    bin_dir = bin_dir or Path(sys.executable).parent
    own = bin_dir / name
    if not own.exists():
        return name
    found = shutil.which(name)
    if found is not None and Path(found).resolve() == own.resolve():
        return name
    cwd = cwd or Path.cwd()
    try:
        return str(own.relative_to(cwd))
    except ValueError:
        return str(own)


def console_command(state: LabState) -> str:
    return f"{tool_command('neti-console')} -c {state.console_config}"


def _names(names: Sequence[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names) or "none"
    return f"{names[0]} … {names[-1]}"


def started_lines(state: LabState, plans: Sequence[HostPlan]) -> list[str]:
    """What ``lab up`` made, for the person who will rehearse on it."""
    agents = [p for p in plans if p.runs_agent]
    vpc = sum(p.side is Side.VPC for p in agents)
    legacy = [p.name for p in plans if not p.runs_agent]
    groups = state.security_groups or ({"lab-fleet": state.security_group} if state.security_group else {})
    fleet = " and ".join(f"{name} {gid}" for name, gid in groups.items() if name.startswith("lab-fleet"))
    zk = " and ".join(f"{name} {gid}" for name, gid in groups.items() if not name.startswith("lab-fleet"))
    where = "each in its own network namespace" if state.mode == "netns" else "recording their rules"
    trust = ("TLS-only, ACLs; operator credentials in the console config" if state.secured
             else "OPEN: no TLS, no ACLs (--insecure)")
    lines = [
        f"started ZooKeeper {state.zk_connect} ({trust}) prefix {state.zk_prefix} and moto's "
        f"EC2 API http://127.0.0.1:{state.moto_port}",
        f"started {len(agents)} hosts with a neti-agent ({_names([p.name for p in agents])}: "
        f"{len(agents) - vpc} EC2-Classic side, {vpc} VPC side, {where})",
        f"launched {len(legacy)} instances without Neti ({_names(legacy)}) and, ignored by the "
        "console, a ZooKeeper node zk-1 and its proxy zkneti-1",
        f"security groups: {fleet or 'none'} (the fleet); {zk or 'none'} (ZooKeeper and its proxies); "
        f"AWS ranges sample {state.ranges_file}",
        f"console: {console_command(state)}",
    ]
    return lines


def aws_ranges_command(state: LabState) -> str:
    groups = [gid for name, gid in state.security_groups.items() if name.startswith("lab-fleet")] \
        or [state.security_group or "sg-…"]
    flags = " ".join(f"--group {g}" for g in groups)
    return (f"{tool_command('neti')} sg aws-ranges -c {state.console_config} {flags} "
            f"--ranges-file {state.ranges_file}")


def zk_proxy_command(state: LabState) -> str:
    groups = state.security_groups
    return (f"{tool_command('neti')} sg sync-zk-proxy -c {state.console_config} "
            f"--vpc-group {groups.get('lab-zk', 'sg-…')} --proxy-group {groups.get('lab-zkneti', 'sg-…')}")


def stopping_line(state: LabState) -> str:
    """What ``lab down`` is about to stop, so a long shutdown is not a silent one."""
    agents = sum(1 for h in state.hosts if h.get("agent"))
    namespaces = sum(1 for h in state.hosts if h.get("netns"))
    parts = [f"{agents} agents with their metadata services and ZooKeeper portals",
             "ZooKeeper", "moto's EC2 API"]
    if namespaces:
        parts.append(f"{namespaces} host namespaces and the lab's network")
    return f"stopping {', '.join(parts)}; then removing {state_dir_hint(state)}"


def state_dir_hint(state: LabState) -> str:
    config = state.console_config
    return str(Path(config).parent) if config else "the lab's directory"
