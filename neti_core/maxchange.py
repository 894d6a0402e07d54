"""The mass-change guard's limit: a count (``20``) or a share of the fleet (``"10%"``).

A fixed count cannot protect fleets of every size: 20 lets a 16-host fleet vanish entirely and is
2 % of a thousand. A percentage scales with the fleet, so the default is one: ``10%`` of the
members an agent last programmed, rounded up (so never below 1 while there is a fleet: a single
host being replaced never trips it, losing half of 8 hosts always does). A plain integer keeps its
original meaning, an absolute count, so fleets that set one see no change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from neti_core.errors import MalformedEntryError

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


@dataclass(frozen=True, slots=True)
class MaxChange:
    """Exactly one of ``count`` and ``percent`` is set."""

    count: int | None = None
    percent: float | None = None

    def limit(self, fleet_size: int) -> int:
        """The most members that may vanish at once from a fleet of ``fleet_size``."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        # Rounded up, with a tolerance so 10 % of 30 is 3, not 4 after float error.
        return math.ceil(fleet_size * self.percent / 100 - 1e-9)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.percent:g}%"


DEFAULT_MAXCHANGE = MaxChange(percent=10.0)


def parse_maxchange(text: str | int) -> MaxChange:
    """``"20"``/``20`` (a count) or ``"10%"`` (a share, 0-100); anything else is malformed."""
    if isinstance(text, bool):
        raise MalformedEntryError(f"maxchange {text!r} is not a count or a percentage")
    if isinstance(text, int):
        if text < 0:
            raise MalformedEntryError(f"maxchange {text} is negative")
        return MaxChange(count=text)
    raw = text.strip()
    if raw.isdigit():
        return MaxChange(count=int(raw))
    match = _PERCENT.fullmatch(raw)
    if match is None:
        raise MalformedEntryError(f"maxchange {text!r} is not a count (20) or a percentage (10%)")
    percent = float(match.group(1))
    if percent > 100:
        raise MalformedEntryError(f"maxchange {text!r} is over 100%")
    return MaxChange(percent=percent)


def decode_guard_limit(data: bytes | str, decode_count: Callable[[bytes | str], int]) -> MaxChange:
    """The node's text as the agent's guard reads it: a share ("10%") here, a count through
    ``decode_count`` (schema.decode_maxchange, the one decoder of counts). Raises MalformedEntryError."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    if text.strip().endswith("%"):
        return parse_maxchange(text)
    return MaxChange(count=decode_count(data))


def read_guard_limit(data: bytes | None,
                     decode_count: Callable[[bytes | str], int]) -> tuple[MaxChange, str | None]:
    """The node's value, or the default and what was wrong (fail static: report, keep going)."""
    if not data:
        return DEFAULT_MAXCHANGE, None
    try:
        return decode_guard_limit(data, decode_count), None
    except MalformedEntryError as exc:
        return DEFAULT_MAXCHANGE, f"{exc}; using {DEFAULT_MAXCHANGE}"


def audit_value(limit: MaxChange) -> int | str:
    """How audit entries and plans record a limit: a count as a number (as it always was), a share
    as its text ("10%")."""
    return limit.count if limit.count is not None else str(limit)
