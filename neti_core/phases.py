"""The migration procedure of the original Neti's README, as phases with guards on live data.

A guard is a pure function of a :class:`FleetSnapshot`: it lists checks, each true or false with
the reason, so the console can show why a phase cannot be declared yet and ``neti_core.operator_actions``
can refuse the move with the same words. Moving forward is one phase at a time and needs the
target's guard to pass; moving back one phase (a rollback) is always allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from neti_core.fleet.state import FleetSnapshot, HostRow, RuleState, ZkState

_HEALTHY = (RuleState.IN_SYNC, RuleState.DRIFT)


@dataclass(frozen=True, slots=True)
class Check:
    label: str
    ok: bool
    detail: str = ""
    remedy: str = ""  # what the operator does about it when it fails

    @property
    def reason(self) -> str:
        text = f"{self.label}: {self.detail}" if self.detail else self.label
        return f"{text} — {self.remedy}" if self.remedy and not self.ok else text


Guard = Callable[[FleetSnapshot], tuple[Check, ...]]


def _some(rows: list[HostRow], limit: int = 3) -> str:
    """The first few hosts by name (a stable order, whatever order the rows arrived in)."""
    names = sorted(row.name or row.key for row in rows)[:limit]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(names) + more


def live_data(s: FleetSnapshot) -> Check:
    ok = s.zk.loaded and s.zk.state is ZkState.CONNECTED
    return Check("live data from ZooKeeper", ok, "" if ok else f"ZooKeeper is {s.zk.state.value}",
                 "wait until the console is connected again (the banner says when)")


def some_members(s: FleetSnapshot) -> Check:
    n = s.summary.registered
    return Check("hosts registered in Neti", n > 0, f"{n} in the party", "start neti-agent on the hosts")


def inventory_current(s: FleetSnapshot) -> Check:
    if not s.ec2.configured:
        return Check("EC2 inventory available", False, "no EC2 API configured",
                     "give the console AWS access (aws_region, credentials) in its neti.yml")
    if s.ec2.last_ok is None:
        return Check("EC2 inventory available", False, s.ec2.error or "not polled yet", "p polls EC2 now")
    if s.ec2.error:
        return Check("EC2 inventory available", False, f"last poll failed: {s.ec2.error}",
                     "check the console's AWS access; p polls again")
    return Check("EC2 inventory available", True, f"{s.ec2.instances} running instances")


def none_unregistered(s: FleetSnapshot) -> Check:
    label = "every running instance runs Neti (neti_util.py clean)"
    inventory = inventory_current(s)
    if not inventory.ok:
        return Check(label, False, f"unknown: {inventory.detail}", inventory.remedy)
    rows = s.unregistered
    return Check(label, not rows, f"{len(rows)} unregistered: {_some(rows)}" if rows else "",
                 "install neti-agent on them (2 lists them; in the lab: neti lab adopt NAME)")


def agents_report(s: FleetSnapshot) -> Check:
    rows = [r for r in s.rows.values() if r.in_party and r.status is None]
    return Check("every member's agent reports its status", not rows,
                 f"{len(rows)} without status: {_some(rows)}" if rows else "",
                 "check neti-agent on those hosts (systemctl status neti-agent)")


def no_errors(s: FleetSnapshot) -> Check:
    rows = [r for r in s.rows.values() if r.state in (RuleState.ERROR, RuleState.GUARD)]
    return Check("no agent in error or held by the mass-change guard", not rows,
                 f"{len(rows)}: {_some(rows)}" if rows else "", _error_remedy(rows))


def _error_remedy(rows: list[HostRow]) -> str:
    """What gets each kind of failing host moving again, in the console's keys."""
    remedies = []
    if any(r.rolled_back for r in rows):
        remedies.append("rolled back: o on the host retries reject_all (re-arms the dead-man switch), "
                        "c clears its override")
    if any(r.state is RuleState.GUARD for r in rows):
        remedies.append("guard: M raises maxchange to release the held removals")
    if any(r.state is RuleState.ERROR and not r.rolled_back for r in rows):
        remedies.append("error: enter on the host shows the agent's error")
    return "; ".join(remedies)


def reject_off_everywhere(s: FleetSnapshot) -> Check:
    rows = [r for r in s.rows.values() if r.applied or r.desired]
    fleet_on = s.defaults is not None and s.defaults.reject_all is True
    ok = not rows and not fleet_on
    detail = "fleet default is on" if fleet_on else (f"{len(rows)} hosts on: {_some(rows)}" if rows else "")
    return Check("reject_all still off everywhere", ok, detail,
                 "f turns a host's reject_all off, F sets the fleet default")


def vpc_member_in_sync(s: FleetSnapshot) -> Check:
    n = sum(1 for r in s.rows.values() if r.side == "vpc" and r.in_party and r.state in _HEALTHY)
    return Check("a VPC host is registered and in sync", n > 0, f"{n} VPC hosts in sync",
                 "bring up a VPC host with neti-agent and wait for in sync")


def canary_confirmed(s: FleetSnapshot) -> Check:
    n = sum(1 for r in s.rows.values() if r.applied and r.state in _HEALTHY
            and (r.status is None or r.status.deadman != "pending"))
    return Check("a host runs with reject_all on, confirmed and in sync", n > 0, f"{n} such hosts",
                 "o on one host in the fleet view (1), then wait until it is in sync")


def reject_on_everywhere(s: FleetSnapshot) -> Check:
    rows = [r for r in s.rows.values() if r.in_party and not r.applied]
    return Check("every host runs with reject_all on", not rows,
                 f"{len(rows)} still without it: {_some(rows)}" if rows else "",
                 "select them and press o (a canary first), or F sets the fleet default on")


def all_in_sync(s: FleetSnapshot) -> Check:
    rows = [r for r in s.rows.values()
            if r.state in (RuleState.LAGGING, RuleState.PENDING, RuleState.DEADMAN, RuleState.NOT_MEMBER,
                           RuleState.OUT_OF_CONTACT)]
    remedy = "wait for them to apply it"
    if any(r.state is RuleState.OUT_OF_CONTACT for r in rows):
        remedy += "; out of contact hosts: reconnect them to ZooKeeper or terminate them"
    return Check("every agent has applied the current membership and controls", not rows,
                 f"{len(rows)} behind: {_some(rows)}" if rows else "", remedy)


def security_groups_open(s: FleetSnapshot) -> Check:
    """Every security group of the fleet's running instances lets AWS's ranges in, as
    ``neti sg aws-ranges --apply`` leaves it (read from the EC2 API by the inventory poll)."""
    label = "the fleet's security groups are open to the AWS ranges"
    inventory = inventory_current(s)
    if not inventory.ok:
        return Check(label, False, f"unknown: {inventory.detail}", inventory.remedy)
    if s.ec2.groups_error or s.ec2.groups is None:
        return Check(label, False, f"unknown: {s.ec2.groups_error or 'security groups not read yet'}",
                     "p polls EC2 again")
    # By name, so the refusal reads the same every time (group ids are random).
    closed = sorted((g for g in s.ec2.groups if not g.open), key=lambda g: (g.name or g.group_id, g.group_id))
    if not s.ec2.groups:
        return Check(label, False, "the running instances are in no security group")
    if closed:
        names = " ".join(f"--group {g.group_id}" for g in closed)
        return Check(label, False, f"{len(closed)} of {len(s.ec2.groups)} not open "
                                   f"({', '.join(g.name or g.group_id for g in closed)})",
                     f"neti sg aws-ranges {names} --ranges-file … --apply")
    return Check(label, True, f"{len(s.ec2.groups)} groups open")


def _guard(*checks: Callable[[FleetSnapshot], Check]) -> Guard:
    def guard(snapshot: FleetSnapshot) -> tuple[Check, ...]:
        return tuple(check(snapshot) for check in (live_data, *checks))
    return guard


_DONE = _guard(none_unregistered, reject_on_everywhere, all_in_sync, no_errors, agents_report)


@dataclass(frozen=True, slots=True)
class Phase:
    key: str
    title: str
    steps: str  # what the operators do in this phase, from the original README
    guard: Guard  # must pass to enter the phase


PHASES: tuple[Phase, ...] = (
    Phase("prepare", "Prepare",
          "Build the VPC, the ZooKeeper cluster and its EC2 proxy cluster (Elastic IPs, own "
          "security groups); put Neti into configuration management. Test, test, test some more.",
          _guard()),
    Phase("register", "Neti on every EC2 host, reject_all off",
          "Bring Neti up on the entire EC2 fleet with reject_all false: security groups still "
          "apply, nothing changes for traffic; every host is reachable by its overlay IP.",
          _guard(some_members, reject_off_everywhere, no_errors)),
    Phase("overlay", "Configurations use overlay IPs",
          "Convert DB/app/cache configuration to overlay IPs; neti_util.py says what is left "
          "outside Neti.",
          _guard(none_unregistered, agents_report, no_errors)),
    Phase("vpc-pilot", "First VPC hosts",
          "Bring up a few test hosts in the VPC and verify that they register correctly.",
          _guard(agents_report, no_errors)),
    Phase("reject-canary", "reject_all on one host",
          "Turn reject_all on for a single host; it must still reach everything it needs.",
          _guard(vpc_member_in_sync, none_unregistered, agents_report, no_errors)),
    Phase("reject-rollout", "reject_all rollout",
          "Slowly roll reject_all out across the fleet, tier by tier. Be careful.",
          _guard(canary_confirmed, no_errors)),
    Phase("reject-everywhere", "reject_all everywhere",
          "Neti runs everywhere, neti_util.py runs clean and reject_all is on on every host.",
          _DONE),
    Phase("open-security-groups", "Security groups open to AWS ranges",
          "Change the security groups to allow all access from the AWS IP ranges "
          "(ip_ranges.py); iptables now does the filtering on every host.",
          _guard(none_unregistered, reject_on_everywhere, all_in_sync, no_errors, agents_report,
                 security_groups_open)),
    Phase("migrate", "Migrate",
          "EC2 and VPC hosts talk to each other: move hosts into the VPC.",
          _guard(security_groups_open, none_unregistered, reject_on_everywhere, vpc_member_in_sync,
                 all_in_sync, no_errors, agents_report)),
)
_BY_KEY = {phase.key: phase for phase in PHASES}


def get_phase(key: str) -> Phase:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown phase {key!r} (one of {', '.join(_BY_KEY)})") from None


def phase_index(key: str) -> int:
    return PHASES.index(get_phase(key))


def current_key(snapshot: FleetSnapshot) -> str:
    """The phase recorded in ``control/phase``; the first one when none is (or it is unknown)."""
    record = snapshot.phase
    return record.phase if record is not None and record.phase in _BY_KEY else PHASES[0].key


@dataclass(frozen=True, slots=True)
class MoveVerdict:
    allowed: bool
    backward: bool
    reasons: tuple[str, ...]
    checks: tuple[Check, ...]


def check_move(current: str, target: str, snapshot: FleetSnapshot) -> MoveVerdict:
    """May the fleet go from ``current`` to ``target`` now?"""
    here, there = phase_index(current), phase_index(target)
    if there == here:
        return MoveVerdict(False, False, (f"already in {target}",), ())
    if there < here:
        if there != here - 1:
            return MoveVerdict(False, True, ("move back one phase at a time",), ())
        return MoveVerdict(True, True, (), ())
    if there != here + 1:
        return MoveVerdict(False, False, (f"phases go one at a time: next is {PHASES[here + 1].key}",), ())
    checks = PHASES[there].guard(snapshot)
    failing = tuple(c.reason for c in checks if not c.ok)
    return MoveVerdict(not failing, False, failing, checks)
