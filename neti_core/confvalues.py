"""Validators for neti.yml values: each takes (key, raw value), returns the typed value or raises.

Every value from the file passes through one of these before anything can carry it towards
ZooKeeper, AWS or the kernel; a failure is one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from neti_core.errors import ConfigError, MalformedEntryError
from neti_core.members import Side, parse_ipv4

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_ZK_NODE = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_IPSET_NAME = re.compile(r"[A-Za-z0-9_-]{1,24}")  # ipset names: at most 31 chars, leave room for suffix
_BACKENDS = ("auto", "nft", "restore", "iptc", "recording")
# The smallest overlay subnet that still leaves room for a fleet: a /30 has 2 usable addresses.
_MAX_OVERLAY_PREFIX = 30


@dataclass(frozen=True, slots=True)
class PortRange:
    """One ``open_ports`` entry: a single port or an inclusive range."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


@dataclass(frozen=True, slots=True)
class ZkHost:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# --- value parsers: each takes (key, raw value) and returns the typed value or raises ---------

def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {type_name(value)}")
    return value


def optional_string(key: str, value: Any) -> str | None:
    return None if value is None else string(key, value)


def unset_if_empty(key: str, value: Any) -> str | None:
    """A credential: the original cookbook writes ``aws_key: ""`` on hosts with an instance role,
    meaning "not set: use the default credential chain", so empty (or blank) is unset here too."""
    if isinstance(value, str) and not value.strip():
        return None
    return optional_string(key, value)


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def number(key: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, got {type_name(value)}")
    if value < minimum:
        raise ConfigError(key, f"must be at least {minimum:g}, got {value}")
    return float(value)


def positive_seconds(key: str, value: Any) -> float:
    seconds = number(key, value)
    if seconds <= 0:
        raise ConfigError(key, f"must be more than 0 seconds, got {value}")
    return seconds


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(key: str, value: Any) -> float:
    """Seconds from ``"7d"``, ``"36h"``, ``"30m"`` or ``"90s"``; a bare number counts days."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) * 86400
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigError(key, f"must be a duration like 7d, 36h, 30m or 90s, got {value!r}")
    if seconds < 0:
        raise ConfigError(key, f"must not be negative, got {value!r}")
    return seconds


def port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a port number, got {value!r}")
    if not 1 <= value <= 65535:
        raise ConfigError(key, f"port {value} is out of range 1-65535")
    return value


def path(key: str, value: Any) -> Path:
    return Path(string(key, value))


def optional_path(key: str, value: Any) -> Path | None:
    return None if value is None else path(key, value)


def _list(key: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list, got {type_name(value)}")
    return value


def network(key: str, value: Any) -> IPv4Network:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be an IPv4 CIDR such as 10.0.0.0/8, got {value!r}")
    try:
        return IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ConfigError(key, f"bad CIDR {value!r}: {exc}") from None


def optional_network(key: str, value: Any) -> IPv4Network | None:
    return None if value is None else network(key, value)


def address(key: str, value: Any) -> IPv4Address:
    try:
        return parse_ipv4(value)
    except MalformedEntryError:
        raise ConfigError(key, f"must be an IPv4 address, got {value!r}") from None


def open_ports(key: str, value: Any) -> tuple[PortRange, ...]:
    ranges = []
    for index, item in enumerate(_list(key, value)):
        item_key = f"{key}[{index}]"
        if isinstance(item, str) and re.fullmatch(r"\d+[:-]\d+", item):
            first, last = (int(p) for p in re.split(r"[:-]", item))
            port(item_key, first)
            port(item_key, last)
            if first > last:
                raise ConfigError(item_key, f"range {item!r} runs backwards")
            ranges.append(PortRange(first, last))
        else:
            single = port(item_key, item)
            ranges.append(PortRange(single, single))
    return tuple(ranges)


def ssh_whitelist(key: str, value: Any) -> tuple[IPv4Network, ...]:
    return tuple(network(f"{key}[{i}]", item) for i, item in enumerate(_list(key, value)))


def zk_prefix(key: str, value: Any) -> str:
    text = string(key, value)
    parts = text.split("/")
    if not text.startswith("/") or text == "/" or not all(_ZK_NODE.fullmatch(p) for p in parts[1:]):
        raise ConfigError(key, f"must be an absolute ZooKeeper path such as /neti, got {text!r}")
    return text


def zk_node(key: str, value: Any) -> str:
    """A node name relative to zk_prefix, or an absolute path."""
    text = string(key, value)
    if text.startswith("/"):
        return zk_prefix(key, text)
    if not _ZK_NODE.fullmatch(text) or text in {".", ".."}:
        raise ConfigError(key, f"must be a ZooKeeper node name (letters, digits, _.-), got {text!r}")
    return text


def overlay_subnet(key: str, value: Any) -> IPv4Network:
    subnet = network(key, value)
    if subnet.prefixlen > _MAX_OVERLAY_PREFIX:
        raise ConfigError(key, f"subnet {subnet} is too small: at most /{_MAX_OVERLAY_PREFIX}")
    return subnet


def zk_host(key: str, value: Any) -> ZkHost:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be 'host:port', got {value!r}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(key, f"must be 'host:port', got {value!r}")
    if not _HOSTNAME.fullmatch(host):
        raise ConfigError(key, f"bad host name {host!r}")
    return ZkHost(host, port(key, int(port_text)))


def zk_hosts(key: str, value: Any) -> dict[Side, tuple[ZkHost, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping with ec2 and vpc lists, got {type_name(value)}")
    hosts = {}
    for side_name, entries in value.items():
        if side_name not in {s.value for s in Side}:
            raise ConfigError(f"{key}.{side_name}", "unknown side (expected ec2 or vpc)")
        side_key = f"{key}.{side_name}"
        hosts[Side(side_name)] = tuple(
            zk_host(f"{side_key}[{i}]", item) for i, item in enumerate(_list(side_key, entries))
        )
    return hosts


def nat_overrides(key: str, value: Any) -> dict[IPv4Address, IPv4Address]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping of overlay IP to address, got {type_name(value)}")
    return {address(f"{key}.{src}", src): address(f"{key}.{src}", dst) for src, dst in value.items()}


def backend(key: str, value: Any) -> str:
    if value not in _BACKENDS:
        raise ConfigError(key, f"must be one of {', '.join(_BACKENDS)}, got {value!r}")
    return str(value)


def ipset_name(key: str, value: Any) -> str:
    text = string(key, value)
    if not _IPSET_NAME.fullmatch(text):
        raise ConfigError(key, f"must be 1-24 letters, digits, _ or -, got {text!r}")
    return text


def url(key: str, value: Any) -> str:
    text = string(key, value)
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(?:/\S*)?", text):
        raise ConfigError(key, f"must be an http(s) URL, got {text!r}")
    return text.rstrip("/")


def optional_url(key: str, value: Any) -> str | None:
    return None if value is None else url(key, value)


def listen_address(key: str, value: Any) -> str:
    return str(address(key, value))


def patterns(key: str, value: Any) -> tuple[str, ...]:
    return tuple(string(f"{key}[{i}]", p) for i, p in enumerate(_list(key, value)))
