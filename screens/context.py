"""What a screen needs from the application, as an interface, so screens never import the app.

The app (``neti_tui.app``) implements :class:`ConsoleContext`. Fleet data reaches screens through
``fleet_signal``: Textual delivers each published batch to a subscribed screen as a callback on
that screen's own message queue, so widgets change only in their own message handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from neti_core.fleet import FleetBatch, FleetSnapshot
from neti_core.fleet.trend import FleetTrends
from neti_core.operator_actions import FleetControl

if TYPE_CHECKING:
    from textual.dom import DOMNode
    from textual.signal import Signal


class ConsoleContext(Protocol):
    readonly: bool
    operator: str
    authenticated: bool  # ZooKeeper credentials in the console's config (the header says when not)
    fleet: FleetSnapshot
    fleet_signal: Signal[FleetBatch]
    control: FleetControl | None
    trends: FleetTrends
    now: Callable[[], float]

    def poll_ec2_now(self) -> None: ...


def context(node: DOMNode) -> ConsoleContext:
    return cast("ConsoleContext", node.app)
