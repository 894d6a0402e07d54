"""``neti control``: every change the console can make, for scripts and runbooks.

``reject-all on|off|clear HOST...`` (or ``--fleet``), ``maxchange N``, ``phase TARGET``. Without
``--yes`` the command prints its plan (each value now → after, and the phase guard's checks) and
writes nothing. With ``--yes`` it writes through :class:`FleetControl`, so the confirmation, the
audit record and the read-only refusal are the console's own.

Exit status: 0 done (or plan shown), 1 ZooKeeper unreachable or a write race lost, 2 bad input,
3 refused (``--readonly``, or the phase guard says no).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from neti_core.cliutil import EXIT_USAGE, fail, load_config_or_exit
from neti_core.errors import MalformedEntryError, NetiError
from neti_core.maxchange import DEFAULT_MAXCHANGE, audit_value, decode_guard_limit
from neti_core.ops.common import (
    EXIT_FAILURE,
    PROG,
    Subparsers,
    add_config_argument,
    add_zk_arguments,
    zk_session,
)
from neti_core.schema import FleetDefaults, RejectAllOverride, decode_maxchange

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from neti_core.config import NetiConfig

EXIT_REFUSED = 3
_VALUES = {"on": True, "off": False, "clear": None}


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "control", help="change reject_all, maxchange or the migration phase (plan, then --yes)",
        description="Plan by default; --yes writes, with an audit record, as the console does.")
    add_config_argument(parser)
    add_zk_arguments(parser)
    parser.add_argument("--yes", action="store_true", help="write the change (default: show the plan)")
    parser.add_argument("--why", default="", help="the reason, kept in the audit record")
    parser.add_argument("--operator", help="who is acting (default: $SUDO_USER or $USER)")
    parser.add_argument("--readonly", action="store_true", help="refuse every write (exit 3)")
    actions = parser.add_subparsers(dest="control_action", required=True, metavar="ACTION")
    reject = actions.add_parser("reject-all", help="per-host override, or the fleet default with --fleet")
    reject.add_argument("value", choices=list(_VALUES))
    reject.add_argument("hosts", nargs="*", metavar="INSTANCE_ID")
    reject.add_argument("--fleet", action="store_true", help="the fleet-wide default instead of hosts")
    maxchange = actions.add_parser("maxchange", help="how many members one sync may remove: a count "
                                                     "(20) or a share of the fleet (10%%)")
    maxchange.add_argument("value")
    phase = actions.add_parser("phase", help="move the migration phase (its guard must pass)")
    phase.add_argument("target")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from neti_core.operator_actions import FleetControl, default_operator

    config = load_config_or_exit(PROG, args.config)
    request = _request(args)
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)  # an unreachable ZooKeeper is one line
    with zk_session(config, args, read_only=not args.yes) as client:
        paths = config.zk_paths
        control = FleetControl(client, paths, args.operator or default_operator(), readonly=args.readonly)
        plan, snapshot = _plan(client, config, request)
        for line in plan:
            print(line)
        if not args.yes:
            print("plan only: nothing written (run again with --yes to apply)")
            return 0
        try:
            result = _write(control, request, args.why, snapshot)
        except NetiError as exc:
            from neti_core.operator_actions import PhaseMoveRefused, ReadOnlyError

            refused = isinstance(exc, ReadOnlyError | PhaseMoveRefused)
            fail(PROG, str(exc), status=EXIT_REFUSED if refused else EXIT_FAILURE)
    changed = ", ".join(result.changed) or "nothing"
    unchanged = f"; already so: {', '.join(result.unchanged)}" if result.unchanged else ""
    entries = ", ".join(path.rsplit("/", 1)[-1] for path in result.audit_paths)
    audit = f"; audit {entries}" if entries else ""
    print(f"{result.action}: changed {changed}{unchanged}{audit}")
    return 0


def _request(args: argparse.Namespace) -> tuple[str, Any, tuple[str, ...]]:
    """(what, value, hosts), checked before anything is read: bad input is exit 2."""
    from neti_core.members import validate_instance_id
    from neti_core.phases import get_phase

    if args.control_action == "reject-all":
        if args.fleet == bool(args.hosts):
            fail(PROG, "reject-all: name instance ids, or --fleet for the fleet default (not both)")
        try:
            hosts = tuple(validate_instance_id(host) for host in args.hosts)
        except MalformedEntryError as exc:
            fail(PROG, f"reject-all: {exc}")
        return ("fleet" if args.fleet else "hosts", _VALUES[args.value], hosts)
    if args.control_action == "maxchange":
        try:
            return ("maxchange", audit_value(decode_guard_limit(args.value, decode_maxchange)), ())
        except MalformedEntryError as exc:
            fail(PROG, str(exc))
    try:
        get_phase(args.target)
    except KeyError as exc:
        fail(PROG, f"phase: {exc.args[0]}", status=EXIT_USAGE)
    return ("phase", args.target, ())


def _plan(client: KazooClient, config: NetiConfig,
          request: tuple[str, Any, tuple[str, ...]]) -> tuple[list[str], Any]:
    """What would change, each value now → after, read through the one decoder of each document."""
    what, value, hosts = request
    paths = config.zk_paths
    if what == "hosts":
        lines = []
        for host in hosts:
            now = _read(client, f"{paths.control_reject_all}/{host}", RejectAllOverride.from_json, "value")
            lines.append(f"reject_all override of {host}: {now} → {_shown(value)}")
        return lines, None
    if what == "fleet":
        now = _read(client, paths.control_defaults, FleetDefaults.from_json, "reject_all")
        return [f"fleet default reject_all: {now} → {_shown(value)}"], None
    if what == "maxchange":
        now = _read(client, paths.maxchange, lambda d: str(decode_guard_limit(d, decode_maxchange)), None)
        now = f"unset ({DEFAULT_MAXCHANGE})" if now == "unset" else now
        return [f"maxchange: {now} → {value}"], None
    return _phase_plan(client, config, value)


def _phase_plan(client: KazooClient, config: NetiConfig, target: str) -> tuple[list[str], Any]:
    """The move and every check of its guard, on the fleet as the console sees it now (with one
    EC2 poll: some guards need the inventory, and fail saying so when it cannot be had)."""
    from neti_core.aws import ec2_client
    from neti_core.fleet.ec2poll import Ec2Poller, short_error
    from neti_core.fleet.watcher import LiveFleet
    from neti_core.phases import check_move

    inventory: tuple[list[Any], list[str]] | str
    try:
        inventory = Ec2Poller(lambda: ec2_client(config), config.ignore_name_patterns, 0).poll_once()
    except Exception as exc:  # any failure of the API or the client: the guard reports it
        inventory = short_error(exc)
    snapshot = LiveFleet(client, config.zk_paths).read_once(inventory)
    current = snapshot.phase.phase if snapshot.phase is not None else "prepare"
    verdict = check_move(current, target, snapshot)
    lines = [f"phase: {current} → {target}" + ("" if verdict.allowed else " (refused now)")]
    lines += [f"  [{'x' if c.ok else ' '}] {c.label}" + (f": {c.detail}" if c.detail else "")
              for c in verdict.checks]
    lines += [f"  {reason}" for reason in verdict.reasons]
    return lines, snapshot


def _read(client: KazooClient, path: str, decode: Any, field: str | None) -> str:
    from kazoo.exceptions import NoNodeError

    try:
        data = client.get(path)[0]
    except NoNodeError:
        return "unset"
    try:
        value = decode(data)
    except MalformedEntryError as exc:
        return f"invalid ({exc})"
    return _shown(value if field is None else getattr(value, field))


def _shown(value: object) -> str:
    if value is None or isinstance(value, bool):
        return {True: "on", False: "off", None: "unset"}[value]
    return str(value)


def _write(control: Any, request: tuple[str, Any, tuple[str, ...]], why: str, snapshot: Any) -> Any:
    what, value, hosts = request
    if what == "hosts":
        return control.set_host_reject_all(list(hosts), value, why)
    if what == "fleet":
        return control.set_fleet_reject_all(value, why)
    if what == "maxchange":
        return control.set_maxchange(value, why)
    return control.move_phase(value, snapshot, why)
