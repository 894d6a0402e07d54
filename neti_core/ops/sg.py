"""``neti sg``: security-group helpers of the migration, plan first, ``--apply`` to act.

* ``aws-ranges`` (the original ``ip_ranges.py``): allow (or, in an emergency, ``--revert``) AWS's
  public ranges on a group, all TCP and UDP ports. Once every host runs Neti with reject_all, the
  hosts' own firewalls decide, and security groups only need to let AWS's ranges through.
* ``sync-zk-proxy`` (the original ``update_zkneti_groups.py``): allow the ZooKeeper port between the
  VPC ensemble and the EC2 proxies by their public addresses, and remove addresses of hosts that
  are gone. Only rules this command made (their description) are ever removed, so an operator's
  hand-made rule on the same port survives.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from neti_core.aws import AWS_RANGES_DESCRIPTION
from neti_core.cliutil import fail, load_config_or_exit
from neti_core.ops import sgrules
from neti_core.ops.common import (
    PROG,
    Subparsers,
    add_config_argument,
    add_json_argument,
    aws_call,
    ec2_client_or_exit,
    group_id,
)
from neti_core.ops.output import print_json, table
from neti_core.ops.sgrules import Change, Rule, host_cidr

if TYPE_CHECKING:
    from neti_core.aws import Instance

RANGES_DESCRIPTION = AWS_RANGES_DESCRIPTION
ZK_PROXY_DESCRIPTION = "neti sync-zk-proxy"
ALL_PORTS = (0, 65535)


# --- pure: the sync-zk-proxy plan ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ZkProxyPlan:
    changes: list[Change]
    unchanged: int
    warnings: list[str] = field(default_factory=list)
    vpc_hosts: int = 0
    proxies: int = 0


def zk_proxy_plan(instances: Iterable[Instance], vpc_group: str, proxy_group: str,
                  present: dict[str, set[Rule]], port: int, *,
                  include_unmarked: bool = False) -> ZkProxyPlan:
    """Each group should allow ``port`` from every public address of the other group's hosts.

    Stale = a rule on exactly tcp ``port`` for a single address that this command made (or any
    such /32 with ``include_unmarked``, for groups set up by the original script) and that no
    running host of the other group has any more.
    """
    members: dict[str, list[Instance]] = {vpc_group: [], proxy_group: []}
    for instance in instances:
        for group in (vpc_group, proxy_group):
            if group in instance.security_groups:
                members[group].append(instance)
    warnings = [f"{i.instance_id} ({i.name or 'no name'}) in {group} has no public address: "
                "it cannot be allowed" for group, hosts in members.items() for i in hosts
                if i.public_ip is None]
    changes: list[Change] = []
    unchanged = 0
    for group, other in ((vpc_group, proxy_group), (proxy_group, vpc_group)):
        wanted = {Rule(group, "tcp", port, port, host_cidr(i.public_ip), ZK_PROXY_DESCRIPTION)
                  for i in members[other] if i.public_ip is not None}
        have = present.get(group, set())
        changes += sgrules.plan(wanted, have)
        unchanged += len(wanted & have)
        stale = {r for r in have - wanted
                 if r.protocol == "tcp" and r.from_port == port and r.to_port == port
                 and r.cidr.prefixlen == 32
                 and (r.description == ZK_PROXY_DESCRIPTION or include_unmarked)}
        changes += [Change("revoke", r) for r in sorted(stale)]
    return ZkProxyPlan(changes, unchanged, warnings, len(members[vpc_group]), len(members[proxy_group]))


def ranges_rules(group: str, networks: Iterable[Any]) -> list[Rule]:
    """All TCP and all UDP ports from each network."""
    return [Rule(group, protocol, *ALL_PORTS, network, RANGES_DESCRIPTION)
            for network in networks for protocol in ("tcp", "udp")]


# --- output ---------------------------------------------------------------------------------------

def plan_and_apply(args: argparse.Namespace, client: Any, changes: Sequence[Change], unchanged: int,
                   extra: dict[str, Any]) -> int:
    """Show the plan, then (with --apply) carry it out: a person sees the plan before AWS changes."""
    if not args.json:
        if changes:
            print(table(("ACTION", "GROUP", "PROTOCOL", "PORTS", "CIDR"),
                        [(c.action, c.rule.group_id, c.rule.protocol, c.rule.ports, c.rule.cidr)
                         for c in changes]))
        counts = {a: sum(1 for c in changes if c.action == a) for a in ("authorize", "revoke")}
        print(f"plan: {counts['authorize']} to authorize, {counts['revoke']} to revoke, "
              f"{unchanged} already as wanted", flush=True)
    result = sgrules.apply(client, changes, pace=args.pace) if args.apply else None
    if args.json:
        print_json({"changes": [c.as_dict() for c in changes], "unchanged": unchanged,
                    "applied": result is not None, "done": result.done if result else 0,
                    "skipped": result.skipped if result else 0,
                    "calls": result.calls if result else 0, **extra})
    elif result is not None:
        print(f"applied: {result.done} changed, {result.skipped} already so when applied "
              f"({result.calls} API calls)")
    elif changes:
        print("dry run: nothing changed; run again with --apply to do it")
    return 0


# --- the commands ---------------------------------------------------------------------------------

def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("sg", help="security-group helpers (plan first, --apply to act)")
    actions = parser.add_subparsers(dest="sg_command", required=True, metavar="ACTION")

    ranges = actions.add_parser("aws-ranges", help="allow AWS's public IP ranges on a group",
                                description="Authorize (or --revert) all TCP and UDP ports from "
                                            "AWS's published ranges on a security group.")
    add_config_argument(ranges)
    ranges.add_argument("--group", required=True, type=group_id, action="append", dest="groups",
                        metavar="GROUP", help="sg-… (repeatable: every group of the fleet at once)")
    ranges.add_argument("--ranges-file", required=True, metavar="PATH",
                        help="ip-ranges.json in AWS's published format")
    regions = ranges.add_mutually_exclusive_group()
    regions.add_argument("--region", action="append", dest="regions", metavar="REGION",
                         help="ranges of this region (repeatable; default: the client's region)")
    regions.add_argument("--all-regions", action="store_true", help="ranges of every region")
    ranges.add_argument("--service", action="append", dest="services", metavar="SERVICE",
                        help="ranges of this service (repeatable; default: EC2)")
    ranges.add_argument("--revert", action="store_true", help="revoke the ranges instead")
    _common_apply_arguments(ranges)
    ranges.set_defaults(handler=run_aws_ranges)

    zk = actions.add_parser("sync-zk-proxy", help="allow ZooKeeper between the ensemble and proxies",
                            description="Allow the ZooKeeper port between the VPC ZooKeeper hosts "
                                        "and the EC2 proxy hosts by public address; remove stale ones.")
    add_config_argument(zk)
    zk.add_argument("--vpc-group", required=True, type=group_id, help="the VPC ZooKeeper hosts' sg-…")
    zk.add_argument("--proxy-group", required=True, type=group_id, help="the EC2 proxy hosts' sg-…")
    zk.add_argument("--port", type=_port, default=2181, help="ZooKeeper client port (2181)")
    zk.add_argument("--include-unmarked", action="store_true",
                    help="also remove single-address rules on the port not made by neti "
                         "(groups set up by the original script)")
    zk.add_argument("--allow-empty", action="store_true",
                    help="go on even if a group has no running hosts (removes every address)")
    _common_apply_arguments(zk)
    zk.set_defaults(handler=run_sync_zk_proxy)


def _common_apply_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true", help="carry out the plan (default: show it)")
    parser.add_argument("--pace", type=float, default=0.0, metavar="SECONDS",
                        help="pause between API calls (AWS rate limits)")
    add_json_argument(parser)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return int(text)


def run_aws_ranges(args: argparse.Namespace) -> int:
    from neti_core.ops.ipranges import RangesFileError, load_ranges, select

    config = load_config_or_exit(PROG, args.config)
    try:
        ranges = load_ranges(args.ranges_file)
    except RangesFileError as exc:
        fail(PROG, str(exc))
    client = ec2_client_or_exit(config)
    regions = None if args.all_regions else (args.regions or [client.meta.region_name])
    services = args.services or ["EC2"]
    networks = select(ranges.prefixes, regions, services)
    if not networks:
        fail(PROG, f"{args.ranges_file}: no IPv4 prefixes for region {', '.join(regions or ['*'])} "
                   f"and service {', '.join(services)}")
    problems: list[str] = []
    groups = list(dict.fromkeys(args.groups))
    changes: list[Change] = []
    unchanged = 0
    for group in groups:
        present = sgrules.read_group(client, group, problems)
        wanted = ranges_rules(group, networks)
        planned = sgrules.plan(wanted, present, revert=args.revert)
        changes += planned
        unchanged += len(wanted) - len(planned)
    _warn(problems)
    return plan_and_apply(args, client, changes, unchanged,
                          {"group": groups[0], "groups": groups, "networks": len(networks),
                           "sync_token": ranges.sync_token})


def run_sync_zk_proxy(args: argparse.Namespace) -> int:
    from neti_core.aws import running_instances

    config = load_config_or_exit(PROG, args.config)
    if args.vpc_group == args.proxy_group:
        fail(PROG, "--vpc-group and --proxy-group must be different groups")
    client = ec2_client_or_exit(config)
    problems: list[str] = []
    present = {group: sgrules.read_group(client, group, problems)
               for group in (args.vpc_group, args.proxy_group)}
    malformed: list[str] = []
    # No ignore patterns here: the proxies are exactly the hosts the report ignores.
    instances = aws_call("listing EC2 instances",
                         lambda: list(running_instances(client, (), malformed)))
    problems += [f"skipped malformed instance {m}" for m in malformed]
    zk_plan = zk_proxy_plan(instances, args.vpc_group, args.proxy_group, present, args.port,
                            include_unmarked=args.include_unmarked)
    _warn([*problems, *zk_plan.warnings])
    for group, count in ((args.vpc_group, zk_plan.vpc_hosts), (args.proxy_group, zk_plan.proxies)):
        if count == 0 and not args.allow_empty:
            fail(PROG, f"no running instances in {group}: refusing to remove every address "
                       "(check the group id, or pass --allow-empty)")
    return plan_and_apply(args, client, zk_plan.changes, zk_plan.unchanged,
                          {"vpc_group": args.vpc_group, "proxy_group": args.proxy_group,
                           "port": args.port, "vpc_hosts": zk_plan.vpc_hosts,
                           "proxies": zk_plan.proxies})


def _warn(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
