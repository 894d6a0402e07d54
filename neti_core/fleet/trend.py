"""How the migration is going over the last minutes: counts sampled into fixed time buckets.

On-call reads a trend faster than a number: "errors went from 0 to 12 two minutes ago and are
falling" is a sparkline, not a header count. Pure (the caller passes the clock), so the console
and tests feed it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neti_core.fleet.state import FleetSummary

STEP_SECONDS = 5.0
WINDOW_SECONDS = 600.0


@dataclass
class Trend:
    """The highest value seen in each ``step``-second bucket, for the last ``window`` seconds."""

    step: float = STEP_SECONDS
    window: float = WINDOW_SECONDS
    _buckets: dict[int, int] = field(default_factory=dict)

    def observe(self, now: float, value: int) -> None:
        bucket = int(now // self.step)
        self._buckets[bucket] = max(value, self._buckets.get(bucket, value))
        oldest = bucket - int(self.window // self.step) + 1
        for old in [b for b in self._buckets if b < oldest]:
            del self._buckets[old]

    def values(self, now: float) -> list[int]:
        """One value per bucket from the first observed one to now; a bucket without a sample
        repeats the one before it (a count holds until it is seen to change)."""
        if not self._buckets:
            return []
        current = int(now // self.step)
        first = max(min(self._buckets), current - int(self.window // self.step) + 1)
        earlier = [bucket for bucket in self._buckets if bucket <= first]
        values, last = [], self._buckets[max(earlier) if earlier else min(self._buckets)]
        for bucket in range(first, current + 1):
            last = self._buckets.get(bucket, last)
            values.append(last)
        return values

    def latest(self) -> int:
        return self._buckets[max(self._buckets)] if self._buckets else 0


@dataclass
class FleetTrends:
    """The two trends the console draws: hosts not yet converged, and hosts in error."""

    not_converged: Trend = field(default_factory=Trend)
    errors: Trend = field(default_factory=Trend)

    def observe(self, now: float, summary: FleetSummary) -> None:
        self.not_converged.observe(now, summary.lagging + summary.pending)
        self.errors.observe(now, summary.errors)
