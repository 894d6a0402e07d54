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

import boto3
from botocore.config import Config as BotoConfig

from neti_core.config import NetiConfig
from neti_core.errors import MalformedEntryError
from neti_core.members import Side, parse_ipv4, validate_instance_id

log = logging.getLogger(__name__)

_RETRIES = BotoConfig(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5,
                      read_timeout=20)


def ec2_client(config: NetiConfig, **overrides: Any) -> Any:
    """A boto3 EC2 client: neti.yml's keys/region/endpoint if set, else boto3's default chain."""
    kwargs: dict[str, Any] = {"config": _RETRIES}
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
