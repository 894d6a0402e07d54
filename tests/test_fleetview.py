"""The live fleet view against a real ZooKeeper (and moto's EC2 server): rows, states, batches."""

from __future__ import annotations

import json
import threading
import time

import boto3
from botocore.config import Config as BotoConfig

from neti_core.aws import ec2_client
from neti_core.fleet import Ec2Poller, FleetModel, RuleState, TreeRead
from neti_core.fleet.events import AuditAppended
from neti_core.members import Side
from neti_core.schema import AuditEntry, FleetDefaults, GuardState, RejectAllOverride
from tests.conftest import connect
from tests.fixtures.console import FIXED_NOW, console_config, instance_id, launch


def test_the_view_reads_the_tree_then_follows_changes_row_by_row(seeder, live_fleet):
    seeder.seed(5, vpc_every=5)
    runner = live_fleet()
    snapshot = runner.wait_for(lambda s: s.zk.loaded and len(s.rows) == 5)
    assert {row.state for row in snapshot.rows.values()} == {RuleState.IN_SYNC}
    assert snapshot.summary.registered == 5 and snapshot.summary.vpc == 1
    row = snapshot.rows[instance_id(5)]
    assert (row.side, row.overlay_ip, row.version) == ("vpc", "192.168.0.6", "1.2.0")

    seen = len(runner.batches)
    seeder.publish(3, error="apply failed, previous rules kept: boom")
    snapshot = runner.wait_for(lambda s: s.rows[instance_id(3)].state is RuleState.ERROR)
    changed = [b for b in runner.batches[seen:] if b.changed_keys]
    assert changed[-1].changed_keys == {instance_id(3)}, "one status change touches one row"
    assert snapshot.summary.errors == 1


def test_every_status_rewritten_at_once_and_again_ends_with_each_hosts_last_value(
        seeder, live_fleet, zk_server):
    """After a membership change every agent rewrites its status: the view re-reads them in bulk
    and re-arms their watches, so a second rewrite right behind the first is not missed."""
    seeder.seed(150)
    runner = live_fleet()
    runner.wait_for(lambda s: s.zk.loaded and len(s.rows) == 150)
    for version in ("2.0.0", "2.0.1"):
        for n in range(1, 151):
            seeder.publish(n, version=version)
    seeder.publish(77, version="2.0.2")
    snapshot = runner.wait_for(lambda s: {row.version for key, row in s.rows.items()
                                          if key != instance_id(77)} == {"2.0.1"}
                               and s.rows[instance_id(77)].version == "2.0.2", timeout=30)
    assert len(snapshot.rows) == 150
    seeder.publish(150, version="2.0.3")  # the watch re-armed after the bulk re-read still fires
    runner.wait_for(lambda s: s.rows[instance_id(150)].version == "2.0.3")


def test_a_status_changed_while_a_big_fleet_loads_ends_with_its_new_value(
        seeder, live_fleet, monkeypatch, zk_server):
    """The rest of a progressive read waits in the queue in chunks; a status changed right after
    the read fires its watch and is re-read at once. Its chunk, still queued with the value read
    before the change, must not overwrite that: every item its own window (coalescing off) and
    one status per chunk make the order as bad as it gets."""
    from neti_core.fleet import fullread, watcher

    monkeypatch.setattr(watcher, "FIRST_SLICE", 5)
    monkeypatch.setattr(watcher, "LOADING_CHUNK", 1)
    monkeypatch.setattr(watcher, "LOADING_COALESCE_SECONDS", 0.0)
    seeder.seed(60)
    other = connect(zk_server.hosts)
    last = other.get_children(seeder.paths.status)[-1]  # listed last: its chunk comes last
    armed = fullread.arm_data_watches

    def arm_then_change(*args, **kwargs):
        armed(*args, **kwargs)
        path = f"{seeder.paths.status}/{last}"
        data = json.loads(other.get(path)[0])
        other.set(path, json.dumps({**data, "version": "9.9.9"}).encode())

    monkeypatch.setattr(fullread, "arm_data_watches", arm_then_change)
    try:
        runner = live_fleet(coalesce=0.0)
        final = runner.wait_for(lambda s: s.zk.loaded and len(s.rows) == 60, timeout=60)
        time.sleep(0.5)  # anything still queued is in
        assert runner.batches[-1].snapshot.rows[last].version == "9.9.9"
        assert final.rows[last].version in ("1.2.0", "9.9.9")
    finally:
        other.stop()
        other.close()


def test_a_new_member_makes_every_agent_lag_until_it_applies(seeder, live_fleet):
    seeder.seed(3)
    runner = live_fleet()
    runner.wait_for(lambda s: len(s.rows) == 3)
    seeder.add_member(4)
    snapshot = runner.wait_for(lambda s: len(s.rows) == 4)
    assert [snapshot.rows[instance_id(n)].state_label for n in (1, 2, 3)] == ["lagging 1"] * 3
    assert snapshot.rows[instance_id(4)].state is RuleState.NO_AGENT
    for n in (1, 2, 4):
        seeder.publish(n, membership_version=seeder.cversion())
    snapshot = runner.wait_for(lambda s: s.rows[instance_id(4)].state is RuleState.IN_SYNC)
    assert snapshot.rows[instance_id(3)].state_label == "lagging 1"
    assert snapshot.summary.lagging == 1


def test_controls_desired_versus_applied_guard_and_deadman(seeder, live_fleet, zk, zk_paths):
    seeder.seed(3)
    runner = live_fleet()
    runner.wait_for(lambda s: len(s.rows) == 3)
    zk.create(f"{zk_paths.control_reject_all}/{instance_id(1)}",
              RejectAllOverride(True, "alice", FIXED_NOW, "canary").to_json(), makepath=True)
    snapshot = runner.wait_for(lambda s: s.rows[instance_id(1)].state is RuleState.PENDING)
    row = snapshot.rows[instance_id(1)]
    assert (row.desired, row.desired_source) == (True, "host")
    assert (row.applied, row.applied_source) == (False, "config")
    seeder.publish(1, reject_all=True, reject_all_source="host", deadman="pending")
    runner.wait_for(lambda s: s.rows[instance_id(1)].state is RuleState.DEADMAN)
    seeder.publish(1, deadman="confirmed")
    runner.wait_for(lambda s: s.rows[instance_id(1)].state is RuleState.IN_SYNC)
    zk.create(zk_paths.control_defaults, FleetDefaults(True, "bob", FIXED_NOW).to_json())
    snapshot = runner.wait_for(lambda s: s.rows[instance_id(2)].desired is True)
    assert snapshot.rows[instance_id(2)].desired_source == "fleet"
    seeder.publish(2, guard=GuardState(7, 5, FIXED_NOW))
    snapshot = runner.wait_for(lambda s: s.rows[instance_id(2)].state is RuleState.GUARD)
    assert "7 removals held" in snapshot.rows[instance_id(2)].detail


def test_statuses_that_vanish_or_are_malformed_and_the_audit_log(seeder, live_fleet, zk, zk_paths):
    seeder.seed(2)
    runner = live_fleet()
    runner.wait_for(lambda s: len(s.rows) == 2)
    zk.delete(f"{zk_paths.status}/{instance_id(2)}")
    runner.wait_for(lambda s: s.rows[instance_id(2)].state is RuleState.NO_AGENT)
    zk.create(f"{zk_paths.status}/{instance_id(2)}", b'{"instance_id": "i-1"}')
    snapshot = runner.wait_for(lambda s: s.rows[instance_id(2)].state is RuleState.ERROR)
    assert any(p.startswith(f"status/{instance_id(2)}") for p in snapshot.problems)
    zk.create(f"{zk_paths.audit}/entry-", AuditEntry("alice", FIXED_NOW, "reject_all.set", instance_id(1),
                                                     None, True).to_json(), sequence=True, makepath=True)
    snapshot = runner.wait_for(lambda s: len(s.audit) == 1)
    assert snapshot.history(instance_id(1))[0].entry.who == "alice"
    assert any(isinstance(e, AuditAppended) for b in runner.batches for e in b.events)


def test_unregistered_instances_come_from_the_ec2_inventory(seeder, live_fleet, ec2, moto_server, zk_server):
    web = launch(ec2, 3, "web")
    launch(ec2, 2, "zkneti")
    config = console_config(zk_server.hosts, seeder.paths.prefix, moto_server.url)
    poller = Ec2Poller(lambda: ec2_client(config), config.ignore_name_patterns, 60)
    instances, malformed = poller.poll_once()
    assert {i.instance_id for i in instances} == set(web) and not malformed
    seeder.seed(2)
    runner = live_fleet(ec2_configured=True)
    runner.wait_for(lambda s: len(s.rows) == 2)
    runner.fleet.submit_instances(instances)
    snapshot = runner.wait_for(lambda s: len(s.rows) == 5)
    unregistered = snapshot.unregistered
    assert sorted(r.name for r in unregistered) == ["web0", "web1", "web2"]
    assert snapshot.summary.unregistered == 3 and snapshot.summary.percent_in_neti == 40.0
    runner.fleet.submit_ec2_error("EndpointConnectionError: could not connect")
    snapshot = runner.wait_for(lambda s: s.ec2.error is not None)
    assert len(snapshot.unregistered) == 3, "the last good inventory is kept"


def test_a_failing_ec2_api_is_reported_and_polling_goes_on():
    fast = BotoConfig(retries={"max_attempts": 1}, connect_timeout=1)
    poller = Ec2Poller(lambda: boto3.client("ec2", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                                            aws_access_key_id="x", aws_secret_access_key="x", config=fast),
                       (), 0.05)
    errors: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(lambda *a: None, errors.append, stop))
    thread.start()
    deadline = time.monotonic() + 20
    while len(errors) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.poll_now()
    thread.join(10)
    assert len(errors) >= 2 and "connect" in errors[0].lower()


def test_the_model_alone_batches_and_names_nameless_members():
    """Pure: a party entry without ip-to-id is keyed by overlay until a status names it."""
    model = FleetModel(ec2_configured=False)
    name = f"{1:032x}-54.0.0.2|10.1.0.2|192.168.0.2|0"
    model.reset(TreeRead(party=[name, "garbage"], cversion=4), 0.1)
    batch = model.flush()
    assert batch is not None and set(batch.snapshot.rows) == {"overlay:192.168.0.2"}
    assert any("garbage" in p for p in batch.snapshot.problems)
    status = {"instance_id": instance_id(1), "overlay_ip": "192.168.0.2", "side": "ec2", "version": "1",
              "reject_all": False, "reject_all_source": "config", "membership_version": 4, "members": 1,
              "ruleset_hash": "x"}
    model.set_status(instance_id(1), json.dumps(status).encode())
    batch = model.flush()
    assert set(batch.snapshot.rows) == {instance_id(1)} and batch.removed_keys == {"overlay:192.168.0.2"}
    assert batch.snapshot.rows[instance_id(1)].state is RuleState.IN_SYNC
    assert model.flush() is None, "nothing happened, no batch"


def test_seeded_hosts_are_on_their_side(seeder):
    host = seeder.add_member(7, Side.VPC)
    assert host.member.side is Side.VPC and str(host.member.private).startswith("10.2.")


def test_a_big_fleet_shows_its_first_rows_at_once_and_ends_exactly_as_one_whole_read(
        seeder, live_fleet, monkeypatch, zk, zk_paths):
    from neti_core.fleet import watcher

    monkeypatch.setattr(watcher, "FIRST_SLICE", 20)  # 10,000 hosts in the bench; 120 here
    seeder.seed(120, vpc_every=6)
    runner = live_fleet()
    final = runner.wait_for(lambda s: s.zk.loaded, timeout=60)
    snapshots = [b.snapshot for b in runner.batches if b.snapshot.rows]
    first = snapshots[0]
    assert first.zk.loading is not None and not first.zk.loaded, "first rows before the whole read"
    assert 0 < len(first.rows) < 120
    assert set(first.rows) <= {instance_id(n) for n in range(1, 121)}, "no row under a key it loses"
    assert all(row.state is RuleState.IN_SYNC for row in first.rows.values()), "no false alarm"
    progress = [s.zk.loading[0] for s in snapshots if s.zk.loading is not None]
    assert progress == sorted(progress) and final.zk.loading is None
    whole = watcher.LiveFleet(zk, zk_paths, ec2_configured=False).read_once()
    assert dict(final.rows) == dict(whole.rows) and len(final.rows) == 120
    assert final.summary == whole.summary
