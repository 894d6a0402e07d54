"""A bounded-frequency runner, after kube-proxy's: many triggers, few syncs.

Membership and control changes only mark the state dirty; the sync function then runs at most
once per ``min_interval`` (so a burst of 500 joins costs one apply, not 500) and at least once per
``max_interval`` (the periodic resync that finds and repairs drift). The sync may also ask to be
woken at a given time (a grace period ending, a dead-man deadline).

Time comes from an injected :class:`Timer` (kube-proxy's ``timer`` interface): the agent's is the
monotonic clock and a condition wait; tests pass a simulated one, so pacing is checked to the
millisecond without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Timer(Protocol):
    """Where the runner's time comes from, and how it waits for it to pass."""

    def now(self) -> float: ...

    def wait(self, condition: threading.Condition, seconds: float) -> None:
        """Block on ``condition`` (held by the caller) for up to ``seconds``, or until notified."""


class RealTimer:
    """The agent's timer: a clock (monotonic by default) and ``Condition.wait``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.now = clock

    def wait(self, condition: threading.Condition, seconds: float) -> None:
        condition.wait(seconds)


class BoundedFrequencyRunner:
    def __init__(self, sync: Callable[[], float | None], min_interval: Callable[[], float],
                 max_interval: float, timer: Timer | None = None) -> None:
        """``sync`` returns the seconds after which it wants to run again, or None."""
        self._sync = sync
        self._min_interval = min_interval
        self._max_interval = max_interval
        self._timer: Timer = timer or RealTimer()
        self._clock = self._timer.now
        self._condition = threading.Condition()
        self._dirty = True  # the first sync runs at once
        self._stopped = False
        self._wake_at: float | None = None
        self.last_run: float | None = None
        self.runs = 0

    def mark_dirty(self) -> None:
        """Thread-safe and cheap: callable from ZooKeeper watch callbacks."""
        with self._condition:
            self._dirty = True
            self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _next_due(self) -> float:
        """When the next sync should start, given what is pending."""
        last = self.last_run
        if last is None:
            return self._clock()
        due = last + self._max_interval
        if self._wake_at is not None:
            due = min(due, self._wake_at)
        if self._dirty:
            due = min(due, last + self._min_interval())
        return max(due, last + min(self._min_interval(), self._max_interval))

    def run_forever(self) -> None:
        while True:
            with self._condition:
                while not self._stopped:
                    delay = self._next_due() - self._clock()
                    if delay <= 0:
                        break
                    self._timer.wait(self._condition, delay)
                if self._stopped:
                    return
                self._dirty = False
                self._wake_at = None
            self.last_run = self._clock()
            self.runs += 1
            try:
                again = self._sync()
            except Exception:  # the loop must outlive any single sync; the sync reports its errors
                log.exception("sync failed")
                again = None
            if again is not None:
                with self._condition:
                    wake = self._clock() + max(again, 0.0)
                    self._wake_at = wake if self._wake_at is None else min(self._wake_at, wake)
