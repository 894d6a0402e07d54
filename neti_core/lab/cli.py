"""``neti lab``: the whole system on one machine — up, status, down, and fault drills."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from neti_core.cliutil import fail, progress_bar
from neti_core.fleet.state import RuleState
from neti_core.lab.guide import (
    aws_ranges_command,
    console_command,
    started_lines,
    stopping_line,
    zk_proxy_command,
)
from neti_core.lab.plan import LabPlanError, plan_fleet
from neti_core.lab.rpc import LabUnreachable, request
from neti_core.lab.state import (
    LabState,
    alive,
    default_state_dir,
    lab_netns_prefix,
    read_state,
    remove_leftovers,
)
from neti_core.ops.common import PROG, Subparsers
from neti_core.versions import natural_key

SYNC_TIMEOUT_SECONDS = 180


def add_parser(subparsers: Subparsers) -> None:
    lab = subparsers.add_parser("lab", help="a local fleet: ZooKeeper, EC2 API, agents, console")
    lab.add_argument("--state-dir", type=Path, default=default_state_dir(),
                     help="where the lab keeps its manifest and files (default: %(default)s)")
    commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    up = commands.add_parser("up", help="start a lab fleet and open the console")
    up.add_argument("--hosts", type=int, default=40, help="instances running an agent")
    up.add_argument("--vpc", type=float, default=25, help="percent of them in the VPC")
    up.add_argument("--unregistered", type=int, default=5, help="instances that never run Neti")
    up.add_argument("--no-console", action="store_true", help="leave the lab running, open nothing")
    up.add_argument("--insecure", action="store_true",
                    help="the original open tree on a plain port (to rehearse `neti zk secure`)")
    up.add_argument("--no-netns", action="store_true",
                    help="no namespaces: agents record rules instead (the default without root)")
    up.set_defaults(handler=_up)
    status = commands.add_parser("status", help="what runs, and whether every agent is in sync")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    commands.add_parser("down", help="stop and remove everything the lab made").set_defaults(handler=_down)
    up.add_argument("--ensemble", type=int, default=1, choices=[1, 3, 5],
                    help="ZooKeeper servers (3: an ensemble; agents connect to every member)")
    zk = commands.add_parser("zk", help="ZooKeeper drills: stop/start (one member or all), kill-leader, "
                                        "kill-follower, restart --rolling")
    zk.add_argument("action", choices=["stop", "start", "kill-leader", "kill-follower", "restart"])
    zk.add_argument("--member", type=int, help="one ensemble member (1..N); default: all")
    zk.add_argument("--rolling", action="store_true", help="restart: one member at a time, leader last")
    zk.set_defaults(handler=_zk_drill)
    for name, text in (("cut", "cut one host off ZooKeeper"), ("heal", "reconnect a cut host"),
                       ("adopt", "install Neti on an instance that runs without it"),
                       ("break", "flush a host's Neti rules, as an operator with iptables -F would"),
                       ("kill", "kill -9 a host's agent (the lab restarts it, as systemd would)")):
        drill = commands.add_parser(name, help=text)
        drill.add_argument("host", help="host name, e.g. app-007")
        drill.set_defaults(handler=lambda a, name=name: _drill(a, name, host=a.host))
    churn = commands.add_parser("churn", help="terminate hosts and launch new ones")
    churn.add_argument("--count", type=int, default=3)
    churn.add_argument("--rate", type=float, default=1.0, help="hosts per second")
    churn.set_defaults(handler=lambda a: _drill(a, "churn", count=a.count, rate=a.rate))
    chaos = commands.add_parser("chaos", help="a reproducible fault schedule, checked with real traffic")
    chaos.add_argument("--minutes", type=float, default=5)
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--every", type=float, default=5.0, help="seconds between faults, on average")
    chaos.add_argument("--soak", action="store_true",
                       help="churn, reject_all flips and broken rules only (no cuts): a long run to "
                            "watch agent RSS and open fds")
    chaos.set_defaults(handler=_chaos)


def _zk_drill(args: argparse.Namespace) -> int:
    if args.action == "restart" and not args.rolling:
        fail(PROG, "only a rolling restart is offered: `neti lab zk restart --rolling`", status=2)
    extra = {"member": args.member} if args.member is not None else {}
    return _drill(args, f"zk-{args.action}", **extra)


def _say(message: str) -> None:
    print(f"lab: {message}", flush=True)


def _up(args: argparse.Namespace) -> int:
    try:
        plans = plan_fleet(args.hosts, args.vpc, args.unregistered)
    except LabPlanError as exc:
        fail(PROG, str(exc))
    directory: Path = args.state_dir
    state = read_state(directory)
    if state is not None and alive(state.pid):
        _say(f"a lab is already running (state in {directory}); `neti lab down` stops it")
        return 0 if args.no_console else _open_console(state)
    if state is not None or directory.exists():
        for item in remove_leftovers(directory, state):
            _say(f"removed leftover {item}")
    use_netns = not args.no_netns and os.geteuid() == 0 and shutil.which("ip") is not None
    if not use_netns:
        _say("no namespaces (not root, or --no-netns): agents record their rules instead of "
             "programming iptables; the console shows backend 'recording'")
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log = open(directory / "daemon.log", "ab")  # noqa: SIM115 - handed to the daemon
    subprocess.Popen(
        [sys.executable, "-m", "neti_core.lab.daemon", "--state-dir", str(directory),
         "--hosts", str(args.hosts), "--vpc", str(args.vpc), "--unregistered", str(args.unregistered),
         "--netns-prefix", lab_netns_prefix(),
         "--ensemble", str(args.ensemble),
         *([] if use_netns else ["--no-netns"]), *(["--insecure"] if args.insecure else [])],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    state = _wait_ready(directory)
    agents = sum(p.runs_agent for p in plans)
    synced_at = _wait_in_sync(state, agents)
    elapsed = (synced_at or time.monotonic()) - started
    state = read_state(directory) or state
    _say(f"{agents} agents {'all in sync' if synced_at else 'NOT all in sync'} after {elapsed:.1f} s; "
         f"lab processes use {_lab_rss_mb(state):.0f} MB")
    for line in started_lines(state, plans):
        _say(line)
    if args.no_console:
        _say("running; `neti lab status`, `neti lab down`")
        return 0
    return _open_console(state)


def _open_console(state: LabState) -> int:
    console = Path(sys.executable).parent / "neti-console"
    result = subprocess.run([str(console) if console.exists() else "neti-console", "-c",
                             str(state.console_config)], check=False)
    _say("the lab is still running: `neti lab status`, `neti lab down` (drills: `neti lab --help`)")
    return result.returncode


def _wait_ready(directory: Path) -> LabState:
    last, said_at = "", 0.0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state is not None:
            if state.progress != last and (state.phase != "starting" or time.monotonic() - said_at > 2
                                           or "instances" not in state.progress):
                _say(state.progress)
                last, said_at = state.progress, time.monotonic()
            if state.phase == "ready":
                return state
            if state.phase == "failed" or not alive(state.pid):
                tail = (directory / "daemon.log").read_text(errors="replace")[-2000:] \
                    if (directory / "daemon.log").exists() else ""
                print(tail, file=sys.stderr)
                remove_leftovers(directory, state)
                fail(PROG, f"the lab did not start: {state.progress}", status=1)
        time.sleep(0.2)
    fail(PROG, "the lab did not become ready within 10 minutes", status=1)


def lab_client(state: LabState) -> Any:
    """A client for the lab's ZooKeeper: with the console's (operator) credentials and TLS when
    the lab is secured, which is also what any other tool pointed at the lab needs."""
    from neti_core.config import load_config, parse_config
    from neti_core.zkclient import make_client

    secured = state.secured and state.console_config is not None
    config = load_config(state.console_config) if secured else parse_config({})  # type: ignore[arg-type]
    return make_client(config, state.zk_connect)


def fleet_sync(state: LabState, timeout: float = 5) -> tuple[int, int, list[dict[str, Any]]]:
    """(agents in sync, agents, per-host rows) read from the lab's ZooKeeper."""
    in_sync, agents, rows, _ = fleet_view(state, timeout)
    return in_sync, agents, rows


def fleet_view(state: LabState,
               timeout: float = 15) -> tuple[int, int, list[dict[str, Any]], tuple[str, ...]]:
    """What the console would show, read once: per-host rows joined with the lab's manifest, and
    every anomaly (documents that do not decode, status nodes without a member...). One bad node is
    a row's or a problem's text, never a failure of the whole view."""
    from neti_core.config import ZkPaths
    from neti_core.fleet.watcher import LiveFleet

    logging.getLogger("kazoo").setLevel(logging.CRITICAL)  # an unreachable ZooKeeper is said once, below
    # The default timeout lets kazoo get past a hung ensemble member (its TLS handshake waits out
    # the session timeout, 10 s) to a serving one.
    client = lab_client(state)
    client.start(timeout=timeout)
    try:
        snapshot = LiveFleet(client, ZkPaths.under(state.zk_prefix), ec2_configured=False).read_once()
    finally:
        client.stop()
        client.close()
    rows, in_sync, agents = [], 0, 0
    lab_ids = {host["instance_id"] for host in state.hosts}
    for host in sorted(state.hosts, key=lambda host: natural_key(host["name"])):  # app-2 before app-10
        row = dict(host)
        fleet_row = snapshot.rows.get(host["instance_id"])
        status = fleet_row.status if fleet_row is not None else None
        if host["agent"]:
            agents += 1
            synced = fleet_row is not None and fleet_row.state in (RuleState.IN_SYNC, RuleState.DRIFT)
            in_sync += synced
            row |= {"overlay": status.overlay_ip if status else None, "in_sync": synced,
                    "reject_all": status.reject_all if status else None,
                    "backend": status.backend if status else None,
                    "state": fleet_row.state_label if fleet_row else "no agent",
                    "error": None if synced else _why(fleet_row),
                    "members": status.members if status else None,
                    "guard": {"blocked_removals": status.guard.blocked_removals,
                              "maxchange": status.guard.maxchange} if status and status.guard else None}
        rows.append(row)
    strangers = [f"{key}: {row.state_label}" + (f" ({row.detail})" if row.detail else "")
                 for key, row in sorted(snapshot.rows.items()) if key not in lab_ids]
    return in_sync, agents, rows, (*snapshot.problems, *strangers)


def _why(row: Any) -> str:
    if row is None:
        return "no status"
    return f"{row.state_label}: {row.detail}" if row.detail else row.state_label


def _wait_in_sync(state: LabState, agents: int) -> float | None:
    """Wait for every agent; on a terminal one bar redrawn in place, otherwise a line per change."""
    started = time.monotonic()
    deadline = started + SYNC_TIMEOUT_SECONDS
    tty, last = sys.stdout.isatty(), -1
    try:
        while time.monotonic() < deadline:
            try:
                in_sync, _, _ = fleet_sync(state)
            except Exception:
                in_sync = 0
            line = (f"agents in sync {progress_bar(in_sync, agents)} {in_sync}/{agents} "
                    f"({time.monotonic() - started:.0f} s)")
            if tty:
                print(f"\rlab: {line}", end="", flush=True)
            elif in_sync != last:
                _say(line)
            last = in_sync
            if in_sync >= agents:
                return time.monotonic()
            time.sleep(0.5)
        return None
    finally:
        if tty:
            print(flush=True)


def _lab_rss_mb(state: LabState) -> float:
    pids = [state.pid, state.zk_pid, state.moto_pid, *(h.get("pid") for h in state.hosts)]
    total = 0
    for pid in filter(None, pids):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _running_state(args: argparse.Namespace) -> LabState:
    state = read_state(args.state_dir)
    if state is None or not alive(state.pid):
        fail(PROG, f"no lab is running (state dir {args.state_dir}); `neti lab up` starts one", status=1)
    return state


def _status(args: argparse.Namespace) -> int:
    state = _running_state(args)
    problems: tuple[str, ...] = ()
    try:
        in_sync, agents, rows, problems = fleet_view(state)
    except Exception as exc:
        rows = [dict(h) for h in state.hosts]
        in_sync, agents = 0, sum(1 for h in state.hosts if h["agent"])
        # On stderr: with --json, stdout carries only the document.
        print(f"lab: ZooKeeper at {state.zk_connect} unreachable ({exc}): agents keep their rules; "
              f"nothing can be shown in sync", file=sys.stderr, flush=True)
    maxchange = _maxchange_setting(state)
    summary = {"phase": state.phase, "mode": state.mode, "zookeeper": state.zk_connect,
               "ec2_api": f"http://127.0.0.1:{state.moto_port}", "agents": agents, "in_sync": in_sync,
               "instances": len(rows), "rss_mb": round(_lab_rss_mb(state), 1),
               "console_config": state.console_config, "security_group": state.security_group,
               "security_groups": state.security_groups, "ranges_file": state.ranges_file,
               "agent_restarts": sum(int(h.get("restarts") or 0) for h in state.hosts),
               "maxchange": maxchange, "guard_tripped": sum(1 for r in rows if r.get("guard"))}
    if args.json:
        print(json.dumps({**summary, "hosts": rows, "problems": list(problems)}))
        return 0 if in_sync == agents else 1
    for row in rows:
        state_text = ("in sync" if row.get("in_sync") else row.get("error") or "lagging") \
            if row["agent"] else "no agent (unregistered)"
        guard = row.get("guard")
        if guard:
            state_text += f"; guard holds {guard['blocked_removals']} removals (limit {guard['maxchange']})"
        said = f": {row['last_words']}" if row.get("last_words") and row.get("last_exit") not in (None, -9) \
            else ""
        restarts = f"  restarted {row['restarts']}x (last exit {row.get('last_exit')}{said})" \
            if row.get("restarts") else ""
        print(f"{row['name']:10} {row['instance_id']:20} {row['side']:4} {row['private']:15} "
              f"{row['public']:15} {row.get('overlay') or '-':15} {state_text}{restarts}")
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{summary['phase']} ({summary['mode']}): {in_sync}/{agents} agents in sync, "
          f"{len(rows)} instances; ZooKeeper {summary['zookeeper']}; {summary['rss_mb']:.0f} MB; "
          f"{summary['agent_restarts']} agent restarts by the lab")
    print(f"mass-change guard: maxchange {maxchange}; tripped on {summary['guard_tripped']} agents")
    print(f"console: {console_command(state)}")
    print(f"security groups: {', '.join(f'{n} {g}' for n, g in state.security_groups.items())}")
    print(f"open the fleet to AWS's ranges: {aws_ranges_command(state)}")
    print(f"ZooKeeper and its proxies: {zk_proxy_command(state)}")
    return 0 if in_sync == agents else 1


def _maxchange_setting(state: LabState) -> str:
    """The guard's limit as set in ZooKeeper ("10%" when absent), or "unknown" without it."""
    from neti_core.config import ZkPaths
    from neti_core.maxchange import read_guard_limit
    from neti_core.schema import decode_maxchange

    client = lab_client(state)
    try:
        client.start(timeout=15)
        path = ZkPaths.under(state.zk_prefix).maxchange
        value, problem = read_guard_limit(client.get(path)[0] if client.exists(path) else None,
                                          decode_maxchange)
        return f"{value} ({problem})" if problem else str(value)
    except Exception:
        return "unknown (ZooKeeper unreachable)"
    finally:
        client.stop()
        client.close()


def _chaos(args: argparse.Namespace) -> int:
    from neti_core.lab.chaos import run_chaos

    state = _running_state(args)
    if state.mode != "netns":
        fail(PROG, "chaos probes with real traffic: it needs a lab with namespaces (run as root)", status=1)
    return run_chaos(args, state)


def _down(args: argparse.Namespace) -> int:
    state = read_state(args.state_dir)
    if state is not None and alive(state.pid):
        _say(stopping_line(state))
        try:
            request(args.state_dir / "control.sock", "shutdown", timeout=30)
        except (LabUnreachable, OSError) as exc:
            _say(f"daemon not answering ({exc}); removing by hand")
        deadline = time.monotonic() + 60
        while alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    removed = remove_leftovers(args.state_dir, state, lab_netns_prefix())
    if state is None and not removed:
        _say("no lab to remove")
    for item in removed:
        _say(f"removed {item}")
    _say("down: no namespace, process or directory of the lab is left")
    return 0


def _drill(args: argparse.Namespace, command: str, **extra: Any) -> int:
    _running_state(args)
    try:
        reply = request(args.state_dir / "control.sock", command, **extra)
    except LabUnreachable as exc:
        fail(PROG, str(exc), status=1)
    if not reply.get("ok"):
        fail(PROG, reply.get("error", "failed"), status=1)
    _say(reply.get("message", "done"))
    return 0
