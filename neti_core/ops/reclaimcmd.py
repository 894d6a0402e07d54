"""``neti registry reclaim [--apply [--auto]]``: give back the addresses of gone instances.

Plan first: without ``--apply`` nothing is written (read-only credentials suffice). ``--apply``
starts the quarantine of instances newly seen gone (a marker node), drops the markers of
instances that came back, and releases the pairs whose quarantine is over (see
:mod:`neti_core.reclaim`). The EC2 listing comes first and must be complete: an API error or
throttling is one line, exit 1, and nothing is read from or written to ZooKeeper.

``--auto`` is the same with a one-line summary for cron, and only when ``reclaim_auto: true`` is
in neti.yml (off by default). Cron rather than the console's EC2 poller: the console runs only
while someone has it open, often read-only, while a cron job on an operator host runs with the
operator's credentials every day, which is also what starts quarantines early. Two runs at once
are harmless: every write is conditional on the versions that were judged.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neti_core.cliutil import fail, load_config_or_exit
from neti_core.ops.common import EXIT_FAILURE, PROG, ec2_client_or_exit, zk_session
from neti_core.ops.output import print_json, table
from neti_core.reclaim import (
    ApplyResult,
    Gone,
    PartialInformationError,
    ReclaimPlan,
    apply_plan,
    plan_reclaim,
    read_evidence,
)

if TYPE_CHECKING:
    from kazoo.client import KazooClient
    from prometheus_client import CollectorRegistry

    from neti_core.config import NetiConfig

NOTHING = "nothing reclaimed"


def ec2_states_or_exit(config: NetiConfig) -> dict[str, str]:
    """Every instance EC2 knows, any state; any failure is one line and exit 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    from neti_core.aws import instance_states
    from neti_core.ops.common import aws_error_code

    client = ec2_client_or_exit(config)
    try:
        return instance_states(client)
    except (ClientError, BotoCoreError) as exc:
        code = aws_error_code(exc)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        why = f"EC2 API throttled us ({code})" if "Throttl" in code or code == "RequestLimitExceeded" \
            else f"EC2 API: {message}"
        fail(PROG, f"{why}; cannot tell which instances are gone: {NOTHING}", status=EXIT_FAILURE)


def plan_or_exit(client: KazooClient, config: NetiConfig, ec2_states: dict[str, str]) -> ReclaimPlan:
    evidence = read_evidence(client, config.zk_paths, config.overlay_subnet)
    try:
        return plan_reclaim(evidence, ec2_states, config.reclaim_quarantine, time.time())
    except PartialInformationError as exc:
        fail(PROG, f"{exc}: {NOTHING}", status=EXIT_FAILURE)


def apply_or_exit(client: KazooClient, config: NetiConfig, plan: ReclaimPlan) -> ApplyResult:
    """Apply as the operator at the keyboard; a refused write (no operator credentials) is one
    line. Every release is its own transaction, so one that went through before stays whole."""
    from kazoo.exceptions import KazooException, NoAuthError

    from neti_core.operator_actions import default_operator

    try:
        return apply_plan(client, config.zk_paths, plan, default_operator())
    except NoAuthError:
        fail(PROG, "ZooKeeper refused the write: reclaim needs the operator's credentials",
             status=EXIT_FAILURE)
    except KazooException as exc:
        fail(PROG, f"ZooKeeper failed during the apply ({type(exc).__name__}); pairs released "
                   f"so far are in audit/, run again to finish", status=EXIT_FAILURE)


def run_reclaim(args: argparse.Namespace) -> int:
    config = load_config_or_exit(PROG, args.config)
    if args.auto and not args.apply:
        fail(PROG, "--auto goes with --apply (the unattended form of an apply)")
    if args.auto and not config.reclaim_auto:
        print("automatic reclaim is off (reclaim_auto: false in neti.yml): nothing done")
        return 0
    ec2_states = ec2_states_or_exit(config)
    with zk_session(config, args, read_only=not args.apply) as client:
        plan = plan_or_exit(client, config, ec2_states)
        result = apply_or_exit(client, config, plan) if args.apply else None
    if args.metrics_file:
        write_metrics(args.metrics_file, plan, result)
    if args.json:
        print_json(_document(plan, result, str(config.overlay_subnet)))
    elif args.auto:
        print(_outcome(plan, result))
    else:
        _print(plan, result, str(config.overlay_subnet))
    return 0


# --- output --------------------------------------------------------------------------------------

def _when(seconds: float | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _row(gone: Gone, verdict: str) -> dict[str, Any]:
    return {"instance_id": gone.pair.instance_id, "overlay_ip": str(gone.pair.overlay_ip),
            "ec2": gone.ec2_state, "gone_since": None if gone.marker is None else gone.marker.since,
            "eligible_at": gone.eligible_at, "verdict": verdict}


def _rows(plan: ReclaimPlan, result: ApplyResult | None) -> list[dict[str, Any]]:
    done = {g.pair.instance_id for g in result.reclaimed} if result else set()
    rows = [_row(g, ("reclaimed" if g.pair.instance_id in done else "changed, kept")
                 if result else "reclaimable") for g in plan.reclaim]
    rows += [_row(g, "quarantined") for g in plan.quarantined]
    marked = {g.pair.instance_id for g in result.marked} if result else set()
    rows += [_row(g, "quarantine started" if g.pair.instance_id in marked
                  else "starts at next --apply") for g in plan.unmarked]
    return rows


def figures(plan: ReclaimPlan, result: ApplyResult | None) -> tuple[int, int, int]:
    """(used, free, reclaimable) as they stand after this run."""
    released = len(result.reclaimed) if result else 0
    return plan.used - released, plan.free + released, len(plan.reclaim) - released


def _summary(plan: ReclaimPlan, result: ApplyResult | None) -> dict[str, Any]:
    used, free, reclaimable = figures(plan, result)
    return {"used": used, "free": free, "total": plan.total,
            "reclaimable": reclaimable, "quarantined": len(plan.quarantined),
            "newly_gone": len(plan.unmarked), "kept": plan.kept,
            "quarantine_seconds": plan.quarantine}


def _document(plan: ReclaimPlan, result: ApplyResult | None, subnet: str) -> dict[str, Any]:
    document: dict[str, Any] = {"subnet": subnet, "summary": _summary(plan, result),
                                "addresses": _rows(plan, result), "applied": result is not None}
    if result is not None:
        document["result"] = {"reclaimed": len(result.reclaimed), "changed": len(result.lost_race),
                              "marked": len(result.marked), "cleared": len(result.cleared),
                              "audit": result.audit_paths}
    return document


def _outcome(plan: ReclaimPlan, result: ApplyResult | None) -> str:
    used, free, reclaimable = figures(plan, result)
    head = (f"{used} used, {free} free; {reclaimable} reclaimable, "
            f"{len(plan.quarantined)} in quarantine ({_span(plan.quarantine)}), "
            f"{len(plan.unmarked)} newly gone")
    if result is None:
        return f"{head} (plan only: --apply releases them)"
    return (f"{head}; reclaimed {len(result.reclaimed)}, kept {len(result.lost_race)} that changed "
            f"meanwhile, started {len(result.marked)} quarantines, cleared {len(result.cleared)} "
            f"markers of returned instances")


def _print(plan: ReclaimPlan, result: ApplyResult | None, subnet: str) -> None:
    rows = _rows(plan, result)
    if rows:
        print(table(("INSTANCE", "OVERLAY", "EC2", "GONE SINCE", "ELIGIBLE", "VERDICT"),
                    [(r["instance_id"], r["overlay_ip"], r["ec2"], _when(r["gone_since"]),
                      _when(r["eligible_at"]), r["verdict"]) for r in rows]))
    print(f"overlay {subnet}: {_outcome(plan, result)}")


# --- metrics for node_exporter's textfile collector ----------------------------------------------

@dataclass(frozen=True, slots=True)
class _Figure:
    name: str
    help: str
    value: float


def metrics_registry(plan: ReclaimPlan, result: ApplyResult | None) -> CollectorRegistry:
    """The figures of one run as gauges (the alert rules in conf/prometheus use these names)."""
    from prometheus_client import CollectorRegistry, Gauge

    used, free, reclaimable = figures(plan, result)
    values = [
        _Figure("neti_overlay_addresses", "Usable addresses of overlay_subnet", plan.total),
        _Figure("neti_overlay_addresses_used", "Overlay addresses claimed in ip-to-id", used),
        _Figure("neti_overlay_addresses_free", "Overlay addresses nobody claims", free),
        _Figure("neti_overlay_addresses_reclaimable",
                "Addresses of gone instances whose quarantine is over", reclaimable),
        _Figure("neti_overlay_addresses_quarantined", "Addresses of gone instances in quarantine",
                len(plan.quarantined) + len(plan.unmarked)),
        _Figure("neti_reclaim_last_run_timestamp_seconds", "Unix time of the last complete run",
                time.time()),
    ]
    if result is not None:
        values.append(_Figure("neti_reclaim_last_reclaimed", "Addresses released by the last run",
                              len(result.reclaimed)))
    registry = CollectorRegistry()
    for figure in values:
        Gauge(figure.name, figure.help, registry=registry).set(figure.value)
    return registry


def write_metrics(path: str, plan: ReclaimPlan, result: ApplyResult | None) -> None:
    """For node_exporter's textfile collector, atomically (a temporary file renamed in place)."""
    from prometheus_client import write_to_textfile

    try:
        write_to_textfile(path, metrics_registry(plan, result))
    except OSError as exc:
        fail(PROG, f"cannot write {path}: {exc.strerror or exc}", status=EXIT_FAILURE)
