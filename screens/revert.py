"""Undo from the audit view: ``u`` on an entry shows what reverting it would change, then writes it.

The plan is read from ZooKeeper in a worker (the values now, and whether anyone changed them since
the entry); a refusal names who changed the value. The write itself is
``FleetControl.revert``, which checks again in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.message import Message

from neti_core.errors import NetiError
from neti_core.revert_plan import RevertPlan
from screens.actions import WriteActions
from screens.cells import when
from screens.confirm import ChangePlan, Confirmed, ConfirmScreen
from screens.context import context

SHOWN_LINES = 8


@dataclass
class RevertPlanned(Message):
    """The plan for reverting one entry (read in a worker), or why it cannot be reverted."""

    seq: int
    plan: RevertPlan | None = None
    refused: str | None = None


class RevertScreen(ConfirmScreen):
    """The confirmation of a revert: each value, as it is now → as it will be restored."""

    def __init__(self, plan: RevertPlan) -> None:
        entry = plan.entry
        super().__init__(ChangePlan(title=f"Revert audit entry {plan.seq}",
                                    verb=f"{entry.action} by {entry.who} at {when(entry.when)}",
                                    scope=entry.target))
        self.revert_plan = plan

    def _summary(self) -> str:
        lines = self.revert_plan.lines()
        shown = lines[:SHOWN_LINES] + ([f"… and {len(lines) - SHOWN_LINES} more"] if len(lines) > SHOWN_LINES
                                       else [])
        return "\n".join([f"Undo {self.plan.verb}", "Restores (now → after the revert):", *shown,
                          "[dim]One write, recorded in the audit log as the revert of this entry.[/]"])


class RevertActions(WriteActions):
    """A screen whose rows are audit entries (``selected_seq``) and can revert them."""

    def selected_seq(self) -> int | None:
        raise NotImplementedError

    def action_revert(self) -> None:
        seq, control = self.selected_seq(), context(self).control
        if seq is None or control is None:
            self.notify("no audit entry under the cursor", severity="warning")
            return
        self.run_worker(partial(self._plan, seq), thread=True, group="revert-plan", exit_on_error=False)

    def _plan(self, seq: int) -> None:
        control = context(self).control
        assert control is not None
        try:
            self.post_message(RevertPlanned(seq, plan=control.plan_revert(seq)))
        except NetiError as exc:
            self.post_message(RevertPlanned(seq, refused=str(exc)))
        except Exception as exc:  # ZooKeeper unreachable: say so, never crash the console
            self.post_message(RevertPlanned(seq, refused=f"{type(exc).__name__}: {exc}"))

    def on_revert_planned(self, message: RevertPlanned) -> None:
        if message.plan is None:
            self.notify(f"revert of entry {message.seq}: refused — {message.refused}", severity="error",
                        timeout=15)
            return
        seq, ctx = message.seq, context(self)

        def write(confirmed: Confirmed | None) -> None:
            if confirmed is not None and ctx.control is not None:
                self.run_write(f"revert of entry {seq}", partial(ctx.control.revert, seq, ctx.fleet,
                                                                 confirmed.why))

        self.app.push_screen(RevertScreen(message.plan), write)
