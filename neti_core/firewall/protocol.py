"""``FirewallBackend``: what the agent, ``neti check`` and the lab need of a firewall backend.

A structural type (``typing.Protocol``) rather than a base class, so that a backend need not share
the iptables backends' apply/delta/repair machinery (:class:`~neti_core.firewall.base.BackendBase`)
to be accepted, and so that :class:`~neti_core.firewall.base.NamespacedBackend`, which wraps one,
is checked against the same contract. The behaviour each method promises is in the docstring of
:mod:`neti_core.firewall.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from neti_core.firewall.base import ApplyResult
    from neti_core.firewall.detect import Detection
    from neti_core.firewall.readback import Drift, LiveState
    from neti_core.rules import RuleSet


class FirewallBackend(Protocol):
    """One way of getting a RuleSet into the kernel and reading it back."""

    @property
    def name(self) -> str: ...

    @property
    def ipset_name(self) -> str: ...

    @property
    def detection(self) -> Detection | None: ...

    @property
    def applied(self) -> RuleSet | None: ...

    def describe(self) -> str: ...

    def forget(self) -> None: ...

    def apply(self, desired: RuleSet, *, full: bool = False) -> ApplyResult: ...

    def read(self, ipset_name: str | None = None) -> LiveState: ...

    def drift(self, desired: RuleSet) -> Drift: ...

    def verify(self, desired: RuleSet) -> None: ...

    def repair(self, desired: RuleSet) -> ApplyResult: ...

    def plan(self, desired: RuleSet, *, commands: bool = False) -> str: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
