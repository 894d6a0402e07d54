"""The lab restarts its agents as systemd does on a real host (``Restart=always``).

Without it a lab agent that crashed stayed dead (150-host lab: 20 agents lost for good at start),
which no real host would show. Each restart is counted so ``neti lab status`` shows it, and a
restart the chaos schedule did not cause is a finding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("neti.lab")
RESTART_SECONDS = 1.0  # conf/neti-agent.service says 5; the lab is quicker so drills stay short


class Supervisable(Protocol):
    @property
    def name(self) -> str: ...

    supervised: bool
    restarts: int
    last_exit: int | None
    last_words: str | None
    died_at: float | None

    def exit_code(self) -> int | None:
        """None while the agent runs (or none was started); else its exit status."""

    def restart(self) -> None: ...

    def last_log_line(self) -> str | None:
        """What the agent printed last (why it exited, when it said so)."""


@dataclass(frozen=True, slots=True)
class Decision:
    name: str
    restart: bool


def decide(units: Iterable[Supervisable], now: float, restart_seconds: float) -> list[Decision]:
    """Pure: which exited agents to note as dead (first seen) and which to restart (due)."""
    decisions = []
    for unit in units:
        if not unit.supervised or unit.exit_code() is None:
            continue
        if unit.died_at is None:
            decisions.append(Decision(unit.name, False))
        elif now - unit.died_at >= restart_seconds:
            decisions.append(Decision(unit.name, True))
    return decisions


class AgentSupervisor:
    """A thread that polls the agents; ``lock`` is the lab's, held while acting on one."""

    def __init__(self, units: Callable[[], list[Supervisable]], lock: threading.RLock,
                 on_change: Callable[[], None], restart_seconds: float = RESTART_SECONDS,
                 poll_seconds: float = 0.5) -> None:
        self._units = units
        self._lock = lock
        self._on_change = on_change
        self.restart_seconds = restart_seconds
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AgentSupervisor:
        self._thread = threading.Thread(target=self._run, name="lab-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.tick(time.monotonic())
            except Exception:  # a failed restart is retried at the next poll, never kills the thread
                log.exception("supervisor")

    def tick(self, now: float) -> None:
        changed = False
        with self._lock:
            units = {unit.name: unit for unit in self._units()}
            for decision in decide(units.values(), now, self.restart_seconds):
                unit = units[decision.name]
                if not decision.restart:
                    unit.last_exit, unit.died_at = unit.exit_code(), now
                    unit.last_words = unit.last_log_line()
                    log.warning("agent on %s exited with %s (%s); restarting in %.0f s", unit.name,
                                unit.last_exit, unit.last_words, self.restart_seconds)
                    continue
                unit.restart()
                unit.restarts += 1
                unit.died_at = None
                changed = True
                log.info("agent on %s restarted (%d restarts)", unit.name, unit.restarts)
        if changed:
            self._on_change()
