"""MirrorView against a real ZooKeeper: what it reads for a change, and how it finds entries that
exist only in ``ip-map`` (docs/membership.md). Real agents: tests/test_membership_mirror.py."""

from __future__ import annotations

import threading
import uuid
from ipaddress import IPv4Address

from neti_core.members import Member, Side, format_party_entry
from neti_core.party.mirror import BUCKETS, MirroredParty, bucket_of
from neti_core.party.view import MirrorView
from tests.conftest import connect
from tests.fixtures.agent import wait_for


def _member(n: int) -> Member:
    return Member(IPv4Address(f"54.0.0.{n}"), IPv4Address(f"10.0.0.{n}"), IPv4Address(f"192.168.0.{n}"),
                  Side.EC2)


def _view(zk, zk_paths, **kwargs) -> tuple[MirrorView, threading.Event]:
    changed = threading.Event()
    return MirrorView(zk, zk_paths, changed.set, **kwargs), changed


def test_a_join_and_a_leave_cost_one_bucket_and_no_ip_map_read(zk, zk_paths):
    first = MirroredParty(zk, zk_paths, _member(1))
    first.join()
    view, changed = _view(zk, zk_paths)
    cold = view.snapshot()
    assert cold.buckets_read == BUCKETS and cold.full_ip_map_reads == 0
    assert {e.node_name for e in cold.party.entries} == {first.node_name}

    second = MirroredParty(zk, zk_paths, _member(2))
    second.join()
    assert changed.wait(10), "the bucket watch fired"
    after_join = view.snapshot()
    assert after_join.buckets_read == 1 and after_join.full_ip_map_reads == 0
    assert {e.node_name for e in after_join.party.entries} == {first.node_name, second.node_name}
    assert after_join.cversion == zk.exists(zk_paths.ip_map).cversion

    changed.clear()
    first.leave()
    assert changed.wait(10)
    after_leave = view.snapshot()
    assert after_leave.buckets_read == 1 and after_leave.full_ip_map_reads == 0
    assert {e.node_name for e in after_leave.party.entries} == {second.node_name}
    # Both of an entry's nodes are written, and removed, together; ip-map stays the original party.
    assert zk.get_children(zk_paths.ip_map) == [second.node_name]
    bucket = bucket_of(_member(2).identifier())
    assert zk.get_children(f"{zk_paths.members}/{bucket}") == [second.node_name]
    view.close()


def test_an_entry_only_in_ip_map_is_found_by_the_poll_and_followed_until_it_leaves(zk_server, zk, zk_paths):
    MirroredParty(zk, zk_paths, _member(1)).join()
    view, changed = _view(zk, zk_paths, legacy_poll_seconds=0.5)
    view.snapshot()
    old_agent = connect(zk_server.hosts)
    legacy = format_party_entry(uuid.uuid4().hex, _member(3))
    try:
        old_agent.create(f"{zk_paths.ip_map}/{legacy}", ephemeral=True)
        assert changed.wait(10), "the ip-map poll noticed the write"
        seen = view.snapshot()
        assert legacy in {e.node_name for e in seen.party.entries}
        assert seen.full_ip_map_reads == 1
        # A mixed fleet: a second legacy join shows too (ip-map is now also followed by its watch).
        changed.clear()
        another = format_party_entry(uuid.uuid4().hex, _member(4))
        old_agent.create(f"{zk_paths.ip_map}/{another}", ephemeral=True)
        assert changed.wait(10)
        assert another in {e.node_name for e in view.snapshot().party.entries}
    finally:
        old_agent.stop()
        old_agent.close()
    wait_for(lambda: not ({legacy, another} & {e.node_name for e in view.snapshot().party.entries}),
             timeout=20, what="the old agent's entries gone from the view")
    view.close()


def test_a_deleted_bucket_leaves_its_members_in_the_party_through_ip_map(zk, zk_paths):
    first = MirroredParty(zk, zk_paths, _member(1))
    first.join()  # creates the buckets
    lost = MirroredParty(zk, zk_paths, _member(2))
    bucket = f"{zk_paths.members}/{bucket_of(_member(2).identifier())}"
    zk.delete(bucket, recursive=True)  # an operator's slip
    lost.join()
    assert not lost.mirrored and zk.exists(lost.party_path), "joined through ip-map alone"
    view, _ = _view(zk, zk_paths)
    try:
        assert {e.node_name for e in view.snapshot().party.entries} == {first.node_name, lost.node_name}
        zk.create(bucket)  # back: the next self-heal adds the twin
        assert lost.restore() and lost.mirrored and zk.exists(lost.mirror_path)
        wait_for(lambda: {e.node_name for e in view.snapshot().party.entries}
                 == {first.node_name, lost.node_name}, what="still both members")
    finally:
        view.close()
