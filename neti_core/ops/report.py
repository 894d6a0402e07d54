"""``neti report``: which running EC2 instances run Neti (the original ``neti_util.py``).

Running instances (paginated, ignore patterns applied) are joined with the ZooKeeper tree. An
instance is *in Neti* when it has an ``id-to-ip`` entry and a live ``ip-map`` party entry whose
private or public address is the instance's: a recorded overlay IP alone only proves the host ran
Neti once. The agent's version comes from its ``status/<id>`` (what it applied) or, failing that,
the instance's ``neti_version`` tag. The join, the filters and the sort are pure functions.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from neti_core.cliutil import load_config_or_exit
from neti_core.errors import MalformedEntryError
from neti_core.members import Member, ParsedParty, parse_ipv4
from neti_core.ops.common import (
    PROG,
    Subparsers,
    add_config_argument,
    add_json_argument,
    add_zk_arguments,
    aws_fail,
    ec2_client_or_exit,
    zk_session,
)
from neti_core.ops.output import percent, print_json, table
from neti_core.reclaim import usage as used_ips
from neti_core.schema import AgentStatus
from neti_core.versions import Version, natural_key, parse_version

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from neti_core.aws import Instance
    from neti_core.config import NetiConfig, ZkPaths



@dataclass(frozen=True, slots=True)
class NetiView:
    """What ZooKeeper says about the fleet, as read once for the report."""

    ip_to_id: dict[str, str]
    id_to_ip: dict[str, str]
    party: ParsedParty
    statuses: dict[str, AgentStatus]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportRow:
    name: str
    instance_id: str
    side: str
    private_ip: str | None
    public_ip: str | None
    overlay_ip: str | None
    in_neti: bool
    version: str | None
    version_source: str | None  # "status" | "tag" | None
    status: str | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Summary:
    instances: int
    in_neti: int
    percent: float
    listed: int
    unmatched_members: int
    overlay_used: int = 0
    overlay_free: int = 0

    def line(self) -> str:
        return f"{self.instances} instances, {self.in_neti} in Neti ({self.percent:g}%)"

    def overlay_line(self) -> str:
        return (f"overlay IPs: {self.overlay_used} used, {self.overlay_free} free "
                f"(neti report --used-ips: how many are reclaimable)")



def _status_text(status: AgentStatus | None) -> str | None:
    if status is None:
        return None
    if status.error:
        return f"error: {status.error}"
    if status.deadman == "rolled_back":
        return "rolled back"
    if status.guard is not None:
        return f"guard ({status.guard.blocked_removals} removals held)"
    return "ok"


def _matches(member: Member, instance: Instance) -> bool:
    return ((instance.private_ip is not None and member.private == instance.private_ip)
            or (instance.public_ip is not None and member.public == instance.public_ip))


def join(instances: Iterable[Instance], view: NetiView) -> tuple[list[ReportRow], int]:
    """Report rows in natural Name order, and how many live members matched no listed instance."""
    by_address: dict[IPv4Address, list[Member]] = {}
    for member in view.party.members:
        by_address.setdefault(member.private, []).append(member)
        if member.public != member.private:
            by_address.setdefault(member.public, []).append(member)
    matched: set[Member] = set()
    rows = []
    for instance in instances:
        overlay = view.id_to_ip.get(instance.instance_id)
        candidates = {m for ip in (instance.private_ip, instance.public_ip) if ip is not None
                      for m in by_address.get(ip, ()) if _matches(m, instance)}
        matched |= candidates
        notes = []
        in_neti = overlay is not None and bool(candidates)
        if in_neti and not any(str(m.overlay) == overlay for m in candidates):
            live = ", ".join(sorted(str(m.overlay) for m in candidates))
            notes.append(f"party announces overlay {live}, id-to-ip says {overlay}")
        if overlay is None and candidates:
            notes.append("in the party but has no id-to-ip entry")
        status = view.statuses.get(instance.instance_id)
        version, source = (status.version, "status") if status else (instance.neti_version, "tag")
        rows.append(ReportRow(
            name=instance.name, instance_id=instance.instance_id, side=instance.side.value,
            private_ip=None if instance.private_ip is None else str(instance.private_ip),
            public_ip=None if instance.public_ip is None else str(instance.public_ip),
            overlay_ip=overlay, in_neti=in_neti, version=version or None,
            version_source=source if version else None, status=_status_text(status),
            notes=tuple(notes)))
    rows.sort(key=lambda r: (natural_key(r.name), r.instance_id))
    return rows, len(set(view.party.members) - matched)


def select(rows: Sequence[ReportRow], *, in_neti: bool | None = None,
           below: Version | None = None) -> list[ReportRow]:
    """The filters, combined with AND. ``below``: every instance not shown to run at least that
    version: a lower version, or none known or parseable (a host without Neti is below too)."""
    chosen = []
    for row in rows:
        if in_neti is not None and row.in_neti != in_neti:
            continue
        if below is not None:
            version = parse_version(row.version)
            if version is not None and not version < below:
                continue
        chosen.append(row)
    return chosen


def summarize(rows: Sequence[ReportRow], listed: int, unmatched_members: int,
              overlay: tuple[int, int] = (0, 0)) -> Summary:
    """``overlay``: (used, usable) addresses of the overlay subnet."""
    members = sum(1 for r in rows if r.in_neti)
    return Summary(len(rows), members, percent(members, len(rows)), listed, unmatched_members,
                   overlay[0], overlay[1] - overlay[0])


# --- I/O ------------------------------------------------------------------------------------------

def _read_statuses(client: KazooClient, path: str, problems: list[str]) -> dict[str, AgentStatus]:
    from kazoo.exceptions import NoNodeError

    try:
        children = client.get_children(path)
    except NoNodeError:
        return {}
    pending = [(child, client.get_async(f"{path}/{child}")) for child in children]
    statuses = {}
    for child, result in pending:
        try:
            status = AgentStatus.from_json(result.get()[0])
        except NoNodeError:
            continue  # the agent went away while we read
        except MalformedEntryError as exc:
            problems.append(f"status/{child}: {exc}")
            continue
        statuses[status.instance_id] = status
    return statuses


def read_view(client: KazooClient, paths: ZkPaths, subnet: IPv4Network) -> NetiView:
    """Both maps, the live party and every status, validated; bad entries become problems."""
    from kazoo.exceptions import NoNodeError

    from neti_core.members import parse_party
    from neti_core.registry import OverlayRegistry, read_party

    problems: list[str] = []
    ip_to_id, raw_id_to_ip = OverlayRegistry(client, paths, subnet).read_maps()
    id_to_ip = {}
    for instance_id, text in raw_id_to_ip.items():
        try:
            id_to_ip[instance_id] = str(parse_ipv4(text))
        except MalformedEntryError as exc:
            problems.append(f"id-to-ip/{instance_id}: {exc}")
    try:
        party, _ = read_party(client, paths)
    except NoNodeError:
        party = parse_party([])
    problems += [f"ip-map/{name}: {why}" for name, why in party.malformed]
    statuses = _read_statuses(client, paths.status, problems)
    return NetiView(ip_to_id, id_to_ip, party, statuses, tuple(problems))


def _version_arg(text: str) -> Version:
    try:
        return Version(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a version: {text!r}") from None


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="running EC2 instances and whether they run Neti",
        description="Join the running EC2 instances with Neti's ZooKeeper tree.")
    add_config_argument(parser)
    add_zk_arguments(parser)
    add_json_argument(parser)
    membership = parser.add_mutually_exclusive_group()
    membership.add_argument("--in-neti", dest="in_neti", action="store_const", const=True,
                            help="only instances in Neti")
    membership.add_argument("--not-in-neti", dest="in_neti", action="store_const", const=False,
                            help="only instances not in Neti")
    parser.add_argument("--below-version", type=_version_arg, metavar="V",
                        help="only instances not shown to run version V or newer")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--names-only", action="store_true", help="print Name tags, one a line")
    form.add_argument("--overlays-only", action="store_true", help="print overlay IPs, one a line")
    form.add_argument("--used-ips", action="store_true",
                      help="only: overlay IPs used / total in overlay_subnet (ZooKeeper only)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(PROG, args.config)
    if args.used_ips:
        return _print_usage(args, config)
    instances, malformed = _running(config)
    with zk_session(config, args) as client:
        view = read_view(client, config.zk_paths, config.overlay_subnet)
    rows, unmatched = join(instances, view)
    chosen = select(rows, in_neti=args.in_neti, below=args.below_version)
    summary = summarize(rows, len(chosen), unmatched, used_ips(view.ip_to_id, config.overlay_subnet))
    problems = [*malformed, *view.problems]
    _print(args, chosen, summary, problems)
    return 0


def _print_usage(args: argparse.Namespace, config: NetiConfig) -> int:
    """Used and free addresses (ZooKeeper), and how many ``neti registry reclaim`` would give back,
    which needs EC2 too: when EC2 cannot be asked, that count is unknown, not zero."""
    from neti_core.reclaim import PartialInformationError, plan_reclaim, read_evidence

    states, unknown_why = _instance_states(config)
    with zk_session(config, args) as client:
        evidence = read_evidence(client, config.zk_paths, config.overlay_subnet)
    used, total = evidence.used, evidence.total
    document: dict[str, object] = {"used": used, "free": total - used, "total": total,
                                   "percent": percent(used, total), "subnet": str(config.overlay_subnet),
                                   "reclaimable": None, "quarantined": None}
    if states is not None:
        try:
            plan = plan_reclaim(evidence, states, config.reclaim_quarantine, time.time())
        except PartialInformationError as exc:
            unknown_why = str(exc)
        else:
            document["reclaimable"] = len(plan.reclaim)
            document["quarantined"] = len(plan.quarantined) + len(plan.unmarked)
    if args.json:
        print_json(document)
    else:
        gone = (f"reclaimable unknown ({unknown_why})" if document["reclaimable"] is None else
                f"{document['reclaimable']} reclaimable, {document['quarantined']} in quarantine")
        print(f"{used} / {total} overlay IPs used in {config.overlay_subnet} "
              f"({percent(used, total):g}%), {total - used} free; {gone}")
    if unknown_why:
        print(f"{PROG}: warning: reclaimable count unknown: {unknown_why}", file=sys.stderr)
    return 0


def _instance_states(config: NetiConfig) -> tuple[dict[str, str] | None, str | None]:
    from botocore.exceptions import BotoCoreError, ClientError

    from neti_core.aws import instance_states

    try:
        return instance_states(ec2_client_or_exit(config)), None
    except (ClientError, BotoCoreError) as exc:
        return None, f"EC2 API: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _running(config: NetiConfig) -> tuple[list[Instance], list[str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    from neti_core.aws import running_instances

    client = ec2_client_or_exit(config)
    malformed: list[str] = []
    try:
        instances = list(running_instances(client, config.ignore_name_patterns, malformed))
    except (ClientError, BotoCoreError) as exc:
        aws_fail(exc, "listing EC2 instances")
    return instances, [f"instance {m}" for m in malformed]


def _print(args: argparse.Namespace, rows: list[ReportRow], summary: Summary,
           problems: list[str]) -> None:
    if args.names_only or args.overlays_only:
        values = ([r.name for r in rows] if args.names_only
                  else [r.overlay_ip for r in rows if r.overlay_ip is not None])
        if args.json:
            print_json(values)
        elif values:
            print("\n".join(values))
        return
    if args.json:
        print_json({"instances": [asdict(r) for r in rows], "summary": asdict(summary),
                    "problems": problems})
        return
    headers = ("NAME", "INSTANCE", "SIDE", "PRIVATE", "PUBLIC", "OVERLAY", "NETI", "VERSION",
               "STATUS", "NOTES")
    print(table(headers, [(r.name, r.instance_id, r.side, r.private_ip, r.public_ip, r.overlay_ip,
                           r.in_neti, r.version, r.status, "; ".join(r.notes) or None)
                          for r in rows]))
    if summary.unmatched_members:
        print(f"live party entries matching no listed instance: {summary.unmatched_members}")
    if summary.listed != summary.instances:
        print(f"{summary.listed} listed")
    print(summary.overlay_line())
    print(summary.line())
    for problem in problems:
        print(f"{PROG}: warning: {problem}", file=sys.stderr)
