"""``neti lab chaos``: the fault schedule, as a pure function of a seed (no I/O, no clock).

Same seed, same lab size, same schedule: a failing run can be replayed. Targets are slots (the
i-th agent host by name when the step runs), so a churned lab still resolves them. The schedule
keeps to what a fleet must survive without an operator: one host cut at a time except in one
mass-cut window (more than the guard's limit at once, which the guard must hold), churns apart
by more than the removal grace, every cut healed and every reject_all flip undone before the end.
On an ensemble (``zk_members`` >= 3) it also kills the ZooKeeper leader or a follower (kill -9),
one member at a time, and starts it again 8-20 s later: the quorum stays, sessions must survive.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

KINDS = ("kill-agent", "cut", "break", "churn", "reject-host", "reject-fleet", "mass-cut",
         "zk-kill-leader", "zk-kill-follower")
ZK_KINDS = ("zk-kill-leader", "zk-kill-follower")  # only on an ensemble
# What ends a fault (not counted as a fault): heal a cut, undo a reject_all flip.
# The soak: long-running churn without the faults that cut members off, to watch for growth.
SOAK_KINDS = ("churn", "reject-host", "reject-fleet", "break")
UNDO = {"cut": "heal", "mass-cut": "mass-heal", "reject-host": "reject-host-off",
        "reject-fleet": "reject-fleet-off", "zk-kill-leader": "zk-start", "zk-kill-follower": "zk-start"}


@dataclass(frozen=True, slots=True)
class Step:
    at: float                  # seconds from the start
    action: str                # a KINDS entry, or an UNDO value
    slots: tuple[int, ...] = ()  # which agent hosts (index into the names, modulo their number)


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    seed: int
    seconds: float
    steps: tuple[Step, ...]

    def faults_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(s.action for s in self.steps if s.action in KINDS).items()))


def plan_chaos(seed: int, minutes: float, hosts: int, *, every: float = 5.0, guard_limit: int = 1,
               churn_gap: float = 45.0, mass_cut_seconds: float = 60.0, soak: bool = False,
               zk_members: int = 1) -> ChaosPlan:
    """One fault about every ``every`` seconds (jittered) over ``minutes``; all undone by the end."""
    if hosts < 4:
        raise ValueError("chaos needs at least 4 agent hosts")
    rng = random.Random(seed)
    end = minutes * 60
    steps: list[Step] = []
    busy_until: dict[int, float] = {}    # slot -> when its current fault is undone
    mass = (end * rng.uniform(0.3, 0.5), 0.0)
    mass = (mass[0], min(mass[0] + mass_cut_seconds, end - 10))
    mass_slots = tuple(rng.sample(range(hosts), min(hosts // 2, guard_limit + 2)))
    if soak:
        mass, mass_slots = (-1e9, -1e9), ()
    else:
        steps.append(Step(mass[0], "mass-cut", mass_slots))
        steps.append(Step(mass[1], "mass-heal", mass_slots))
    last_churn, fleet_off, cut_until, zk_until = -churn_gap, 0.0, 0.0, 0.0
    allowed = [k for k in (SOAK_KINDS if soak else KINDS) if k != "mass-cut"
               and (k not in ZK_KINDS or zk_members >= 3)]
    t = rng.uniform(2, every)
    while t < end - 30:  # the last 30 s: only undoing
        in_mass = mass[0] - 15 <= t <= mass[1] + 15
        free = [s for s in range(hosts) if busy_until.get(s, 0) < t and s not in mass_slots]
        kinds = [k for k in allowed
                 if not (k in ZK_KINDS and zk_until > t)
                 and not (k == "churn" and (t - last_churn < churn_gap or in_mass))
                 and not (k == "cut" and (in_mass or cut_until > t))
                 and not (k == "reject-fleet" and fleet_off > t)]
        kind = rng.choice(kinds)
        if kind == "churn":
            last_churn = t
            # The soak leaves the first half (by name: the oldest hosts) alone, so that agents live
            # through the whole run and their RSS and fds can be compared start to end.
            churnable = [f for f in free if not soak or f >= hosts // 2]
            steps.append(Step(t, kind, (rng.choice(churnable),) if churnable else ()))
        elif kind in ZK_KINDS:  # one member down at a time: the quorum stays
            zk_until = min(t + rng.uniform(8, 20), end - 5)
            steps += [Step(t, kind), Step(zk_until, UNDO[kind])]
        elif kind == "reject-fleet":
            fleet_off = t + rng.uniform(10, 25)
            steps += [Step(t, kind), Step(fleet_off, UNDO[kind])]
        elif free:
            slot = rng.choice(free)
            steps.append(Step(t, kind, (slot,)))
            if kind in UNDO:
                done = min(t + rng.uniform(8, 20), end - 5)
                busy_until[slot] = done
                cut_until = done if kind == "cut" else cut_until
                steps.append(Step(done, UNDO[kind], (slot,)))
            else:
                busy_until[slot] = t + 12  # a killed or broken host settles before the next fault
        t += rng.uniform(every * 0.5, every * 1.5)
    return ChaosPlan(seed, end, tuple(sorted(steps, key=lambda s: (s.at, s.action))))
