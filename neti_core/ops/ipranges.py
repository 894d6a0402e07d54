"""AWS's published ``ip-ranges.json``: read, validate, filter by region and service, collapse.

The file is input from outside on its way into a security group, so it is checked whole before
anything is used: one malformed prefix makes the file unusable (an error naming the entry), rather
than authorizing a partial or surprising set of ranges. IPv4 only: Neti's overlay is IPv4.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from neti_core.errors import NetiError


class RangesFileError(NetiError):
    """An unreadable or malformed ip-ranges.json (one line, names the entry)."""


@dataclass(frozen=True, slots=True)
class AwsPrefix:
    network: IPv4Network
    region: str
    service: str


@dataclass(frozen=True, slots=True)
class RangesFile:
    sync_token: str | None
    create_date: str | None
    prefixes: tuple[AwsPrefix, ...]


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise RangesFileError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def parse_ranges(document: Any, source: str = "ip-ranges.json") -> RangesFile:
    """Validate a decoded ip-ranges.json document (``prefixes``: ip_prefix, region, service)."""
    if not isinstance(document, dict) or not isinstance(document.get("prefixes"), list):
        raise RangesFileError(f"{source}: not in AWS's ip-ranges format (no 'prefixes' list)")
    prefixes = []
    for index, entry in enumerate(document["prefixes"]):
        where = f"{source}: prefixes[{index}]"
        if not isinstance(entry, dict):
            raise RangesFileError(f"{where}: must be an object")
        text = _text(entry, "ip_prefix", where)
        try:
            network = IPv4Network(text, strict=True)
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as exc:
            raise RangesFileError(f"{where}: bad ip_prefix {text!r}: {exc}") from None
        prefixes.append(AwsPrefix(network, _text(entry, "region", where), _text(entry, "service", where)))
    token, date = document.get("syncToken"), document.get("createDate")
    return RangesFile(str(token) if token is not None else None,
                      str(date) if date is not None else None, tuple(prefixes))


def load_ranges(path: str | Path) -> RangesFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RangesFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise RangesFileError(f"{path}: not JSON: {exc}") from None
    return parse_ranges(document, str(path))


def select(prefixes: Iterable[AwsPrefix], regions: Iterable[str] | None,
           services: Iterable[str]) -> list[IPv4Network]:
    """The prefixes of the given regions (None: every region) and services, collapsed.

    AWS lists the same range under several services (AMAZON is the superset) and often as
    adjacent blocks: collapsing them keeps a security group well under its rule quota while
    covering exactly the same addresses.
    """
    wanted_regions = None if regions is None else {r.lower() for r in regions}
    wanted_services = {s.upper() for s in services}
    chosen = [p.network for p in prefixes
              if p.service.upper() in wanted_services
              and (wanted_regions is None or p.region.lower() in wanted_regions)]
    return sorted(ipaddress.collapse_addresses(chosen))
