"""The EC2 inventory, polled: running instances (paginated, ignore patterns applied) every period.

EC2 has no watch, so this is the one poll of the console; it runs on its own thread (a Textual
thread worker in the console) and hands each result to the live view, which turns it into events.
A failed poll keeps the last good inventory and reports the error: the console shows a banner and
keeps polling, it never exits for a broken API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from neti_core.aws import GroupOpening, Instance, group_openings, running_instances

log = logging.getLogger(__name__)


def short_error(exc: BaseException) -> str:
    """One line for the banner: the exception's first line, or its type."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Ec2Poller:
    """Polls ``describe_instances`` every ``period`` seconds; :meth:`poll_now` wakes it early."""

    def __init__(self, client_factory: Callable[[], Any], ignore_patterns: Iterable[str],
                 period: float) -> None:
        self.client_factory = client_factory
        self.ignore_patterns = tuple(ignore_patterns)
        self.period = period
        self._wake = threading.Event()
        self._client: Any = None

    def poll_now(self) -> None:
        self._wake.set()

    def poll_once(self) -> tuple[list[Instance], list[str]]:
        """One inventory (raises whatever boto3 raises)."""
        if self._client is None:
            self._client = self.client_factory()
        malformed: list[str] = []
        instances = list(running_instances(self._client, self.ignore_patterns, malformed))
        return instances, malformed

    def poll_groups(self, instances: list[Instance]) -> tuple[GroupOpening, ...] | str:
        """The security groups of the fleet's instances (what the last phases' guards check), or
        the error that kept them from being read: a failure here must not lose the inventory."""
        try:
            return tuple(group_openings(self._client, (g for i in instances for g in i.security_groups)))
        except Exception as exc:  # any failure of the API: the guard says "unknown", polling goes on
            log.info("security group poll failed: %s", exc)
            return short_error(exc)

    def run(self, on_inventory: Callable[[list[Instance], list[str], tuple[GroupOpening, ...] | str], None],
            on_error: Callable[[str], None], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                instances, malformed = self.poll_once()
            except Exception as exc:  # any failure of the API or the client: report, keep polling
                log.info("EC2 poll failed: %s", exc)
                on_error(short_error(exc))
            else:
                on_inventory(instances, malformed, self.poll_groups(instances))
            self._wake.wait(self.period)
            self._wake.clear()
