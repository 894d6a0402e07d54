"""neti.yml: every key of the original Neti with its original meaning, plus the new ones.

Each value is validated (by :mod:`neti_core.confvalues`) before anything can carry it towards
ZooKeeper, AWS or the kernel. Every problem raises one :class:`ConfigError` that names the key, so
a CLI can print one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from neti_core import confvalues as check
from neti_core.confvalues import PortRange, ZkHost
from neti_core.errors import ConfigError
from neti_core.members import Side

__all__ = ["ConfigError", "NetiConfig", "PortRange", "ZkHost", "ZkPaths", "load_config", "parse_config"]

_DEFAULT_OVERLAY = IPv4Network("192.168.0.0/16")


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
    def members(self) -> str:
        """The bucketed membership mirror (docs/membership.md); ``ip-map`` stays the original party."""
        return f"{self.prefix}/members"

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
    def reclaim_gone(self) -> str:
        """Operator-owned markers: when a reclaim run first saw an instance gone (its ctime)."""
        return f"{self.prefix}/reclaim/gone"

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
    reclaim_quarantine: float = 7 * 86400.0  # seconds; neti.yml takes "7d", "36h", "90s"
    reclaim_auto: bool = False
    # Trust (docs/security.md): who this process is to ZooKeeper, and TLS to it.
    zk_identity: str | None = None
    zk_secret_file: Path | None = None
    zk_shared_agent_secret_file: Path | None = None
    zk_tls_ca_file: Path | None = None
    zk_tls_cert_file: Path | None = None
    zk_tls_key_file: Path | None = None

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


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "aws_key": check.unset_if_empty,
    "aws_secret_key": check.unset_if_empty,
    "log_file": check.optional_path,
    "table_files_path": check.path,
    "open_ports": check.open_ports,
    "reject_all": check.boolean,
    "ssh_whitelist": check.ssh_whitelist,
    "zk_prefix": check.zk_prefix,
    "zk_update_interval_path": check.zk_node,
    "zk_max_change_threshold_path": check.zk_node,
    "zk_iptoid_node": check.zk_node,
    "zk_idtoip_node": check.zk_node,
    "zk_ip_map_node": check.zk_node,
    "overlay_subnet": check.overlay_subnet,
    "zk_hosts": check.zk_hosts,
    "nat_overrides": check.nat_overrides,
    "firewall_backend": check.backend,
    "ipset_name": check.ipset_name,
    "vpc_private_range": check.optional_network,
    "imds_url": check.url,
    "imds_timeout_seconds": check.positive_seconds,
    "aws_region": check.optional_string,
    "ec2_endpoint_url": check.optional_url,
    "zk_session_timeout_seconds": check.positive_seconds,
    "resync_seconds": check.positive_seconds,
    "removal_grace_seconds": check.number,
    "reject_all_confirm_seconds": check.positive_seconds,
    "metrics_address": check.listen_address,
    "metrics_port": lambda k, v: 0 if v == 0 else check.port(k, v),
    "ignore_name_patterns": check.patterns,
    "ec2_poll_seconds": check.positive_seconds,
    "reclaim_quarantine": check.duration,
    "reclaim_auto": check.boolean,
    "zk_identity": check.optional_string,
    "zk_secret_file": check.optional_path,
    "zk_shared_agent_secret_file": check.optional_path,
    "zk_tls_ca_file": check.optional_path,
    "zk_tls_cert_file": check.optional_path,
    "zk_tls_key_file": check.optional_path,
}
assert set(_PARSERS) == {f.name for f in fields(NetiConfig)}, "every config field needs a parser"


def parse_config(raw: Any, source: str = "neti.yml") -> NetiConfig:
    """Validate a mapping (as loaded from YAML) into a NetiConfig."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(top level)", f"must be a mapping of keys, got {check.type_name(raw)}", source)
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


def _check_trust(config: NetiConfig, source: str) -> None:
    if (config.zk_identity is None) != (config.zk_secret_file is None):
        raise ConfigError("zk_secret_file" if config.zk_identity else "zk_identity",
                          "zk_identity and zk_secret_file must be given together", source)
    if config.zk_shared_agent_secret_file is not None and config.zk_identity is None:
        raise ConfigError("zk_shared_agent_secret_file", "needs zk_identity and zk_secret_file", source)
    if (config.zk_tls_cert_file is None) != (config.zk_tls_key_file is None):
        raise ConfigError("zk_tls_key_file" if config.zk_tls_cert_file else "zk_tls_cert_file",
                          "zk_tls_cert_file and zk_tls_key_file must be given together", source)
    if config.zk_tls_cert_file is not None and config.zk_tls_ca_file is None:
        raise ConfigError("zk_tls_ca_file", "a client certificate needs zk_tls_ca_file (TLS)", source)


def _check_consistency(config: NetiConfig, source: str) -> None:
    _check_trust(config, source)
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

