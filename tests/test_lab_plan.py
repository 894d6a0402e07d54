"""The lab's fleet plan (pure)."""

from __future__ import annotations

import pytest

from neti_core.lab.plan import LabPlanError, plan_fleet
from neti_core.members import Side


def test_a_quarter_in_the_vpc_spread_through_the_fleet_plus_unregistered():
    plans = plan_fleet(40, 25, 5)
    agents = [p for p in plans if p.runs_agent]
    assert len(agents) == 40 and len(plans) == 45
    assert sum(p.side is Side.VPC for p in agents) == 10
    assert [p.side for p in agents[:8]].count(Side.VPC) == 2  # spread, not bunched at the end
    assert all(not p.runs_agent and p.name.startswith("legacy-") for p in plans[40:])
    assert len({p.private for p in plans}) == 45 and len({p.name for p in plans}) == 45


@pytest.mark.parametrize(("hosts", "vpc", "unregistered", "words"),
                         [(-1, 25, 0, "negative"), (4, 120, 0, "percentage"), (600, 0, 0, "at most")])
def test_bad_requests_are_one_line_errors(hosts, vpc, unregistered, words):
    with pytest.raises(LabPlanError, match=words):
        plan_fleet(hosts, vpc, unregistered)
