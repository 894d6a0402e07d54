"""Bounded, jittered retries for what is only temporarily unavailable at start-up.

A fleet-wide restart makes every agent ask the metadata service, ZooKeeper and the EC2 API at
once; those throttle or answer late. Exiting on the first refusal turned a slow second into a host
without an agent (150-host lab: 20 lost). So the agent waits, with exponential backoff and full
jitter (spreading a fleet's retries instead of synchronising them), says what it waits for, and
gives up only after a bound, or at once on what waiting cannot fix.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kazoo.retry import KazooRetry, RetryFailedError

from neti_core.errors import NetiError

T = TypeVar("T")
log = logging.getLogger(__name__)


class GaveUp(Exception):
    """Still failing at the deadline: the last error says why."""


def backoff_delays(first: float = 0.5, cap: float = 15.0, factor: float = 2.0,
                   rng: random.Random | None = None) -> Iterator[float]:
    """Full jitter: each delay uniform in [first/2, min(cap, first*factor**n)] (AWS's advice)."""
    rng = rng or random.Random()
    ceiling = first
    while True:
        yield rng.uniform(first / 2, ceiling)
        ceiling = min(cap, ceiling * factor)


def retry_transient(attempt: Callable[[], T], *, what: str, is_transient: Callable[[Exception], bool],
                    give_up_after: float, delays: Iterator[float] | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    logger: logging.Logger = log) -> T:
    """Call ``attempt`` until it succeeds; re-raise at once an error ``is_transient`` rejects.

    Raises :class:`GaveUp` (chained to the last error) once ``give_up_after`` seconds have passed.
    """
    delays = delays or backoff_delays()
    deadline = clock() + give_up_after
    tries = 0
    while True:
        tries += 1
        try:
            result = attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            remaining = deadline - clock()
            if remaining <= 0:
                raise GaveUp(f"{what}: still failing after {tries} tries in {give_up_after:.0f} s: "
                             f"{exc}") from exc
            wait = min(next(delays), remaining)
            logger.warning("waiting for %s (try %d failed: %s); next try in %.1f s", what, tries, exc, wait)
            sleep(wait)
            continue
        if tries > 1:
            logger.info("%s answered after %d tries", what, tries)
        return result


def wait_out_drops(call: Callable[..., T], *args: Any, hosts: str, seconds: float) -> T:
    """A start-up step against ZooKeeper: a connection that drops under it (a member killed, an
    election) is waited out, as kazoo's recipes do, rather than exit; the step must be idempotent,
    as it is simply run again. A refused identity, or any other error, is not retried."""
    ready = KazooRetry(max_tries=-1, delay=0.5, max_delay=5, deadline=seconds, ignore_expire=True)
    try:
        result: T = ready(call, *args)
    except RetryFailedError:
        raise NetiError(f"ZooKeeper at {hosts} kept dropping the connection for {seconds:.0f} s") from None
    return result
