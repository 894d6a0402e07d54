"""Confirmation dialogs: every change to a host or the fleet goes through one.

Focus starts on Cancel, so a stray Enter changes nothing; where a name must be typed, focus starts
in that field and Enter confirms once it matches. Keys typed while the dialog opens land in the
field that has the focus, never in the table underneath. The dialog says exactly what will change
and on how many hosts (only those that will actually change); a bulk change can be a canary (the
first N% of the targets, in the table's order), and after a canary it offers the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from neti_core.errors import MalformedEntryError
from neti_core.maxchange import DEFAULT_MAXCHANGE, MaxChange, decode_guard_limit
from neti_core.schema import decode_maxchange


@dataclass(frozen=True, slots=True)
class ChangePlan:
    """What a dialog proposes: ``verb`` on ``targets`` (display names, in order)."""

    title: str
    verb: str
    targets: Sequence[str] = ()
    scope: str = ""  # for fleet-wide changes, what is affected ("all 10,000 hosts")
    canary: bool = False
    typed: str | None = None  # text to type to confirm
    skipped: int = 0  # targets left out (e.g. rows without an instance id)
    already: int = 0  # chosen hosts left out because they are already so (e.g. an earlier canary)
    retries: int = 0  # how many of the targets are rolled-back hosts whose instruction is retried
    percent: int = 100  # the canary's starting percentage
    rest: bool = False  # the targets are what is left of a canary confirmed just before


@dataclass(frozen=True, slots=True)
class Confirmed:
    why: str
    count: int  # how many of the targets (the canary's share)
    percent: int


def canary_count(total: int, percent: int) -> int:
    """The first N% of ``total``, at least one when anything was chosen."""
    if total == 0 or percent <= 0:
        return 0
    return min(total, max(1, math.ceil(total * percent / 100)))


class MarkedButton(Button):
    """A button that shows it has the focus by its label too (▸ Confirm ◂), not only by colour:
    on a monochrome terminal, or to a colour-blind reader, the focused one must still be plain."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(label, **kwargs)
        self.plain_label = label

    def on_focus(self) -> None:
        self.label = f"▸ {self.plain_label} ◂"

    def on_blur(self) -> None:
        self.label = self.plain_label


class ConfirmScreen(ModalScreen[Confirmed | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, plan: ChangePlan) -> None:
        super().__init__()
        self.plan = plan
        self.percent = plan.percent
        # Focus is given as the dialog is composed, not after: keys typed meanwhile must not land
        # in another field (Textual's default focuses the first input).
        self.AUTO_FOCUS = "#typed" if plan.typed else "#cancel"
        self._early = ""  # printable keys that arrived before any widget had the focus

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="dialog"):
            yield Label(plan.title, id="dialog-title")
            yield Static(self._summary(), id="summary")
            if plan.canary:
                yield Label("Canary: percentage of these hosts to change first (in table order)")
                yield Input(str(plan.percent), id="percent", type="integer", max_length=3)
            yield Input(placeholder="why (recorded in the audit log)", id="why")
            if plan.typed:
                yield Label(f"Type [b]{plan.typed}[/] and press Enter to confirm (Esc cancels)")
                yield Input(id="typed")
            with Horizontal(id="buttons"):
                yield MarkedButton("Cancel", id="cancel", variant="primary")
                yield MarkedButton("Confirm", id="confirm", variant="error", disabled=bool(plan.typed))

    def on_key(self, event: events.Key) -> None:
        if self.focused is None and event.is_printable and event.character:
            self._early += event.character  # replayed into the first field on mount
            event.stop()

    def on_mount(self) -> None:
        if self._early:
            field = self.query_one("#typed" if self.plan.typed else "#why", Input)
            field.insert_text_at_cursor(self._early)
            self._early = ""

    def _summary(self) -> str:
        plan = self.plan
        if not plan.targets:
            return f"{plan.verb}\nAffects: {plan.scope}"
        count = canary_count(len(plan.targets), self.percent)
        noun = "host" if len(plan.targets) == 1 else "hosts"
        shown = ", ".join(plan.targets[:count][:5]) + (f" and {count - 5} more" if count > 5 else "")
        rest = (f"; the rest after the canary ({plan.already} already so)" if plan.rest
                else f"; {plan.already} already so, left out" if plan.already else "")
        lines = [f"{plan.verb} on [b]{count}[/] of {len(plan.targets)} {noun}"
                 + (f" (canary {self.percent}%)" if count < len(plan.targets) else "") + rest, shown]
        if plan.retries:
            lines.append(f"{plan.retries} of them rolled back by the dead-man switch: retried "
                         "(a new instruction re-arms the switch); c clears an override instead")
        if plan.skipped:
            lines.append(f"[dim]{plan.skipped} selected rows have no instance id and are left out[/]")
        return "\n".join(lines)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "percent":
            try:
                self.percent = max(0, min(100, int(event.value or 0)))
            except ValueError:
                self.percent = 0
            self.query_one("#summary", Static).update(self._summary())
        if self.plan.typed:
            self.query_one("#confirm", Button).disabled = not self._typed_matches()

    def _typed_matches(self) -> bool:
        return self.query_one("#typed", Input).value.strip() == self.plan.typed

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the name field confirms once the name matches; elsewhere it does nothing."""
        if event.input.id != "typed":
            return
        event.stop()
        if self._typed_matches():
            self._confirm()
        else:
            self.notify(f"type {self.plan.typed} exactly to confirm (Esc cancels)", severity="warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "confirm":
            self.dismiss(None)
            return
        self._confirm()

    def _confirm(self) -> None:
        count = canary_count(len(self.plan.targets), self.percent) if self.plan.targets else 1
        if count == 0:
            self.notify("0 hosts: nothing to change", severity="warning")
            return
        self.dismiss(Confirmed(self.query_one("#why", Input).value.strip(), count, self.percent))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one value (e.g. the fleet default); the change itself is confirmed afterwards."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, choices: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield OptionList(*(Option(label, id=value) for value, label in self.choices), id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MaxChangeScreen(ModalScreen[MaxChange | None]):
    """Enter the mass-change guard's limit: a count (20) or a share of the fleet (10%)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, current: str | None) -> None:
        super().__init__()
        self.title_text = title
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Input(self.current or "", id="value",
                        placeholder=f"a count (20) or a share of the fleet (10%); unset: {DEFAULT_MAXCHANGE}")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:  # the agents' decoder: what the console accepts, every agent reads
            self.dismiss(decode_guard_limit(event.value, decode_maxchange))
        except MalformedEntryError:
            self.notify("a whole number >= 0 (20) or a share of the fleet up to 100% (10%), please",
                        severity="warning")

    def action_cancel(self) -> None:
        self.dismiss(None)
