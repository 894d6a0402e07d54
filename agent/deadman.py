"""The dead-man switch for reject_all, like ``iptables-apply``: confirm or roll back.

Turning reject_all on is the one change that can cut a host off. After the new rules are in,
the agent must prove that its ZooKeeper session is still healthy: a status write through the
session, no earlier than a settle time after the apply (so a rule that breaks the connection has
had time to bite) and before the deadline. Otherwise the previous rules are restored and the
rollback is reported. The same instruction is not retried until an operator changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["pending", "confirmed", "rolled_back"]


@dataclass
class Deadman:
    confirm_seconds: float
    state: State | None = None
    applied_at: float = 0.0
    rolled_back_token: object = None  # the control instruction that was rolled back

    @property
    def settle_seconds(self) -> float:
        return self.confirm_seconds / 3

    def armed(self, now: float) -> None:
        """reject_all has just been turned on in the kernel."""
        self.state = "pending"
        self.applied_at = now

    def disarm(self) -> None:
        """reject_all is off again by instruction: nothing to confirm."""
        if self.state == "pending":
            self.state = None

    def may_confirm(self, now: float) -> bool:
        return self.state == "pending" and now >= self.applied_at + self.settle_seconds

    def confirm(self) -> None:
        self.state = "confirmed"

    def overdue(self, now: float) -> bool:
        return self.state == "pending" and now >= self.applied_at + self.confirm_seconds

    def rolled_back(self, token: object) -> None:
        self.state = "rolled_back"
        self.rolled_back_token = token

    def allowed(self, wanted: bool, token: object) -> bool:
        """The reject_all to apply: off while the rolled-back instruction is still in force; a new
        instruction (``token`` changed) replaces the rolled-back one and is tried afresh."""
        if self.suppresses(token):
            return False
        if self.state == "rolled_back":
            self.state = None
        return wanted

    def suppresses(self, token: object) -> bool:
        """True while the instruction that was rolled back is still the one in force."""
        return self.state == "rolled_back" and token == self.rolled_back_token

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until the runner should look again (to confirm or to roll back)."""
        if self.state != "pending":
            return None
        settle_at = self.applied_at + self.settle_seconds
        return max(0.0, (settle_at if now < settle_at else self.applied_at + self.confirm_seconds) - now)
