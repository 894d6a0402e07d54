"""The EC2 API, through boto3: clients built from neti.yml, running instances, instance tags.

Every address and id that comes back from AWS is validated before anyone uses it: an instance
with a malformed field is reported, not passed on.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from neti_core.config import NetiConfig
from neti_core.errors import MalformedEntryError
from neti_core.members import Side, parse_ipv4, validate_instance_id

log = logging.getLogger(__name__)



def ec2_client(config: NetiConfig, **overrides: Any) -> Any:
    """A boto3 EC2 client: neti.yml's keys/region/endpoint if set, else boto3's default chain.

    boto3 is imported here, not with the module: it takes ~0.25 s, which the console would spend
    before its first paint (it polls EC2 from a worker) and a console without EC2 never needs."""
    import boto3
    from botocore.config import Config as BotoConfig

    retries = BotoConfig(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=20)
    kwargs: dict[str, Any] = {"config": retries}
    if config.aws_key and config.aws_secret_key:
        kwargs["aws_access_key_id"] = config.aws_key
        kwargs["aws_secret_access_key"] = config.aws_secret_key
    if config.aws_region:
        kwargs["region_name"] = config.aws_region
    if config.ec2_endpoint_url:
        kwargs["endpoint_url"] = config.ec2_endpoint_url
    kwargs.update(overrides)
    return boto3.client("ec2", **kwargs)


@dataclass(frozen=True, slots=True)
class Instance:
    """A running EC2 instance as Neti needs it."""

    instance_id: str
    name: str
    side: Side
    private_ip: IPv4Address | None
    public_ip: IPv4Address | None
    state: str
    tags: dict[str, str]
    security_groups: tuple[str, ...] = ()

    @property
    def neti_version(self) -> str | None:
        return self.tags.get("neti_version")

    @property
    def overlay_ip_tag(self) -> str | None:
        return self.tags.get("overlay_ip")


def _optional_ip(value: str | None) -> IPv4Address | None:
    return None if value is None else parse_ipv4(value)


SIDE_TAG = "neti:side"
# The description `neti sg aws-ranges` puts on every rule it makes: how the phases' guards
# recognise a group opened to AWS's ranges (and the only rules --revert ever takes away).
AWS_RANGES_DESCRIPTION = "neti aws-ranges"
_ALL_PORTS = (0, 65535)


def _side(raw: dict[str, Any], tags: dict[str, str]) -> Side:
    """VPC when the instance has a VpcId; a ``neti:side`` tag (ec2 or vpc) overrides that, for
    setups that model EC2-Classic as a VPC (the lab, whose EC2 API has no Classic)."""
    if SIDE_TAG in tags:
        return Side.parse(tags[SIDE_TAG])
    return Side.VPC if raw.get("VpcId") else Side.EC2


def parse_instance(raw: dict[str, Any]) -> Instance:
    """One entry of describe_instances' Instances list; MalformedEntryError if a field is bad."""
    tags = {t["Key"]: t.get("Value", "") for t in raw.get("Tags", []) if "Key" in t}
    return Instance(
        instance_id=validate_instance_id(raw.get("InstanceId", "")),
        name=tags.get("Name", ""),
        side=_side(raw, tags),
        private_ip=_optional_ip(raw.get("PrivateIpAddress")),
        public_ip=_optional_ip(raw.get("PublicIpAddress")),
        state=raw.get("State", {}).get("Name", "unknown"),
        tags=tags,
        security_groups=tuple(g["GroupId"] for g in raw.get("SecurityGroups", []) if "GroupId" in g),
    )


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    """Instances that never run Neti (e.g. the ZooKeeper proxies), by Name tag glob."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def running_instances(client: Any, ignore_patterns: Iterable[str] = (),
                      malformed: list[str] | None = None, page_size: int = 500) -> Iterator[Instance]:
    """Every running instance, through the paginator; ignored and malformed ones left out.

    Malformed ones are appended to ``malformed`` (as one-line reasons) when a list is given.
    """
    patterns = tuple(ignore_patterns)
    paginator = client.get_paginator("describe_instances")
    pages = paginator.paginate(Filters=[{"Name": "instance-state-name", "Values": ["running"]}],
                               PaginationConfig={"PageSize": page_size})
    for page in pages:
        for reservation in page.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                try:
                    instance = parse_instance(raw)
                except MalformedEntryError as exc:
                    log.warning("skipping instance %r: %s", raw.get("InstanceId"), exc)
                    if malformed is not None:
                        malformed.append(f"{raw.get('InstanceId')!r}: {exc}")
                    continue
                if not is_ignored(instance.name, patterns):
                    yield instance


def tag_instance(client: Any, instance_id: str, tags: dict[str, str]) -> None:
    """Set tags on an instance (create_tags overwrites existing values)."""
    client.create_tags(Resources=[validate_instance_id(instance_id)],
                       Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())])


def instance_states(client: Any, page_size: int = 1000) -> dict[str, str]:
    """Every instance EC2 knows in this account and region, in any state: id -> state name.

    Unfiltered, so an id missing from the result is one EC2 does not know (terminated instances
    stay listed for about an hour, then vanish). Any API failure raises: a caller deciding what
    is gone must never act on a partial listing. Malformed ids are left out (nothing can match
    them).
    """
    states: dict[str, str] = {}
    paginator = client.get_paginator("describe_instances")
    for page in paginator.paginate(PaginationConfig={"PageSize": page_size}):
        for reservation in page.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                try:
                    instance_id = validate_instance_id(raw.get("InstanceId", ""))
                except MalformedEntryError:
                    continue
                states[instance_id] = str(raw.get("State", {}).get("Name", "unknown"))
    return states


@dataclass(frozen=True, slots=True)
class GroupOpening:
    """Whether a security group lets AWS's ranges in on every port, as ``neti sg aws-ranges``
    leaves it: at least one range marked with its description for all TCP and all UDP ports."""

    group_id: str
    name: str
    ranges: int  # CIDRs open on every TCP and UDP port with the aws-ranges description

    @property
    def open(self) -> bool:
        return self.ranges > 0


def parse_group_opening(raw: dict[str, Any]) -> GroupOpening:
    """One entry of describe_security_groups; only what ``neti sg aws-ranges`` writes counts."""
    opened: dict[str, set[str]] = {"tcp": set(), "udp": set()}
    for permission in raw.get("IpPermissions", []):
        protocol = {"6": "tcp", "17": "udp"}.get(str(permission.get("IpProtocol")),
                                                 str(permission.get("IpProtocol")))
        ports = (permission.get("FromPort"), permission.get("ToPort"))
        if protocol not in opened or ports != _ALL_PORTS:
            continue
        opened[protocol] |= {r.get("CidrIp", "") for r in permission.get("IpRanges", [])
                             if r.get("Description") == AWS_RANGES_DESCRIPTION}
    return GroupOpening(str(raw.get("GroupId", "")), str(raw.get("GroupName", "")),
                        len(opened["tcp"] & opened["udp"]))


def group_openings(client: Any, group_ids: Iterable[str], chunk: int = 100) -> list[GroupOpening]:
    """The groups of the fleet's instances, read with describe_security_groups (raises on failure)."""
    ids = sorted(set(group_ids))
    groups: list[GroupOpening] = []
    for start in range(0, len(ids), chunk):
        reply = client.describe_security_groups(GroupIds=ids[start:start + chunk])
        groups += [parse_group_opening(raw) for raw in reply.get("SecurityGroups", [])]
    return sorted(groups, key=lambda g: g.group_id)
