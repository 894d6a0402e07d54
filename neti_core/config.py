"""neti.yml: every key of the original Neti with its original meaning, plus the new ones.

Each value is validated here, before anything can carry it towards ZooKeeper, AWS or the kernel.
Every problem raises one :class:`ConfigError` that names the key, so a CLI can print one line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from neti_core.errors import ConfigError, MalformedEntryError
from neti_core.model import Side, parse_ipv4

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_ZK_NODE = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_IPSET_NAME = re.compile(r"[A-Za-z0-9_-]{1,24}")  # ipset names: at most 31 chars, leave room for suffix
_BACKENDS = ("auto", "restore", "iptc", "recording")
# The smallest overlay subnet that still leaves room for a fleet: a /30 has 2 usable addresses.
_MAX_OVERLAY_PREFIX = 30
_DEFAULT_OVERLAY = IPv4Network("192.168.0.0/16")


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


@dataclass(frozen=True, slots=True)
class ZkPaths:
    """Absolute ZooKeeper paths of Neti's tree, derived from the configured prefix and node names."""

    prefix: str
    ip_to_id: str
    id_to_ip: str
    ip_map: str
    interval: str
    maxchange: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def control(self) -> str:
        return f"{self.prefix}/control"

    @property
    def control_reject_all(self) -> str:
        return f"{self.prefix}/control/reject_all"

    @property
    def control_defaults(self) -> str:
        return f"{self.prefix}/control/defaults"

    @property
    def control_phase(self) -> str:
        return f"{self.prefix}/control/phase"

    @property
    def audit(self) -> str:
        return f"{self.prefix}/audit"

    @classmethod
    def under(cls, prefix: str) -> ZkPaths:
        """The default layout under ``prefix`` (what an unconfigured original agent used)."""
        return cls(prefix, f"{prefix}/ip-to-id", f"{prefix}/id-to-ip", f"{prefix}/ip-map",
                   f"{prefix}/interval", f"{prefix}/maxchange")


@dataclass(frozen=True)
class NetiConfig:
    """The validated neti.yml. Field names are the YAML keys."""

    # Keys of the original Neti.
    aws_key: str | None = None
    aws_secret_key: str | None = None
    log_file: Path | None = None
    table_files_path: Path = Path("/var/lib/neti")
    open_ports: tuple[PortRange, ...] = ()
    reject_all: bool = False
    ssh_whitelist: tuple[IPv4Network, ...] = ()
    zk_prefix: str = "/neti"
    zk_update_interval_path: str = "interval"
    zk_max_change_threshold_path: str = "maxchange"
    zk_iptoid_node: str = "ip-to-id"
    zk_idtoip_node: str = "id-to-ip"
    zk_ip_map_node: str = "ip-map"
    overlay_subnet: IPv4Network = _DEFAULT_OVERLAY
    zk_hosts: Mapping[Side, tuple[ZkHost, ...]] = field(default_factory=dict)
    nat_overrides: Mapping[IPv4Address, IPv4Address] = field(default_factory=dict)
    # New in this implementation (documented in conf/neti.yml).
    firewall_backend: str = "auto"
    ipset_name: str = "ec2_whitelist"
    vpc_private_range: IPv4Network | None = None
    imds_url: str = "http://169.254.169.254"
    imds_timeout_seconds: float = 2.0
    aws_region: str | None = None
    ec2_endpoint_url: str | None = None
    zk_session_timeout_seconds: float = 10.0
    resync_seconds: float = 60.0
    removal_grace_seconds: float = 60.0
    reject_all_confirm_seconds: float = 30.0
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 9137
    ignore_name_patterns: tuple[str, ...] = ("zkneti*",)
    ec2_poll_seconds: float = 60.0

    @property
    def zk_paths(self) -> ZkPaths:
        def under_prefix(node: str) -> str:
            return node if node.startswith("/") else f"{self.zk_prefix}/{node}"

        return ZkPaths(
            prefix=self.zk_prefix,
            ip_to_id=under_prefix(self.zk_iptoid_node),
            id_to_ip=under_prefix(self.zk_idtoip_node),
            ip_map=under_prefix(self.zk_ip_map_node),
            interval=under_prefix(self.zk_update_interval_path),
            maxchange=under_prefix(self.zk_max_change_threshold_path),
        )

    def zk_connect_string(self, side: Side) -> str:
        hosts = self.zk_hosts.get(side, ())
        if not hosts:
            raise ConfigError("zk_hosts", f"no ZooKeeper hosts for side {side.value!r}")
        return ",".join(str(h) for h in hosts)


# --- value parsers: each takes (key, raw value) and returns the typed value or raises ---------

def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {_type_name(value)}")
    return value


def _optional_string(key: str, value: Any) -> str | None:
    return None if value is None else _string(key, value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _number(key: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, got {_type_name(value)}")
    if value < minimum:
        raise ConfigError(key, f"must be at least {minimum:g}, got {value}")
    return float(value)


def _positive_seconds(key: str, value: Any) -> float:
    seconds = _number(key, value)
    if seconds <= 0:
        raise ConfigError(key, f"must be more than 0 seconds, got {value}")
    return seconds


def _port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a port number, got {value!r}")
    if not 1 <= value <= 65535:
        raise ConfigError(key, f"port {value} is out of range 1-65535")
    return value


def _path(key: str, value: Any) -> Path:
    return Path(_string(key, value))


def _optional_path(key: str, value: Any) -> Path | None:
    return None if value is None else _path(key, value)


def _list(key: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list, got {_type_name(value)}")
    return value


def _network(key: str, value: Any) -> IPv4Network:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be an IPv4 CIDR such as 10.0.0.0/8, got {value!r}")
    try:
        return IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ConfigError(key, f"bad CIDR {value!r}: {exc}") from None


def _optional_network(key: str, value: Any) -> IPv4Network | None:
    return None if value is None else _network(key, value)


def _address(key: str, value: Any) -> IPv4Address:
    try:
        return parse_ipv4(value)
    except MalformedEntryError:
        raise ConfigError(key, f"must be an IPv4 address, got {value!r}") from None


def _open_ports(key: str, value: Any) -> tuple[PortRange, ...]:
    ranges = []
    for index, item in enumerate(_list(key, value)):
        item_key = f"{key}[{index}]"
        if isinstance(item, str) and re.fullmatch(r"\d+[:-]\d+", item):
            first, last = (int(p) for p in re.split(r"[:-]", item))
            _port(item_key, first)
            _port(item_key, last)
            if first > last:
                raise ConfigError(item_key, f"range {item!r} runs backwards")
            ranges.append(PortRange(first, last))
        else:
            port = _port(item_key, item)
            ranges.append(PortRange(port, port))
    return tuple(ranges)


def _ssh_whitelist(key: str, value: Any) -> tuple[IPv4Network, ...]:
    return tuple(_network(f"{key}[{i}]", item) for i, item in enumerate(_list(key, value)))


def _zk_prefix(key: str, value: Any) -> str:
    text = _string(key, value)
    parts = text.split("/")
    if not text.startswith("/") or text == "/" or not all(_ZK_NODE.fullmatch(p) for p in parts[1:]):
        raise ConfigError(key, f"must be an absolute ZooKeeper path such as /neti, got {text!r}")
    return text


def _zk_node(key: str, value: Any) -> str:
    """A node name relative to zk_prefix, or an absolute path."""
    text = _string(key, value)
    if text.startswith("/"):
        return _zk_prefix(key, text)
    if not _ZK_NODE.fullmatch(text) or text in {".", ".."}:
        raise ConfigError(key, f"must be a ZooKeeper node name (letters, digits, _.-), got {text!r}")
    return text


def _overlay_subnet(key: str, value: Any) -> IPv4Network:
    network = _network(key, value)
    if network.prefixlen > _MAX_OVERLAY_PREFIX:
        raise ConfigError(key, f"subnet {network} is too small: at most /{_MAX_OVERLAY_PREFIX}")
    return network


def _zk_host(key: str, value: Any) -> ZkHost:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be 'host:port', got {value!r}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(key, f"must be 'host:port', got {value!r}")
    if not _HOSTNAME.fullmatch(host):
        raise ConfigError(key, f"bad host name {host!r}")
    return ZkHost(host, _port(key, int(port_text)))


def _zk_hosts(key: str, value: Any) -> dict[Side, tuple[ZkHost, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping with ec2 and vpc lists, got {_type_name(value)}")
    hosts = {}
    for side_name, entries in value.items():
        if side_name not in {s.value for s in Side}:
            raise ConfigError(f"{key}.{side_name}", "unknown side (expected ec2 or vpc)")
        side_key = f"{key}.{side_name}"
        hosts[Side(side_name)] = tuple(
            _zk_host(f"{side_key}[{i}]", item) for i, item in enumerate(_list(side_key, entries))
        )
    return hosts


def _nat_overrides(key: str, value: Any) -> dict[IPv4Address, IPv4Address]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping of overlay IP to address, got {_type_name(value)}")
    return {_address(f"{key}.{src}", src): _address(f"{key}.{src}", dst) for src, dst in value.items()}


def _backend(key: str, value: Any) -> str:
    if value not in _BACKENDS:
        raise ConfigError(key, f"must be one of {', '.join(_BACKENDS)}, got {value!r}")
    return value


def _ipset_name(key: str, value: Any) -> str:
    text = _string(key, value)
    if not _IPSET_NAME.fullmatch(text):
        raise ConfigError(key, f"must be 1-24 letters, digits, _ or -, got {text!r}")
    return text


def _url(key: str, value: Any) -> str:
    text = _string(key, value)
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(?:/\S*)?", text):
        raise ConfigError(key, f"must be an http(s) URL, got {text!r}")
    return text.rstrip("/")


def _optional_url(key: str, value: Any) -> str | None:
    return None if value is None else _url(key, value)


def _listen_address(key: str, value: Any) -> str:
    return str(_address(key, value))


def _patterns(key: str, value: Any) -> tuple[str, ...]:
    return tuple(_string(f"{key}[{i}]", p) for i, p in enumerate(_list(key, value)))


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "aws_key": _optional_string,
    "aws_secret_key": _optional_string,
    "log_file": _optional_path,
    "table_files_path": _path,
    "open_ports": _open_ports,
    "reject_all": _bool,
    "ssh_whitelist": _ssh_whitelist,
    "zk_prefix": _zk_prefix,
    "zk_update_interval_path": _zk_node,
    "zk_max_change_threshold_path": _zk_node,
    "zk_iptoid_node": _zk_node,
    "zk_idtoip_node": _zk_node,
    "zk_ip_map_node": _zk_node,
    "overlay_subnet": _overlay_subnet,
    "zk_hosts": _zk_hosts,
    "nat_overrides": _nat_overrides,
    "firewall_backend": _backend,
    "ipset_name": _ipset_name,
    "vpc_private_range": _optional_network,
    "imds_url": _url,
    "imds_timeout_seconds": _positive_seconds,
    "aws_region": _optional_string,
    "ec2_endpoint_url": _optional_url,
    "zk_session_timeout_seconds": _positive_seconds,
    "resync_seconds": _positive_seconds,
    "removal_grace_seconds": _number,
    "reject_all_confirm_seconds": _positive_seconds,
    "metrics_address": _listen_address,
    "metrics_port": lambda k, v: 0 if v == 0 else _port(k, v),
    "ignore_name_patterns": _patterns,
    "ec2_poll_seconds": _positive_seconds,
}
assert set(_PARSERS) == {f.name for f in fields(NetiConfig)}, "every config field needs a parser"


def parse_config(raw: Any, source: str = "neti.yml") -> NetiConfig:
    """Validate a mapping (as loaded from YAML) into a NetiConfig."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", f"must be a mapping of keys, got {_type_name(raw)}", source)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        parser = _PARSERS.get(key)
        if parser is None:
            close = difflib.get_close_matches(str(key), _PARSERS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(str(key), f"unknown key{hint}", source)
        try:
            values[key] = parser(key, value)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.problem, source) from None
    config = NetiConfig(**values)
    _check_consistency(config, source)
    return config


def _check_consistency(config: NetiConfig, source: str) -> None:
    if (config.aws_key is None) != (config.aws_secret_key is None):
        raise ConfigError("aws_secret_key" if config.aws_key else "aws_key",
                          "aws_key and aws_secret_key must be given together", source)
    vpc = config.vpc_private_range
    if vpc is not None and vpc.overlaps(config.overlay_subnet):
        raise ConfigError("overlay_subnet", f"{config.overlay_subnet} overlaps vpc_private_range {vpc}",
                          source)
    for overlay in config.nat_overrides:
        if overlay not in config.overlay_subnet:
            raise ConfigError(f"nat_overrides.{overlay}",
                              f"is not in overlay_subnet {config.overlay_subnet}", source)


def load_config(path: str | Path) -> NetiConfig:
    """Read and validate a neti.yml file; every failure is a one-line ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read: {exc.strerror or exc}", source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}", source) from None
    return parse_config(raw, source)

