"""The agent's pure decisions: grace period, mass-change guard, dead-man switch, sync pacing."""

from __future__ import annotations

import itertools
import threading
import time
from ipaddress import IPv4Address

import pytest

from agent.deadman import Deadman
from agent.membership import MembershipTracker, load_applied, save_applied
from agent.runner import BoundedFrequencyRunner
from neti_core.members import Member, Side
from tests.fixtures.fake_timer import FakeTimer


def member(n: int, side: Side = Side.EC2) -> Member:
    return Member(IPv4Address(f"54.0.{n // 256}.{n % 256}"), IPv4Address(f"10.0.{n // 256}.{n % 256}"),
                  IPv4Address(f"192.168.{n // 256}.{n % 256}"), side)


def test_additions_apply_at_once_and_removals_wait_for_the_grace_period():
    tracker = MembershipTracker(grace_seconds=60)
    plan = tracker.plan([member(1), member(2)], now=0, maxchange=20)
    assert plan.members == (member(1), member(2))
    tracker.commit(plan)
    plan = tracker.plan([member(1), member(3)], now=10, maxchange=20)
    assert set(plan.members) == {member(1), member(2), member(3)}
    assert (plan.in_grace, plan.removed, plan.next_expiry) == (1, 0, 70)
    tracker.commit(plan)
    plan = tracker.plan([member(1), member(3)], now=70, maxchange=20)
    assert set(plan.members) == {member(1), member(3)} and plan.removed == 1
    tracker.commit(plan)


def test_a_member_that_returns_within_grace_is_never_removed():
    tracker = MembershipTracker(grace_seconds=60)
    tracker.commit(tracker.plan([member(1), member(2)], now=0, maxchange=20))
    tracker.commit(tracker.plan([member(1)], now=10, maxchange=20))
    tracker.commit(tracker.plan([member(1), member(2)], now=30, maxchange=20))
    plan = tracker.plan([member(1), member(2)], now=100, maxchange=20)
    assert plan.removed == 0 and set(plan.members) == {member(1), member(2)}


def test_guard_counts_removals_not_net_change_and_holds_them():
    tracker = MembershipTracker(grace_seconds=0)
    tracker.commit(tracker.plan([member(n) for n in range(10)], now=0, maxchange=3))
    # 5 vanish and 5 new ones arrive: the net change is 0, but 5 removals > maxchange 3.
    live = [member(n) for n in range(5)] + [member(n) for n in range(100, 105)]
    plan = tracker.plan(live, now=1, maxchange=3)
    assert plan.guard_tripped and plan.blocked_removals == 5
    assert set(plan.members) == {member(n) for n in range(10)} | {member(n) for n in range(100, 105)}
    tracker.commit(plan)
    # An operator raises maxchange: the removals go through and the guard clears.
    plan = tracker.plan(live, now=2, maxchange=5)
    assert not plan.guard_tripped and plan.removed == 5
    assert set(plan.members) == set(live)


def test_guard_clears_when_the_members_return():
    tracker = MembershipTracker(grace_seconds=0)
    everyone = [member(n) for n in range(10)]
    tracker.commit(tracker.plan(everyone, now=0, maxchange=2))
    tracker.commit(tracker.plan(everyone[:4], now=1, maxchange=2))
    plan = tracker.plan(everyone, now=2, maxchange=2)
    assert not plan.guard_tripped and plan.removed == 0 and len(plan.members) == 10


def test_a_live_entry_wins_its_overlay_ip_over_a_kept_one():
    tracker = MembershipTracker(grace_seconds=60)
    old = member(1)
    tracker.commit(tracker.plan([old], now=0, maxchange=20))
    moved = Member(IPv4Address("54.9.9.9"), IPv4Address("10.9.9.9"), old.overlay, Side.VPC)
    plan = tracker.plan([moved], now=1, maxchange=20)
    assert plan.members == (moved,)


def test_applied_members_survive_a_restart(tmp_path):
    path = tmp_path / "state" / "applied-members.json"
    save_applied(path, [member(1), member(2, Side.VPC)])
    members, problems = load_applied(path)
    assert set(members) == {member(1), member(2, Side.VPC)} and problems == []
    path.write_text('["1.2.3.4|x|y|0", "54.0.0.1|10.0.0.1|192.168.0.1|0"]')
    members, problems = load_applied(path)
    assert members == [member(1)] and len(problems) == 1
    path.write_text("{not json")
    assert load_applied(path)[0] == [] and load_applied(tmp_path / "none.json") == ([], [])


def test_deadman_confirms_after_settling_and_rolls_back_when_overdue():
    deadman = Deadman(confirm_seconds=30)
    deadman.armed(now=100)
    assert deadman.state == "pending"
    assert not deadman.may_confirm(105) and deadman.next_wakeup(105) == 5
    assert deadman.may_confirm(110)
    assert not deadman.overdue(129) and deadman.overdue(130)
    deadman.rolled_back(token=("host", 7))
    assert deadman.allowed(True, ("host", 7)) is False  # the same instruction is not retried
    assert deadman.state == "rolled_back"
    assert deadman.allowed(True, ("host", 8)) is True  # a new one is
    assert deadman.state is None
    deadman.armed(now=200)
    deadman.confirm()
    assert deadman.state == "confirmed" and deadman.next_wakeup(201) is None


def test_runner_coalesces_a_burst_into_few_syncs_and_resyncs_periodically():
    timer = FakeTimer()
    start = timer.now()
    calls: list[float] = []
    runner = BoundedFrequencyRunner(lambda: calls.append(timer.now()), lambda: 0.2,
                                    max_interval=0.5, timer=timer)
    for n in range(200):
        timer.at(start + n * 0.002, runner.mark_dirty)  # a burst lasting 0.4 s
    timer.at(start + 1.7, runner.stop)
    runner.run_forever()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # 200 triggers: syncs at 0 (first), 0.2 and 0.4 (dirty, paced by min_interval), then the
    # periodic resync every max_interval: 0.9, 1.4.
    assert [round(c - start, 6) for c in calls] == [0.0, 0.2, 0.4, 0.9, 1.4]
    assert min(gaps) >= 0.2 - 1e-9  # never more often than min_interval
    assert max(gaps) <= 0.5 + 1e-9  # never less often than max_interval


def test_runner_wakes_when_the_sync_asks():
    timer = FakeTimer()
    calls: list[float] = []

    def sync() -> float | None:
        calls.append(timer.now())
        return 0.1 if len(calls) == 1 else None

    runner = BoundedFrequencyRunner(sync, lambda: 0.05, max_interval=30, timer=timer)
    timer.at(timer.now() + 0.5, runner.stop)
    runner.run_forever()
    assert len(calls) == 2 and calls[1] - calls[0] == pytest.approx(0.1)


def test_runner_wakes_at_once_when_marked_dirty_from_another_thread():
    """The real timer: a watch callback's mark_dirty ends the wait (no periodic resync needed)."""
    calls: list[float] = []
    first, synced = threading.Event(), threading.Event()

    def sync() -> None:
        calls.append(time.monotonic())
        (first if len(calls) == 1 else synced).set()

    runner = BoundedFrequencyRunner(sync, lambda: 0.0, max_interval=60)
    thread = threading.Thread(target=runner.run_forever)
    thread.start()
    try:
        assert first.wait(10)
        marked = time.monotonic()
        runner.mark_dirty()
        assert synced.wait(10)
    finally:
        runner.stop()
        thread.join(10)
    assert calls[1] - marked < 10 and not thread.is_alive()


def test_guard_sees_staggered_vanishing_as_one_mass_change():
    """Sessions of dead hosts expire one by one; the guard must still see them together."""
    tracker = MembershipTracker(grace_seconds=1)
    everyone = [member(n) for n in range(4)]
    tracker.commit(tracker.plan(everyone, now=0, maxchange=1))
    tracker.commit(tracker.plan(everyone[:3], now=10, maxchange=1))  # the first expiry
    tracker.commit(tracker.plan(everyone[:2], now=10.5, maxchange=1))  # the second, half a second later
    plan = tracker.plan(everyone[:2], now=11.2, maxchange=1)  # the first one's grace is over
    assert plan.guard_tripped and plan.blocked_removals == 2 and len(plan.members) == 4
