"""The chaos schedule is a pure function of its seed (issue 14)."""

from __future__ import annotations

import itertools

from neti_core.lab.chaos_plan import KINDS, UNDO, plan_chaos


def test_same_seed_same_schedule_and_another_seed_differs():
    assert plan_chaos(1, 5, 12) == plan_chaos(1, 5, 12)
    assert plan_chaos(1, 5, 12).steps != plan_chaos(2, 5, 12).steps


def test_five_minutes_give_at_least_50_faults_of_6_kinds():
    plan = plan_chaos(1, 5, 12, guard_limit=2)
    kinds = plan.faults_by_kind()
    assert sum(kinds.values()) >= 50 and len(kinds) >= 6, kinds
    assert set(kinds) <= set(KINDS)


def test_every_fault_is_undone_before_the_end_and_cuts_do_not_overlap():
    for seed in range(20):
        plan = plan_chaos(seed, 5, 12, guard_limit=2)
        open_faults: dict[tuple[str, tuple[int, ...]], float] = {}
        cut_open = 0
        for step in plan.steps:
            assert 0 <= step.at <= plan.seconds
            if step.action in UNDO:
                open_faults[(UNDO[step.action], step.slots)] = step.at
            undone = [k for k, v in UNDO.items() if v == step.action]
            if undone:
                key = (step.action, step.slots)
                assert key in open_faults, step
                del open_faults[key]
            if step.action == "cut":
                cut_open += 1
                assert cut_open == 1, f"seed {seed}: two single cuts at once at {step.at}"
            if step.action == "heal":
                cut_open -= 1
        assert not open_faults, f"seed {seed}: left undone {open_faults}"
        mass = next(s for s in plan.steps if s.action == "mass-cut")
        assert len(mass.slots) > 2, "the mass cut is more than the guard allows"


def test_churns_are_further_apart_than_the_removal_grace():
    plan = plan_chaos(3, 10, 12)
    churns = [s.at for s in plan.steps if s.action == "churn"]
    assert all(b - a >= 45 for a, b in itertools.pairwise(churns))


def test_the_soak_churns_without_cutting_anyone_off():
    plan = plan_chaos(1, 30, 12, soak=True)
    kinds = plan.faults_by_kind()
    assert "churn" in kinds and not {"cut", "mass-cut", "kill-agent"} & set(kinds)
    assert sum(kinds.values()) > 250
    churned = {slot for step in plan.steps if step.action == "churn" for slot in step.slots}
    assert churned and min(churned) >= 6, "the first half lives throughout (its RSS and fds measured)"


def test_resource_growth_is_measured_on_agents_that_lived_throughout():
    from neti_core.lab.chaos_probe import resource_report

    report = resource_report({1: (40.0, 20), 2: (42.0, 22), 3: (41.0, 21)},
                             {1: (41.5, 20), 2: (42.0, 23), 4: (35.0, 18)})
    assert report["agents_throughout"] == 2
    assert report["rss_growth_mb_max"] == 1.5 and report["fds_growth_max"] == 1
    assert report["start"]["rss_mb_max"] == 42.0 and report["end"]["fds_max"] == 23


def test_on_an_ensemble_zookeeper_members_are_killed_one_at_a_time_and_started_again():
    assert not {"zk-kill-leader", "zk-kill-follower"} & set(plan_chaos(1, 5, 12).faults_by_kind())
    for seed in range(10):
        plan = plan_chaos(seed, 5, 12, guard_limit=2, zk_members=3)
        down = None
        for step in plan.steps:
            if step.action.startswith("zk-kill-"):
                assert down is None, f"seed {seed}: a second member killed at {step.at} (quorum lost)"
                down = step.at
            elif step.action == "zk-start":
                assert (down is not None and 8 <= step.at - down <= 20) or step.at >= plan.seconds - 5
                down = None
        assert down is None, f"seed {seed}: a member left down"
    kinds = plan_chaos(1, 5, 12, guard_limit=2, zk_members=3).faults_by_kind()
    assert {"zk-kill-leader", "zk-kill-follower"} <= set(kinds) and sum(kinds.values()) >= 50, kinds


def test_a_host_launched_before_the_checkers_first_round_still_converges_before_it_is_probed():
    """CI found it: a drill started the checker, then churned a host; the new host appeared before
    the checker's first round (1 s later), was taken for one already in sync, and a member's probe
    to it, made before that member had its rules, counted as a broken promise."""
    from neti_core.config import ZkPaths
    from neti_core.lab.chaos_probe import SETTLE_SECONDS, Checker

    hosts = [{"name": "app-001"}, {"name": "app-002"}]
    checker = Checker(None, ZkPaths.under("/neti"), lambda: list(hosts), 0.0,  # type: ignore[arg-type]
                      grace_seconds=30, session_seconds=10)
    checker.note_hosts(checker.read_hosts(), 100.0, baseline=True)  # what start() does first
    hosts.append({"name": "app-003"})  # churn launches it before the first round
    checker.note_hosts(checker.read_hosts(), 101.0)  # the first round
    assert checker.known.unsettled == {"app-003": 101.0 + SETTLE_SECONDS}
