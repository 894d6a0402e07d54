"""Operator actions shared by the screens that offer them: confirm, then write in a worker.

Read-only consoles do not offer these at all (``check_action`` hides the bindings and refuses the
actions); the controller underneath refuses the write too, so both layers have to agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.message import Message
from textual.screen import Screen

from neti_core.errors import NetiError
from neti_core.fleet import HostRow
from neti_core.fleet.query import on_off
from neti_core.maxchange import DEFAULT_MAXCHANGE, MaxChange
from neti_core.operator_actions import ActionResult
from neti_core.revert_plan import shown
from screens.confirm import ChangePlan, ChoiceScreen, Confirmed, ConfirmScreen, MaxChangeScreen
from screens.context import context

WRITE_ACTIONS = frozenset({"reject_on", "reject_off", "reject_clear", "fleet_default", "maxchange",
                           "next_phase", "previous_phase", "revert"})


@dataclass
class WriteDone(Message):
    """A write finished (in a worker thread); ``error`` says why it did not happen."""

    description: str
    result: ActionResult | None = None
    error: str | None = None


def host_label(row: HostRow) -> str:
    return f"{row.name} ({row.key})" if row.name else row.key


DEFAULT_CANARY_PERCENT = 10  # a bulk change starts as a canary; after it, the dialog offers the rest


@dataclass(frozen=True, slots=True)
class RejectAllChange:
    """The hosts a reject_all change will actually touch, in the operator's order."""

    targets: list[HostRow]
    retries: frozenset[str]  # keys of rolled-back hosts whose instruction is written again
    already: int  # chosen hosts already so (left out)


def plan_reject_all(rows: Sequence[HostRow], value: bool | None) -> RejectAllChange:
    """Setting a value a host's override already has changes nothing, unless the dead-man switch
    rolled it back: then writing it again is the retry. Clearing touches only hosts with an override."""
    targets, retries, already = [], set(), 0
    for row in rows:
        has = None if row.override is None else row.override.value
        if value is True and row.rolled_back:
            targets.append(row)
            retries.add(row.key)
        elif (value is None and row.override is None) or (value is not None and has is value):
            already += 1
        else:
            targets.append(row)
    return RejectAllChange(targets, frozenset(retries), already)


def _write_reject_all(control: Any, plain: list[str], retry: list[str], value: bool | None, *, why: str,
                      extra: dict[str, Any]) -> ActionResult:
    """The plain changes and the retries, as one result for the operator's notification."""
    results = [control.set_host_reject_all(plain, value, why, extra)] if plain else []
    if retry:
        results.append(control.retry_host_reject_all(retry, why, extra))
    return ActionResult(results[0].action, tuple(k for r in results for k in r.changed),
                        tuple(k for r in results for k in r.unchanged),
                        tuple(p for r in results for p in r.audit_paths))


class WriteActions(Screen[Any]):
    """Base for screens with write bindings: hides them when read-only, runs writes in workers."""

    _canary_of: frozenset[str] = frozenset()  # the hosts of the last canary, for "the rest"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in WRITE_ACTIONS and context(self).readonly)

    def target_rows(self) -> list[HostRow]:
        """The rows an action applies to (the selection or the row under the cursor)."""
        raise NotImplementedError

    def action_reject_on(self) -> None:
        self.confirm_reject_all(self.target_rows(), True)

    def action_reject_off(self) -> None:
        self.confirm_reject_all(self.target_rows(), False)

    def action_reject_clear(self) -> None:
        self.confirm_reject_all(self.target_rows(), None)

    def confirm_reject_all(self, rows: Sequence[HostRow], value: bool | None) -> None:
        writable = [row for row in rows if row.writable]
        if not writable:
            self.notify("no host with an instance id under the cursor or selected", severity="warning")
            return
        change = plan_reject_all(writable, value)
        if not change.targets:
            self.notify(f"nothing to change: the {len(writable)} chosen hosts are already so", timeout=6)
            return
        what = "clear the reject_all override (back to fleet/config)" if value is None \
            else f"set reject_all {on_off(value).upper()} (host override)"
        many = len(change.targets) > 1
        keys = frozenset(row.key for row in change.targets)
        rest = bool(change.already) and keys <= self._canary_of
        plan = ChangePlan(title="Change reject_all", verb=what,
                          targets=[host_label(r) for r in change.targets], canary=many,
                          skipped=len(rows) - len(writable), already=change.already,
                          retries=len(change.retries), rest=rest,
                          percent=DEFAULT_CANARY_PERCENT if many and not rest else 100)

        def write(confirmed: Confirmed | None) -> None:
            if confirmed is None:
                return
            chosen = [row.key for row in change.targets[:confirmed.count]]
            # After a canary the same hosts' next dialog offers the rest, at 100 %.
            self._canary_of = keys if confirmed.count < len(keys) else frozenset()
            extra = {"selected": len(rows), "canary_percent": confirmed.percent} if many else {}
            control = context(self).control
            assert control is not None
            retry = [key for key in chosen if key in change.retries]
            plain = [key for key in chosen if key not in change.retries]
            self.run_write(f"{what} on {len(chosen)} hosts",
                           partial(_write_reject_all, control, plain, retry, value, why=confirmed.why,
                                   extra=extra))

        self.app.push_screen(ConfirmScreen(plan), write)

    def action_fleet_default(self) -> None:
        ctx = context(self)
        hosts = ctx.fleet.summary.total
        choices = [("on", "on: every host without its own override"),
                   ("off", "off: every host without its own override"),
                   ("unset", "unset: each host's neti.yml decides")]

        def chosen(choice: str | None) -> None:
            if choice is None:
                return
            value = {"on": True, "off": False, "unset": None}[choice]
            current = ctx.fleet.defaults.reject_all if ctx.fleet.defaults else None
            overridden = sum(1 for row in ctx.fleet.rows.values() if row.override is not None)
            plan = ChangePlan(title="Fleet-wide reject_all default",
                              verb=f"fleet default reject_all: {shown(current)} → {choice}",
                              scope=f"all {hosts:,} hosts except the {overridden:,} with a host override")
            def write(ok: Confirmed | None) -> None:
                if ok is not None and ctx.control is not None:
                    self.run_write(f"fleet default reject_all {choice}",
                                   partial(ctx.control.set_fleet_reject_all, value, ok.why))

            self.app.push_screen(ConfirmScreen(plan), write)

        self.app.push_screen(ChoiceScreen("Fleet default reject_all", choices), chosen)

    def action_maxchange(self) -> None:
        ctx = context(self)
        current = ctx.fleet.maxchange

        def entered(value: MaxChange | None) -> None:
            if value is None:
                return
            agents = ctx.fleet.summary.agents
            before = current if current is not None else f"unset ({DEFAULT_MAXCHANGE})"
            scope = f"the removal guard of every agent ({agents:,} reporting)"
            if value.percent is not None:  # what the share means today, from each agent's own count
                members = sum(row.in_party for row in ctx.fleet.rows.values())
                scope += f"; at {members:,} members, {value.limit(members):,} may go at once"
            plan = ChangePlan(title="Mass-change guard", verb=f"maxchange: {before} → {value}", scope=scope)

            def write(ok: Confirmed | None) -> None:
                if ok is not None and ctx.control is not None:
                    self.run_write(f"maxchange {value}", partial(ctx.control.set_maxchange, value, ok.why))

            self.app.push_screen(ConfirmScreen(plan), write)

        title = "maxchange: most members an agent may drop at once (a count, or a share: 10%)"
        self.app.push_screen(MaxChangeScreen(title, current), entered)

    def run_write(self, description: str, write: Callable[[], ActionResult]) -> None:
        self.run_worker(partial(self._write, description, write), thread=True, group="writes",
                        exit_on_error=False)

    def _write(self, description: str, write: Callable[[], ActionResult]) -> None:
        try:
            result = write()
        except NetiError as exc:
            self.post_message(WriteDone(description, error=str(exc)))
        except Exception as exc:  # ZooKeeper down, session lost: say so, never crash the console
            self.post_message(WriteDone(description, error=f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(WriteDone(description, result=result))

    def on_write_done(self, message: WriteDone) -> None:
        if message.error is not None:
            self.notify(f"{message.description}: refused — {message.error}", severity="error", timeout=10)
            return
        result = message.result
        assert result is not None
        unchanged = f", {len(result.unchanged)} already so" if result.unchanged else ""
        self.notify(f"{message.description}: {len(result.changed)} changed{unchanged}; "
                    f"{len(result.audit_paths)} audit records", title="written")
