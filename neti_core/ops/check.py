"""``neti check``: the Nagios/Sensu check of one host (the original Sensu packet-drop check).

Exit codes are Nagios': 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. What is checked, and why:

* **INPUT drops what it should**: with reject_all expected (host override > fleet default >
  neti.yml), the live filter INPUT chain, every tool's rules included, must end a stranger's
  connection (see ``iptsave``). A rule someone put in front of Neti's jump defeats reject_all
  without touching Neti's own chains, so only walking INPUT itself catches it.
* **Neti's objects match the agent's last applied ruleset**: the live set and DNAT map, with the
  chains and jumps neti.yml prescribes, are rebuilt into a RuleSet; its chains/jumps are compared
  with the kernel (a missing chain, jump or set is CRITICAL) and its hash with the ``ruleset_hash``
  the agent published in ``status/<id>`` (different content is WARNING: the agent's periodic resync
  repairs it).
* **The agent is healthy**: ``status/<id>`` exists and carries no error; ``/healthz`` answers healthy.

Gathering (kernel, ZooKeeper, HTTP) is separate from the pure evaluation, which is tested directly.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from neti_core.cliutil import load_config_or_exit
from neti_core.config import NetiConfig
from neti_core.errors import MalformedEntryError
from neti_core.firewall.readback import LiveState, compare
from neti_core.members import Side, parse_ipv4
from neti_core.ops.common import PROG, Subparsers, add_config_argument, add_json_argument
from neti_core.ops.iptsave import Verdict
from neti_core.ops.output import print_json
from neti_core.rules import DNAT_CHAIN, NAT, RuleSet, build_ruleset
from neti_core.schema import AgentStatus

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Aggregation as monitoring-plugins' max_state_alt: CRITICAL > WARNING > UNKNOWN > OK.
_RANK = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}
_DNAT_SPEC = re.compile(r"-d (\S+)/32 -j DNAT --to-destination (\S+)")
_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Finding:
    state: int
    check: str
    message: str


@dataclass(frozen=True, slots=True)
class Expected:
    """The effective reject_all and where it came from (host, fleet, config)."""

    reject_all: bool
    source: str


@dataclass(frozen=True, slots=True)
class Health:
    reachable: bool
    healthy: bool
    detail: str


def overall(findings: list[Finding]) -> int:
    return max((f.state for f in findings), key=_RANK.__getitem__, default=OK)


# --- pure evaluation ------------------------------------------------------------------------------

def rebuild_from_live(live: LiveState, side: Side, reject_all: bool,
                      config: NetiConfig) -> tuple[RuleSet, list[str]]:
    """The RuleSet the kernel holds, assuming neti.yml's chains: members and DNAT come from the
    kernel (validated), chains and jumps from the config. Its hash is comparable with the agent's."""
    template = build_ruleset(side, [], config, reject_all)
    problems = []
    members = set()
    for text in live.ipset or ():
        try:
            members.add(parse_ipv4(text))
        except MalformedEntryError:
            problems.append(f"ipset {config.ipset_name}: unexpected member {text!r}")
    dnat = {}
    for spec in live.chains.get((NAT, DNAT_CHAIN), []):
        match = _DNAT_SPEC.fullmatch(spec)
        try:
            if match is None:
                raise MalformedEntryError(spec)
            dnat[parse_ipv4(match[1])] = parse_ipv4(match[2])
        except MalformedEntryError:
            problems.append(f"nat {DNAT_CHAIN}: unexpected rule {spec!r}")
    rebuilt = RuleSet(side=side, reject_all=reject_all, ipset_name=config.ipset_name,
                      members=frozenset(members), filter_chains=template.filter_chains,
                      dnat=tuple(sorted(dnat.items())), jumps=template.jumps)
    return rebuilt, problems


def evaluate_reject_all(expected: Expected, status: AgentStatus | None,
                        verdict: Verdict) -> list[Finding]:
    name = "reject_all"
    findings = []
    wanted = f"reject_all expected {str(expected.reject_all).lower()} ({expected.source})"
    if expected.reject_all and not verdict.drops:
        findings.append(Finding(CRITICAL, name, f"INPUT does not drop strangers while {wanted}: "
                                                f"{verdict.reason}"))
    elif expected.reject_all:
        findings.append(Finding(OK, name, f"INPUT drops strangers ({wanted}): {verdict.reason}"))
    else:
        what = "drops" if verdict.drops else "lets in"
        findings.append(Finding(OK, name, f"{wanted}; INPUT {what} strangers"))
    if status is not None and status.reject_all != expected.reject_all:
        rolled = " (the dead-man switch rolled it back)" if status.deadman == "rolled_back" else ""
        state = CRITICAL if expected.reject_all else WARNING
        findings.append(Finding(state, name, f"the agent applied reject_all "
                                             f"{str(status.reject_all).lower()}{rolled}, {wanted}"))
    return findings


def evaluate_ruleset(live: LiveState, status: AgentStatus | None, config: NetiConfig) -> list[Finding]:
    name = "ruleset"
    if status is None:
        wanted = [("filter", "NETI-INPUT"), (NAT, DNAT_CHAIN)]
        missing = [f"{t} {c}" for t, c in wanted if (t, c) not in live.chains]
        if live.ipset is None:
            missing.append(f"ipset {config.ipset_name}")
        if missing:
            return [Finding(CRITICAL, name, f"missing: {', '.join(missing)}")]
        return [Finding(UNKNOWN, name, "Neti's chains and set exist; no status to compare them with")]
    rebuilt, problems = rebuild_from_live(live, Side.parse(status.side), status.reject_all, config)
    items = [*compare(live, rebuilt).items, *problems]
    findings = [Finding(CRITICAL, name, item) for item in items[:_SHOWN]]
    if len(items) > _SHOWN:
        findings.append(Finding(CRITICAL, name, f"… and {len(items) - _SHOWN} more differences"))
    if rebuilt.hash != status.ruleset_hash:
        findings.append(Finding(WARNING, name, f"live rules (hash {rebuilt.hash}, {len(rebuilt.members)} "
                                               f"members, {len(rebuilt.dnat)} DNAT) are not the agent's "
                                               f"last applied ruleset {status.ruleset_hash} "
                                               f"({status.members} members)"))
    if not findings:
        findings.append(Finding(OK, name, f"live rules are the applied ruleset {status.ruleset_hash} "
                                          f"({len(rebuilt.members)} members)"))
    return findings


def evaluate_agent(instance_id: str, status: AgentStatus | None, health: Health | None, *,
                   status_read: bool = True) -> list[Finding]:
    """``status_read`` False: ZooKeeper could not be read, so a missing status proves nothing."""
    findings = []
    if not status_read:
        pass
    elif status is None:
        findings.append(Finding(CRITICAL, "status", f"no status/{instance_id}: the agent is not "
                                                    "running or not connected to ZooKeeper"))
    elif status.error:
        findings.append(Finding(CRITICAL, "status", f"last sync failed: {status.error}"))
    elif status.guard is not None:
        findings.append(Finding(WARNING, "status", f"mass-change guard holds "
                                                   f"{status.guard.blocked_removals} removals "
                                                   f"(maxchange {status.guard.maxchange})"))
    else:
        findings.append(Finding(OK, "status", f"agent {status.version} applied {status.ruleset_hash}"))
    if health is None:
        findings.append(Finding(OK, "health", "health endpoint disabled (metrics_port 0)"))
    elif not health.reachable:
        findings.append(Finding(CRITICAL, "health", f"health endpoint unreachable: {health.detail}"))
    elif not health.healthy:
        findings.append(Finding(CRITICAL, "health", f"agent unhealthy: {health.detail}"))
    else:
        findings.append(Finding(OK, "health", "agent healthy"))
    return findings


# --- gathering --------------------------------------------------------------------------------------

def fetch_health(url: str, timeout: float = 3.0) -> Health:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            body = reply.read(65536)
    except urllib.error.HTTPError as exc:
        body = exc.read(65536)
        return Health(True, False, _health_detail(body) or f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return Health(False, False, f"{url}: {getattr(exc, 'reason', exc)}")
    try:
        healthy = json.loads(body).get("healthy") is True
    except (ValueError, AttributeError):
        return Health(True, False, f"{url}: not the agent's JSON")
    return Health(True, healthy, _health_detail(body))


def _health_detail(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    if not isinstance(document, dict):
        return str(document)[:200]
    return ", ".join(f"{k}={document[k]}" for k in sorted(document) if k != "healthy")[:400]


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="Nagios/Sensu check of this host's rules and agent (exit 0/1/2/3)",
        description="Check that INPUT drops what it should, that Neti's chains and set match the "
                    "agent's last applied ruleset, and that the agent is healthy.")
    add_config_argument(parser)
    parser.add_argument("--instance-id", help="this host's instance id (default: instance metadata)")
    parser.add_argument("--netns", help="check the firewall of this network namespace (the lab)")
    parser.add_argument("--zk", help="ZooKeeper connect string (default: zk_hosts of this host's side)")
    parser.add_argument("--side", choices=["ec2", "vpc"],
                        help="this host's side (default: instance metadata, else vpc)")
    parser.add_argument("--health-url", help="the agent's /healthz (default: from metrics_*)")
    parser.add_argument("--timeout", type=float, default=5.0, help="ZooKeeper connect timeout, s")
    add_json_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from neti_core.ops.checkio import gather

    try:
        config = load_config_or_exit(PROG, args.config)
    except SystemExit:
        return UNKNOWN  # the one-line reason is printed; a bad neti.yml is not a firewall alarm
    findings = gather(config, args)
    state = overall(findings)
    if args.json:
        print_json({"state": state, "state_name": STATE_NAMES[state],
                    "findings": [{**asdict(f), "state_name": STATE_NAMES[f.state]} for f in findings]})
    else:
        print(summary_line(state, findings))
        for finding in findings:
            print(f"[{STATE_NAMES[finding.state]}] {finding.check}: {finding.message}")
    return state


def summary_line(state: int, findings: list[Finding]) -> str:
    """Nagios' first line: the state and the findings that set it."""
    worst = [f for f in findings if f.state == state]
    text = "; ".join(f"{f.check}: {f.message}" for f in worst[:2])
    if len(worst) > 2:
        text += f"; … {len(worst) - 2} more"
    return f"NETI {STATE_NAMES[state]}: {text}" if state != OK else "NETI OK: rules and agent healthy"


def health_target(config: NetiConfig, override: str | None) -> str | None:
    if override:
        return override
    if config.metrics_port == 0:
        return None
    return f"http://{config.metrics_address}:{config.metrics_port}/healthz"

