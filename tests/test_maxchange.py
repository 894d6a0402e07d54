"""The guard's limit as a count or a share of the fleet (issue 14): pure parsing and resolution."""

from __future__ import annotations

import pytest

from agent.membership import MembershipTracker
from neti_core.errors import MalformedEntryError
from neti_core.maxchange import DEFAULT_MAXCHANGE, MaxChange, parse_maxchange
from tests.test_agent_logic import member


def test_a_count_keeps_its_original_meaning_and_a_share_scales():
    assert parse_maxchange("20") == MaxChange(count=20) == parse_maxchange(20)
    assert parse_maxchange(" 10% ") == MaxChange(percent=10.0)
    assert [parse_maxchange("20").limit(n) for n in (8, 100, 5000)] == [20, 20, 20]
    assert [parse_maxchange("10%").limit(n) for n in (1, 8, 30, 100, 5000)] == [1, 1, 3, 10, 500]
    assert parse_maxchange("0").limit(10) == 0 and parse_maxchange("0%").limit(10) == 0
    assert str(parse_maxchange("12.5%")) == "12.5%" and str(parse_maxchange("7")) == "7"


@pytest.mark.parametrize("bad", ["-1", "ten", "10 percent", "%", "101%", "1e3", "", "20%%"])
def test_anything_else_is_malformed(bad):
    with pytest.raises(MalformedEntryError, match="maxchange"):
        parse_maxchange(bad)


@pytest.mark.parametrize("fleet", [8, 12, 40, 1000])
def test_the_default_trips_when_half_of_any_fleet_vanishes(fleet):
    """The absolute 20 of old never tripped below 21 hosts; the default share does at every size."""
    tracker = MembershipTracker(grace_seconds=30)
    everyone = [member(n) for n in range(fleet)]
    tracker.commit(tracker.plan(everyone, now=0, maxchange=DEFAULT_MAXCHANGE))
    plan = tracker.plan(everyone[: fleet // 2], now=100, maxchange=DEFAULT_MAXCHANGE)
    assert plan.guard_tripped and plan.blocked_removals == fleet - fleet // 2
    assert plan.removed == 0 and len(plan.members) == fleet, "nothing is removed while it holds"
    assert plan.maxchange_setting == "10%"
    # One host replaced (the everyday case) never trips it, whatever the size.
    tracker.plan(everyone[1:], now=200, maxchange=DEFAULT_MAXCHANGE)
    single = tracker.plan(everyone[1:], now=240, maxchange=DEFAULT_MAXCHANGE)
    assert not single.guard_tripped and single.removed == 1


def test_raising_the_limit_releases_the_held_removals():
    tracker = MembershipTracker(grace_seconds=0)
    everyone = [member(n) for n in range(8)]
    tracker.commit(tracker.plan(everyone, now=0, maxchange=DEFAULT_MAXCHANGE))
    assert tracker.plan(everyone[:4], now=1, maxchange=DEFAULT_MAXCHANGE).guard_tripped
    plan = tracker.plan(everyone[:4], now=2, maxchange=parse_maxchange("50%"))
    assert not plan.guard_tripped and plan.removed == 4


def test_the_agent_reads_a_share_and_counts_through_the_one_count_decoder():
    from neti_core.maxchange import decode_guard_limit
    from neti_core.schema import decode_maxchange as count

    assert decode_guard_limit(b"10%", count) == MaxChange(percent=10.0)
    assert decode_guard_limit(b"20", count) == MaxChange(count=20)
    for bad in (b"lots", b"-1", b"150%"):
        with pytest.raises(MalformedEntryError):
            decode_guard_limit(bad, count)
