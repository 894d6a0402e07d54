"""What ``neti check`` reads: this host's identity, its status and controls in ZooKeeper, the
kernel's rules (through the firewall backend's read-back, plus ``iptables-save`` of the whole
filter table for the INPUT walk) and the agent's ``/healthz``. Anything it cannot read becomes an
UNKNOWN finding rather than a crash, and the checks that do not need it still run.
"""

from __future__ import annotations

import argparse
import subprocess
from typing import TYPE_CHECKING

from neti_core.config import NetiConfig
from neti_core.errors import MalformedEntryError, NetiError
from neti_core.members import Side, validate_instance_id
from neti_core.ops.check import (
    UNKNOWN,
    Expected,
    Finding,
    evaluate_agent,
    evaluate_reject_all,
    evaluate_ruleset,
    fetch_health,
    health_target,
)
from neti_core.ops.iptsave import SavedTable, every_hook_verdict, parse_save, stranger_verdict
from neti_core.schema import AgentStatus, FleetDefaults, RejectAllOverride, effective_reject_all

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from neti_core.firewall.readback import LiveState

_TIMEOUT = 30.0


def gather(config: NetiConfig, args: argparse.Namespace) -> list[Finding]:
    findings: list[Finding] = []
    instance_id, side = _identity(config, args, findings)
    status, expected, status_read = None, Expected(config.reject_all, "config"), False
    if instance_id is not None:
        status, expected, status_read = _read_zookeeper(config, args, instance_id, side, findings)
    try:
        live, filter_text, native = read_kernel(config, args.netns)
    except (NetiError, OSError, subprocess.SubprocessError) as exc:
        findings.append(Finding(UNKNOWN, "firewall", f"cannot read the firewall: {exc}"))
    else:
        filter_table = parse_save(filter_text).get("filter")
        if native:
            verdict = every_hook_verdict(native_table(live), filter_table)
            findings += evaluate_reject_all(expected, status, verdict)
        elif filter_table is None:
            findings.append(Finding(UNKNOWN, "firewall", "iptables-save printed no filter table"))
        else:
            findings += evaluate_reject_all(expected, status, stranger_verdict(filter_table))
        findings += evaluate_ruleset(live, status, config)
    if instance_id is not None:
        url = health_target(config, args.health_url)
        findings += evaluate_agent(instance_id, status, None if url is None else fetch_health(url),
                                   status_read=status_read)
    return findings


def _identity(config: NetiConfig, args: argparse.Namespace,
              findings: list[Finding]) -> tuple[str | None, Side | None]:
    side = Side(args.side) if args.side else None
    if args.instance_id:
        try:
            return validate_instance_id(args.instance_id), side
        except MalformedEntryError as exc:
            findings.append(Finding(UNKNOWN, "identity", str(exc)))
            return None, side
    from neti_core.imds import MetadataError, fetch_identity

    try:
        identity = fetch_identity(config.imds_url, config.imds_timeout_seconds, attempts=1)
    except MetadataError as exc:
        findings.append(Finding(UNKNOWN, "identity", f"{exc} (pass --instance-id)"))
        return None, side
    return identity.instance_id, side or identity.side


def _read_zookeeper(config: NetiConfig, args: argparse.Namespace, instance_id: str, side: Side | None,
                    findings: list[Finding]) -> tuple[AgentStatus | None, Expected, bool]:
    """(status, expected reject_all, whether ZooKeeper could be read at all)."""
    from kazoo.handlers.threading import KazooTimeoutError

    from neti_core.zkclient import make_client

    expected = Expected(config.reject_all, "config")
    try:
        hosts = args.zk or config.zk_connect_string(side or Side.VPC)
    except NetiError as exc:
        findings.append(Finding(UNKNOWN, "zookeeper", str(exc)))
        return None, expected, False
    client = make_client(config, hosts, read_only=True)
    try:
        client.start(timeout=args.timeout)
    except KazooTimeoutError:
        client.close()
        findings.append(Finding(UNKNOWN, "zookeeper", f"cannot reach {hosts} within {args.timeout:g} s; "
                                                      "reject_all expected from neti.yml only"))
        return None, expected, False
    try:
        return (*_read_documents(client, config, instance_id, findings), True)
    finally:
        client.stop()
        client.close()


def _read_documents(client: KazooClient, config: NetiConfig, instance_id: str,
                    findings: list[Finding]) -> tuple[AgentStatus | None, Expected]:
    from kazoo.exceptions import NoNodeError

    paths = config.zk_paths
    documents = {}
    for key, path in (("status", f"{paths.status}/{instance_id}"),
                      ("host", f"{paths.control_reject_all}/{instance_id}"),
                      ("fleet", paths.control_defaults)):
        try:
            documents[key] = client.get(path)[0]
        except NoNodeError:
            continue
    parsed: dict[str, object] = {}
    for key, kind in (("status", AgentStatus), ("host", RejectAllOverride), ("fleet", FleetDefaults)):
        if key in documents:
            try:
                parsed[key] = kind.from_json(documents[key])
            except MalformedEntryError as exc:
                findings.append(Finding(UNKNOWN, key, f"ignoring malformed document: {exc}"))
    status = parsed.get("status")
    host, fleet = parsed.get("host"), parsed.get("fleet")
    value, source = effective_reject_all(host if isinstance(host, RejectAllOverride) else None,
                                         fleet if isinstance(fleet, FleetDefaults) else None,
                                         config.reject_all)
    return (status if isinstance(status, AgentStatus) else None), Expected(value, source)


def native_table(live: LiveState) -> SavedTable:
    """Neti's nft table (as the nft backend reads it back) as the input chains the walk follows."""
    chains = {name: list(specs) for (table, name), specs in live.chains.items() if table == "filter"}
    chains["INPUT"] = list(live.jumps.get(("filter", "INPUT"), []))
    return SavedTable(chains=chains)


def read_kernel(config: NetiConfig, netns: str | None) -> tuple[LiveState, str, bool]:
    """Neti's objects through the backend's read-back, the whole filter table's save text, and
    whether the backend is nft (Neti's own table, so every table's verdict counts)."""
    from neti_core.firewall.base import FirewallUnavailableError, make_backend

    if config.firewall_backend == "recording":
        raise FirewallUnavailableError("firewall_backend recording programs no kernel")
    backend = make_backend(config, netns=netns)
    try:
        live = backend.read()
        mode = backend.detection.mode if backend.detection else "unknown"
        native = backend.name == "nft"
    finally:
        close = getattr(backend, "close", None)
        if callable(close) and netns is not None:
            close()
    argv = [f"iptables-{mode}-save", "-t", "filter"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT)
    if result.returncode != 0:
        raise FirewallUnavailableError(f"{' '.join(argv)}: {result.stderr.strip()[:300]}")
    return live, result.stdout, native
