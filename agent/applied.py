"""What the agent last put in the kernel, as far as it knows: the source of its status and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.membership import MembershipPlan
from neti_core import __version__
from neti_core.imds import Identity
from neti_core.rules import RuleSet
from neti_core.schema import AgentStatus, DeadmanState, GuardState, RejectAllSource

GuardChange = Literal["tripped", "cleared"]


@dataclass
class Applied:
    """What is in the kernel now, as far as this agent knows."""

    ruleset: RuleSet | None = None
    reject_all: bool = False
    source: RejectAllSource = "config"
    membership_version: int = -1
    members: int = 0
    applied_at: float | None = None
    apply_ms: float | None = None
    plan: MembershipPlan | None = None
    error: str | None = None
    drift_repairs: int = 0
    drift_detected: bool = False
    malformed: int = 0
    guard: GuardState | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    self_heals: int = 0

    def record_plan(self, plan: MembershipPlan, now: float) -> GuardChange | None:
        """Take ``plan`` as the membership in force; say whether the guard has just tripped or cleared
        (the agent logs and counts those edges, not every sync the guard keeps holding)."""
        self.members = len(plan.members)
        self.plan = plan
        if plan.guard_tripped:
            since = self.guard.since if self.guard is not None else now
            change: GuardChange | None = "tripped" if self.guard is None else None
            self.guard = GuardState(plan.blocked_removals, plan.maxchange, since)
            return change
        if self.guard is not None:
            self.guard = None
            return "cleared"
        return None

    def status(self, identity: Identity, overlay_ip: object, *, backend: str,
               deadman: DeadmanState | None) -> AgentStatus:
        """The ``status/<id>`` this host reports: what it applied, never what it merely wants."""
        error = self.error
        if error is None and self.problems:
            error = "; ".join(self.problems)
        plan = self.plan
        return AgentStatus(
            instance_id=identity.instance_id,
            overlay_ip=str(overlay_ip),
            side=identity.side.value,
            version=__version__,
            reject_all=self.reject_all,
            reject_all_source=self.source,
            membership_version=self.membership_version,
            members=self.members,
            ruleset_hash=self.ruleset.hash if self.ruleset is not None else "",
            applied_at=self.applied_at,
            apply_ms=self.apply_ms,
            error=error,
            guard=self.guard,
            deadman=deadman,
            drift_repairs=self.drift_repairs,
            drift_detected=self.drift_detected,
            public_ip=str(identity.public_ip),
            private_ip=str(identity.private_ip),
            backend=backend,
            malformed_entries=self.malformed,
            pending_removals=plan.in_grace if plan is not None else 0,
            problems=self.problems,
            self_heals=self.self_heals,
        )
