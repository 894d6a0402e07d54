"""What the agent last put in the kernel, as far as it knows: the source of its status and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.membership import MembershipPlan
from neti_core.rules import RuleSet
from neti_core.schema import GuardState, RejectAllSource


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
