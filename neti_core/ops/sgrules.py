"""Security-group ingress rules as values: read what a group has, plan changes, apply the plan.

A plan is the difference between the rules wanted and the rules present, so it lists exactly what
``--apply`` will do, and running it twice does nothing the second time. Applying tolerates the
world moving between plan and apply: a rule someone added meanwhile is skipped, not an error.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any, Literal

from neti_core.cliutil import fail
from neti_core.ops.common import PROG, aws_call, aws_error_code, aws_fail

Action = Literal["authorize", "revoke"]
_PROTOCOLS = {"6": "tcp", "17": "udp", "tcp": "tcp", "udp": "udp", "-1": "all", "all": "all"}
BATCH = 50  # CIDRs per API call; a failed batch is retried one rule at a time


@dataclass(frozen=True, slots=True, order=True)
class Rule:
    """One ingress permission for one CIDR. The description is carried, not compared."""

    group_id: str
    protocol: str
    from_port: int
    to_port: int
    cidr: IPv4Network
    description: str = field(default="", compare=False)

    @property
    def ports(self) -> str:
        return str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    rule: Rule

    def as_dict(self) -> dict[str, Any]:
        rule = self.rule
        return {"action": self.action, "group": rule.group_id, "protocol": rule.protocol,
                "from_port": rule.from_port, "to_port": rule.to_port, "cidr": str(rule.cidr),
                "description": rule.description}


@dataclass(slots=True)
class ApplyResult:
    done: int = 0
    skipped: int = 0  # already present (authorize) or already gone (revoke) when we got there
    calls: int = 0


def parse_permissions(group_id: str, permissions: Iterable[dict[str, Any]],
                      problems: list[str] | None = None) -> set[Rule]:
    """The IPv4 CIDR rules of a group's IpPermissions; each CIDR is validated, bad ones reported."""
    rules = set()
    for permission in permissions:
        protocol = _PROTOCOLS.get(str(permission.get("IpProtocol", "")), str(permission.get("IpProtocol")))
        from_port = int(permission.get("FromPort", -1) or 0) if protocol != "all" else 0
        to_port = int(permission.get("ToPort", -1) or 0) if protocol != "all" else 65535
        for entry in permission.get("IpRanges", []):
            text = entry.get("CidrIp", "")
            try:
                cidr = IPv4Network(text, strict=True)
            except (ValueError, TypeError) as exc:
                if problems is not None:
                    problems.append(f"{group_id}: ignoring malformed CIDR {text!r} from AWS: {exc}")
                continue
            rules.add(Rule(group_id, protocol, from_port, to_port, cidr, entry.get("Description", "")))
    return rules


def plan(wanted: Iterable[Rule], present: Iterable[Rule], *, revert: bool = False) -> list[Change]:
    """Authorize wanted minus present; with ``revert``, revoke wanted and present. Sorted."""
    present_set = set(present)
    if revert:
        return [Change("revoke", r) for r in sorted(set(wanted) & present_set)]
    return [Change("authorize", r) for r in sorted(set(wanted) - present_set)]


def host_cidr(address: ipaddress.IPv4Address) -> IPv4Network:
    return IPv4Network(f"{address}/32")


def read_group(client: Any, group_id: str, problems: list[str] | None = None) -> set[Rule]:
    """The group's ingress rules; a missing group is one error line (exit 2)."""
    reply = aws_call(f"reading security group {group_id}", client.describe_security_groups,
                     GroupIds=[group_id])
    groups = [g for g in reply.get("SecurityGroups", []) if g.get("GroupId") == group_id]
    if not groups:
        fail(PROG, f"reading security group {group_id}: security group not found")
    return parse_permissions(group_id, groups[0].get("IpPermissions", []), problems)


def _permission(rules: Sequence[Rule], *, with_description: bool) -> dict[str, Any]:
    first = rules[0]
    ranges = [{"CidrIp": str(r.cidr), **({"Description": r.description}
                                         if with_description and r.description else {})}
              for r in rules]
    return {"IpProtocol": first.protocol, "FromPort": first.from_port, "ToPort": first.to_port,
            "IpRanges": ranges}


def apply(client: Any, changes: Sequence[Change], *, pace: float = 0.0,
          sleep: Callable[[float], None] = time.sleep) -> ApplyResult:
    """Carry out a plan in batches; pace the calls by ``pace`` seconds (AWS API rate limits)."""
    from botocore.exceptions import ClientError

    result = ApplyResult()
    groups: dict[tuple[Action, str, str, int, int, str], list[Rule]] = {}
    for change in changes:
        r = change.rule
        key = (change.action, r.group_id, r.protocol, r.from_port, r.to_port, r.description)
        groups.setdefault(key, []).append(r)
    tolerated = {"authorize": "InvalidPermission.Duplicate", "revoke": "InvalidPermission.NotFound"}

    def call(action: Action, rules: Sequence[Rule]) -> None:
        if result.calls and pace > 0:
            sleep(pace)
        result.calls += 1
        method = (client.authorize_security_group_ingress if action == "authorize"
                  else client.revoke_security_group_ingress)
        method(GroupId=rules[0].group_id,
               IpPermissions=[_permission(rules, with_description=action == "authorize")])

    def failed(exc: ClientError, action: Action, group_id: str) -> None:
        if aws_error_code(exc) != tolerated[action]:
            aws_fail(exc, f"{action} on {group_id} (after {result.done} of {len(changes)} changes; "
                          "run again to finish: the plan is recomputed)")

    for (action, group_id, *_rest), rules in groups.items():
        for start in range(0, len(rules), BATCH):
            batch = rules[start:start + BATCH]
            try:
                call(action, batch)
                result.done += len(batch)
                continue
            except ClientError as exc:
                failed(exc, action, group_id)
            for rule in batch:  # the world moved: one at a time, skipping what is already so
                try:
                    call(action, [rule])
                    result.done += 1
                except ClientError as exc:
                    failed(exc, action, group_id)
                    result.skipped += 1
    return result
