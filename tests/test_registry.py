"""The overlay-IP registry and the party, against a real ZooKeeper server."""

from __future__ import annotations

import threading
import time
import uuid
from ipaddress import IPv4Address, IPv4Network

import pytest
from kazoo.protocol.states import KazooState

from neti_core.errors import MalformedEntryError, OverlayExhaustedError
from neti_core.members import Member, Side
from neti_core.party.mirror import MirroredParty
from neti_core.registry import (
    OverlayRegistry,
    read_params,
    read_party,
)
from tests.conftest import connect

SUBNET = IPv4Network("192.168.0.0/16")


def instance_id(n: int) -> str:
    return f"i-{n:017x}"


def test_register_claims_both_maps_and_reregistration_returns_the_same_ip(zk, zk_paths):
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    first = registry.register(instance_id(1))
    assert first.newly_allocated
    assert first.overlay_ip in SUBNET
    assert zk.get(f"{zk_paths.ip_to_id}/{first.overlay_ip}")[0] == instance_id(1).encode()
    assert zk.get(f"{zk_paths.id_to_ip}/{instance_id(1)}")[0] == str(first.overlay_ip).encode()
    again = registry.register(instance_id(1))
    assert again.overlay_ip == first.overlay_ip and not again.newly_allocated
    assert registry.lookup(instance_id(1)) == first.overlay_ip


def test_network_and_broadcast_addresses_are_never_handed_out(zk, zk_paths):
    subnet = IPv4Network("10.99.0.0/29")
    registry = OverlayRegistry(zk, zk_paths, subnet)
    ips = {registry.register(instance_id(n)).overlay_ip for n in range(6)}
    assert ips == set(subnet.hosts())


def test_exhaustion_is_a_clear_error(zk, zk_paths):
    registry = OverlayRegistry(zk, zk_paths, IPv4Network("10.99.0.0/30"))
    registry.register(instance_id(1))
    registry.register(instance_id(2))
    with pytest.raises(OverlayExhaustedError, match=r"10\.99\.0\.0/30 is exhausted"):
        registry.register(instance_id(3))
    assert zk.exists(f"{zk_paths.id_to_ip}/{instance_id(3)}") is None


def test_bad_instance_ids_never_reach_zookeeper(zk, zk_paths):
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    with pytest.raises(MalformedEntryError):
        registry.register("../../zookeeper")
    assert zk.exists(zk_paths.prefix) is None


def test_concurrent_registrations_each_with_its_own_session_never_share_an_ip(zk_server, zk, zk_paths):
    # A small subnet makes collisions between the racing picks likely, so the transaction matters.
    subnet = IPv4Network("10.98.0.0/26")  # 62 addresses for 40 hosts
    hosts = 40
    clients = [connect(zk_server.hosts) for _ in range(hosts)]
    barrier = threading.Barrier(hosts)
    results: dict[str, IPv4Address] = {}
    errors: list[BaseException] = []

    def register(n: int) -> None:
        try:
            barrier.wait()
            results[instance_id(n)] = OverlayRegistry(clients[n], zk_paths, subnet).register(
                instance_id(n)).overlay_ip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client in clients:
        client.stop()
        client.close()
    assert errors == []
    assert len(set(results.values())) == hosts
    ip_to_id, id_to_ip = OverlayRegistry(zk, zk_paths, subnet).read_maps()
    assert {ip: iid for ip, iid in ip_to_id.items()} == {str(ip): iid for iid, ip in results.items()}
    assert id_to_ip == {iid: str(ip) for iid, ip in results.items()}


def test_the_same_instance_racing_itself_gets_one_ip(zk_server, zk_paths):
    clients = [connect(zk_server.hosts) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    ips = []

    def register(client) -> None:
        barrier.wait()
        ips.append(OverlayRegistry(client, zk_paths, SUBNET).register(instance_id(7)).overlay_ip)

    threads = [threading.Thread(target=register, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ips) == len(clients) and len(set(ips)) == 1
    assert clients[0].get_children(zk_paths.ip_to_id) == [str(ips[0])]
    for client in clients:
        client.stop()
        client.close()


def test_a_forward_entry_without_its_reverse_is_repaired_on_registration(zk, zk_paths):
    """An older agent wrote id-to-ip and died before ip-to-id."""
    zk.create(f"{zk_paths.id_to_ip}/{instance_id(5)}", b"192.168.4.4", makepath=True)
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    registration = registry.register(instance_id(5))
    assert registration.overlay_ip == IPv4Address("192.168.4.4")
    assert registration.repaired
    assert zk.get(f"{zk_paths.ip_to_id}/192.168.4.4")[0] == instance_id(5).encode()
    assert registry.audit() == []


def test_a_forward_entry_pointing_at_someone_elses_ip_gets_a_new_ip(zk, zk_paths):
    zk.create(f"{zk_paths.ip_to_id}/192.168.4.4", instance_id(1).encode(), makepath=True)
    zk.create(f"{zk_paths.id_to_ip}/{instance_id(1)}", b"192.168.4.4", makepath=True)
    zk.create(f"{zk_paths.id_to_ip}/{instance_id(2)}", b"192.168.4.4", makepath=True)
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    assert [p.kind for p in registry.audit()] == ["conflict"]
    registration = registry.register(instance_id(2))
    assert registration.overlay_ip != IPv4Address("192.168.4.4")
    assert zk.get(f"{zk_paths.ip_to_id}/192.168.4.4")[0] == instance_id(1).encode()
    assert registry.audit() == []


def test_audit_reports_and_repair_fixes_half_written_pairs(zk, zk_paths):
    zk.create(f"{zk_paths.ip_to_id}/192.168.9.9", instance_id(9).encode(), makepath=True)  # no forward
    zk.create(f"{zk_paths.id_to_ip}/{instance_id(8)}", b"192.168.8.8", makepath=True)  # no reverse
    zk.create(f"{zk_paths.ip_to_id}/192.168.8.7", instance_id(8).encode())  # leaked extra claim
    zk.create(f"{zk_paths.ip_to_id}/not-an-ip", b"i-zzz")
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    problems = registry.audit()
    assert sorted(p.kind for p in problems) == ["malformed", "missing-id-to-ip", "missing-ip-to-id"]
    fixed = registry.repair(problems)
    assert sorted(p.kind for p in fixed) == ["missing-id-to-ip", "missing-ip-to-id"]
    # Now 192.168.8.7 is an orphan: its owner's IP is 192.168.8.8.
    assert sorted(p.kind for p in registry.audit()) == ["malformed", "orphan"]
    registry.repair(registry.audit())
    assert [p.kind for p in registry.audit()] == ["malformed"]
    assert registry.register(instance_id(9)).overlay_ip == IPv4Address("192.168.9.9")
    assert registry.register(instance_id(8)).overlay_ip == IPv4Address("192.168.8.8")


def test_params_are_written_with_defaults_and_read_back(zk, zk_paths):
    params = read_params(zk, zk_paths)
    assert (params.interval, params.problems) == (1.0, ())
    assert not zk.exists(zk_paths.maxchange), "maxchange is the operators' node: the agent writes none"
    zk.create(zk_paths.maxchange, b"50")
    zk.set(zk_paths.interval, b"2.5")
    params = read_params(zk, zk_paths)
    assert (params.maxchange, params.interval) == (50, 2.5)
    zk.set(zk_paths.interval, b"soon")
    params = read_params(zk, zk_paths)
    assert params.interval == 1.0 and "not a number" in params.problems[0]


def test_a_tree_in_the_original_layout_is_read_as_is(zk, zk_paths):
    """What the 2014 agent left behind: both maps, ip-map entries, maxchange and interval."""
    zk.create(f"{zk_paths.ip_to_id}/192.168.1.10", b"i-0a1b2c3d", makepath=True)
    zk.create(f"{zk_paths.id_to_ip}/i-0a1b2c3d", b"192.168.1.10", makepath=True)
    zk.create(f"{zk_paths.ip_map}/{uuid.uuid4().hex}-54.10.0.1|10.0.0.10|192.168.1.10|0",
              makepath=True, ephemeral=True)
    zk.create(zk_paths.maxchange, b"30")
    zk.create(zk_paths.interval, b"45")
    party, _ = read_party(zk, zk_paths)
    assert party.members == (Member(IPv4Address("54.10.0.1"), IPv4Address("10.0.0.10"),
                                    IPv4Address("192.168.1.10"), Side.EC2),)
    params = read_params(zk, zk_paths)
    assert (params.maxchange, params.interval) == (30, 45.0)
    registry = OverlayRegistry(zk, zk_paths, SUBNET)
    assert registry.audit() == []
    assert registry.register("i-0a1b2c3d").overlay_ip == IPv4Address("192.168.1.10")


def _expire_session(zk_server, client) -> None:
    """Really expire it: a second client with the same session id and password closes it."""
    session_id, password = client.client_id
    intruder = connect(zk_server.hosts, client_id=(session_id, password))
    intruder.stop()
    intruder.close()


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_party_rejoins_with_the_same_overlay_ip_after_session_expiry(zk_server, zk, zk_paths):
    agent = connect(zk_server.hosts)
    states: list[KazooState] = []
    agent.add_listener(states.append)
    overlay = OverlayRegistry(agent, zk_paths, SUBNET).register(instance_id(3)).overlay_ip
    member = Member(IPv4Address("54.0.0.3"), IPv4Address("10.0.0.3"), overlay, Side.VPC)
    rejoined = threading.Event()
    membership = MirroredParty(agent, zk_paths, member, on_rejoin=rejoined.set)
    membership.join()
    assert read_party(zk, zk_paths)[0].members == (member,)
    old_session = agent.client_id[0]

    _expire_session(zk_server, agent)
    _wait(lambda: KazooState.LOST in states)
    assert rejoined.wait(20)
    assert agent.client_id[0] != old_session
    party, _ = read_party(zk, zk_paths)
    assert party.members == (member,)
    assert OverlayRegistry(agent, zk_paths, SUBNET).register(instance_id(3)).overlay_ip == overlay
    membership.leave()
    assert read_party(zk, zk_paths)[0].members == ()
    agent.stop()
    agent.close()


def test_three_node_ensemble_forms_a_quorum_and_replicates():
    from neti_core.lab.zkserver import ZooKeeperEnsemble

    with ZooKeeperEnsemble() as ensemble:
        modes = sorted(server.mode() for server in ensemble.servers)
        assert modes == ["follower", "follower", "leader"]
        writer = connect(ensemble.servers[0].hosts)
        reader = connect(ensemble.servers[2].hosts)
        writer.create("/quorum-check", b"ok")
        reader.sync("/quorum-check")
        assert reader.get("/quorum-check")[0] == b"ok"
        for client in (writer, reader):
            client.stop()
            client.close()
