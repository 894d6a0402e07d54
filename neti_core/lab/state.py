"""The lab's manifest (``lab.json``): every process, namespace and directory it made.

Written by the daemon as it goes, read by ``neti lab status`` and ``neti lab down``; after a
crash of the daemon, ``down`` uses it (and the namespace prefix) to remove what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neti_core.lab import netns

STATE_FILE = "lab.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("NETI_LAB_DIR") or f"/tmp/neti-lab-{os.getuid()}")


@dataclass
class LabState:
    pid: int
    mode: str  # netns | recording
    netns_prefix: str
    zk_prefix: str
    phase: str = "starting"  # starting | ready | failed | stopping
    progress: str = ""
    zk_port: int | None = None
    zk_pid: int | None = None
    zk_hosts: str | None = None  # the connect string (an ensemble: every member)
    zk_pids: list[int] = field(default_factory=list)
    moto_port: int | None = None
    moto_pid: int | None = None
    console_config: str | None = None
    security_group: str | None = None  # lab-fleet (EC2-Classic side), kept for older readers
    security_groups: dict[str, str] = field(default_factory=dict)  # name -> sg-… (lab-fleet, …)
    ranges_file: str | None = None
    secured: bool = False  # TLS-only ZooKeeper with ACLs; clients use console_config's credentials
    outsider_netns: str | None = None  # a machine on the internet segment, inside the ssh whitelist
    outsider_ip: str | None = None
    hosts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def zk_connect(self) -> str:
        return self.zk_hosts or f"127.0.0.1:{self.zk_port}"


def write_state(directory: Path, state: LabState) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(directory / STATE_FILE)


def read_state(directory: Path) -> LabState | None:
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return LabState(**data)


def alive(pid: int | None) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    if not pid:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _kill(pid: int | None, marker: str) -> None:
    """SIGKILL a process the lab started, if it is still that process (checked by its cmdline)."""
    if not alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    if pid is not None and marker in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def lab_netns_prefix() -> str:
    """The namespaces' name prefix of a lab started from this environment (tests set their own)."""
    return os.environ.get("NETI_LAB_NETNS_PREFIX", "nlab")


def remove_leftovers(directory: Path, state: LabState | None, netns_prefix: str = "nlab") -> list[str]:
    """Remove whatever a crashed lab left: its processes, namespaces and directory.

    Without a state file nothing says which namespaces were this lab's: those named with
    ``netns_prefix`` are removed only when no process runs in them, so that ``neti lab down`` for
    one state directory can never tear down another lab that is running (it once did, in the
    middle of a soak, when a test's clean-up ran ``down`` twice)."""
    removed: list[str] = []
    if state is not None:
        for host in state.hosts:
            _kill(host.get("pid"), "neti-agent")
        for pid in {state.zk_pid, *state.zk_pids}:
            _kill(pid, "zookeeper")
        _kill(state.moto_pid, "moto")
        _kill(state.pid, "neti_core.lab.daemon")
        time.sleep(0.2)
    prefix = (state.netns_prefix if state else netns_prefix) + "-"
    for name in _list_netns():
        if name.startswith(prefix) and (state is not None or not _in_use(name)):
            with contextlib.suppress(Exception):
                netns.delete(name)
                removed.append(f"namespace {name}")
    if directory.exists():
        remove_state_dir(directory)
        removed.append(f"directory {directory}")
    return removed


def _in_use(name: str) -> bool:
    """Whether any process runs in namespace ``name`` (``ip netns pids``); unknown counts as used."""
    try:
        result = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return result.returncode != 0 or bool(result.stdout.strip())


def _list_netns() -> list[str]:
    try:
        return sorted(p.name for p in netns.NETNS_DIR.iterdir())
    except OSError:
        return []


def remove_state_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
