"""Who may change what, against a real TLS-only ZooKeeper with digest ACLs (docs/security.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE

from agent.status import StatusPublisher
from neti_core.config import ZkPaths
from neti_core.errors import ConfigError
from neti_core.members import Member, Side
from neti_core.operator_actions import FleetControl
from neti_core.party.mirror import ALL_BUCKETS, MirroredParty
from neti_core.party.view import MirrorView
from neti_core.registry import OverlayRegistry
from neti_core.schema import AgentStatus
from neti_core.zkclient import (
    CredentialsRefused,
    install_acl,
    make_client,
    read_secret,
    verify_agent_identity,
)
from tests.fixtures.trust import SecureZk

SUBNET = IPv4Network("192.168.0.0/16")


@pytest.fixture
def tree(secure_zk: SecureZk, zk_prefix: str) -> Iterator[Callable[..., KazooClient]]:
    """A secured tree; yields a connector for principals (closed at the end)."""
    secure_zk.secure(zk_prefix)
    clients: list[KazooClient] = []

    def principal(identity: str | None = None, *, agent: bool = False) -> KazooClient:
        config = secure_zk.config(zk_prefix, identity, agent=agent)
        if identity is None:  # a plain client over TLS with no credentials: it cannot even read the ACL
            client = make_client(config, secure_zk.server.hosts, timeout=10)
            client.start(timeout=20)
            with pytest.raises(CredentialsRefused, match="refused an unauthenticated client"):
                install_acl(client, config.zk_paths)
        else:
            client = secure_zk.connect(config)
        clients.append(client)
        return client

    yield principal
    for client in clients:
        client.stop()
        client.close()


def join_as(client: KazooClient, paths: ZkPaths, instance_id: str, private: str) -> MirroredParty:
    overlay = OverlayRegistry(client, paths, SUBNET).register(instance_id).overlay_ip
    member = Member(IPv4Address("203.0.113.1"), IPv4Address(private), overlay, Side.VPC, instance_id)
    membership = MirroredParty(client, paths, member)
    membership.join()
    assert StatusPublisher(client, paths, instance_id).publish(status_of(instance_id), force=True)
    return membership


def status_of(instance_id: str, members: int = 1) -> AgentStatus:
    return AgentStatus(instance_id, "192.168.0.1", "vpc", "test", False, "config", 1, members, "h")


def refused(action: Callable[[], object]) -> bool:
    try:
        action()
    except NoAuthError:
        return True
    return False


def test_without_credentials_every_write_path_is_refused(tree, zk_paths: ZkPaths) -> None:
    operator = tree("neti-operator")
    agent = tree("i-0aaaaaaaaaaaaaaa1", agent=True)
    join_as(agent, zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    FleetControl(operator, zk_paths, "alice").set_fleet_reject_all(True, "test")
    FleetControl(operator, zk_paths, "alice").set_maxchange(20, "test")
    anonymous = tree(None)
    p = zk_paths
    writes = {
        "fleet default": lambda: anonymous.set(p.control_defaults, b'{"reject_all": false}'),
        "host override": lambda: anonymous.create(f"{p.control_reject_all}/i-0aaaaaaaaaaaaaaa1", b"{}"),
        "party entry": lambda: anonymous.create(f"{p.ip_map}/x-1.2.3.4|10.9.9.9|192.168.9.9|1"),
        "overlay map": lambda: anonymous.create(f"{p.ip_to_id}/192.168.9.9", b"i-0bad"),
        "id map": lambda: anonymous.create(f"{p.id_to_ip}/i-0bad", b"192.168.9.9"),
        "status": lambda: anonymous.create(f"{p.status}/i-0bad", b"{}"),
        "audit": lambda: anonymous.create(f"{p.audit}/entry-", b"{}", sequence=True),
        "maxchange": lambda: anonymous.set(p.maxchange, b"100000"),
        "delete a member": lambda: anonymous.delete(f"{p.id_to_ip}/i-0aaaaaaaaaaaaaaa1"),
        "read the tree": lambda: anonymous.get_children(p.ip_map),
    }
    allowed = [name for name, write in writes.items() if not refused(write)]
    assert allowed == []


def test_an_agent_cannot_touch_another_agent_or_the_operators(tree, zk_paths: ZkPaths) -> None:
    operator = tree("neti-operator")
    FleetControl(operator, zk_paths, "alice").set_maxchange(20, "test")
    a, b = tree("i-0aaaaaaaaaaaaaaa1", agent=True), tree("i-0bbbbbbbbbbbbbbb2", agent=True)
    join_as(a, zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    b_membership = join_as(b, zk_paths, "i-0bbbbbbbbbbbbbbb2", "10.0.0.2")
    p = zk_paths
    b_nodes = [f"{p.id_to_ip}/i-0bbbbbbbbbbbbbbb2", f"{p.status}/i-0bbbbbbbbbbbbbbb2", b_membership.node_path]
    b_overlay = b.get(b_nodes[0])[0].decode()
    b_nodes.append(f"{p.ip_to_id}/{b_overlay}")
    attempts: dict[str, Callable[[], object]] = {
        "fleet default": lambda: a.create(p.control_defaults, b'{"reject_all": false}'),
        "host override": lambda: a.create(f"{p.control_reject_all}/i-0bbbbbbbbbbbbbbb2", b"{}"),
        "audit": lambda: a.create(f"{p.audit}/entry-", b"{}", sequence=True),
        "maxchange": lambda: a.set(p.maxchange, b"100000"),
        "re-open the tree": lambda: a.set_acls(p.ip_map, OPEN_ACL_UNSAFE),
    }
    for node in b_nodes:
        attempts[f"change {node}"] = lambda node=node: a.set(node, b"i-0aaaaaaaaaaaaaaa1")
        attempts[f"delete {node}"] = lambda node=node: a.delete(node)
    allowed = [name for name, attempt in attempts.items() if not refused(attempt)]
    assert allowed == []
    assert all(operator.exists(node) for node in b_nodes), "B's nodes are all still there"
    # A keeps its own: it may update its status (the agent's every sync does).
    assert StatusPublisher(a, p, "i-0aaaaaaaaaaaaaaa1").publish(status_of("i-0aaaaaaaaaaaaaaa1", 2),
                                                                force=True)


def mirror_join(client: KazooClient, paths: ZkPaths, instance_id: str, private: str) -> MirroredParty:
    """Join as an agent of this version does: ip-map entry and mirror twin in one transaction."""
    overlay = OverlayRegistry(client, paths, SUBNET).register(instance_id).overlay_ip
    member = Member(IPv4Address("203.0.113.1"), IPv4Address(private), overlay, Side.VPC, instance_id)
    party = MirroredParty(client, paths, member)
    party.join()
    return party


def test_an_agent_cannot_touch_another_agents_mirror_entry_or_the_buckets(
        tree, secure_zk: SecureZk, zk_paths: ZkPaths) -> None:
    operator = tree("neti-operator")
    a, b = tree("i-0aaaaaaaaaaaaaaa1", agent=True), tree("i-0bbbbbbbbbbbbbbb2", agent=True)
    a_party = mirror_join(a, zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    b_party = mirror_join(b, zk_paths, "i-0bbbbbbbbbbbbbbb2", "10.0.0.2")
    assert a_party.mirrored and b_party.mirrored, "zk secure made the buckets; agents joined both"
    p, bucket = zk_paths, b_party.mirror_path.rsplit("/", 1)[0]
    attempts: dict[str, Callable[[], object]] = {
        "change B's mirror entry": lambda: a.set(b_party.mirror_path, b"x"),
        "delete B's mirror entry": lambda: a.delete(b_party.mirror_path),
        "re-ACL B's mirror entry": lambda: a.set_acls(b_party.mirror_path, OPEN_ACL_UNSAFE),
        "nest under B's mirror entry": lambda: a.create(f"{b_party.mirror_path}/x"),
        "delete B's ip-map entry": lambda: a.delete(b_party.party_path),
        "delete a bucket": lambda: a.delete(bucket),
        "write a bucket": lambda: a.set(bucket, b"x"),
        "re-ACL a bucket": lambda: a.set_acls(bucket, OPEN_ACL_UNSAFE),
        "add a bucket": lambda: a.create(f"{p.members}/b999"),
        "re-ACL the mirror root": lambda: a.set_acls(p.members, OPEN_ACL_UNSAFE),
        "delete the mirror root": lambda: a.delete(p.members),
    }
    allowed = [name for name, attempt in attempts.items() if not refused(attempt)]
    assert allowed == []
    assert operator.exists(b_party.mirror_path) and operator.exists(b_party.party_path)
    assert len(operator.get_children(p.members)) == len(ALL_BUCKETS)
    # Each mirror entry carries its creator's identity (so a false one is attributable), in the create.
    own_acl, _ = operator.get_acls(a_party.mirror_path)
    tree_acl = secure_zk.tree()
    assert sorted(map(repr, own_acl)) == sorted(map(repr, tree_acl.for_agent_node(
        secure_zk.digest("i-0aaaaaaaaaaaaaaa1"))))
    # And every agent still reads the whole party from the mirror.
    view = MirrorView(a, p, lambda: None)
    try:
        seen = {e.member.private for e in view.snapshot().party.entries}
    finally:
        view.close()
    assert seen == {IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")}


def test_without_buckets_a_secured_agent_joins_ip_map_only_and_is_still_seen(
        tree, secure_zk: SecureZk, zk_prefix: str, zk_paths: ZkPaths) -> None:
    """A tree secured by an older `neti zk secure` has no buckets, and agents may not make them."""
    operator = tree("neti-operator")
    operator.delete(zk_paths.members, recursive=True)
    a, c = tree("i-0aaaaaaaaaaaaaaa1", agent=True), tree("i-0ccccccccccccccc3", agent=True)
    a_party = mirror_join(a, zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    assert not a_party.mirrored and operator.exists(a_party.party_path)
    assert operator.exists(zk_paths.members) is None, "the agent created nothing outside its rights"
    view = MirrorView(c, zk_paths, lambda: None)
    try:
        assert {e.member.private for e in view.snapshot().party.entries} == {IPv4Address("10.0.0.1")}
        # Once an operator re-runs `neti zk secure --apply`, the agent's next self-heal adds its twin.
        secure_zk.secure(zk_prefix)
        assert a_party.restore() and a_party.mirrored
        assert operator.exists(a_party.mirror_path)
        assert {e.member.private for e in view.snapshot().party.entries} == {IPv4Address("10.0.0.1")}
    finally:
        view.close()


def test_the_operator_does_what_the_console_does_and_the_readonly_operator_cannot(
        tree, zk_paths: ZkPaths) -> None:
    agent = tree("i-0aaaaaaaaaaaaaaa1", agent=True)
    join_as(agent, zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    control = FleetControl(tree("neti-operator"), zk_paths, "alice")
    assert control.set_host_reject_all(["i-0aaaaaaaaaaaaaaa1"], True, "drill").changed
    assert control.set_fleet_reject_all(True, "drill").changed
    assert control.set_maxchange(50, "drill").changed
    readonly = tree("neti-readonly")
    assert readonly.get_children(zk_paths.audit), "the read-only operator reads the audit log"
    ro = FleetControl(readonly, zk_paths, "bob")
    assert refused(lambda: ro.set_fleet_reject_all(False, "no"))
    assert refused(lambda: readonly.create(f"{zk_paths.audit}/entry-", b"{}", sequence=True))
    assert refused(lambda: readonly.delete(f"{zk_paths.id_to_ip}/i-0aaaaaaaaaaaaaaa1"))


def test_a_wrong_agent_secret_is_named(tree, secure_zk: SecureZk, zk_prefix: str, zk_paths: ZkPaths,
                                       tmp_path) -> None:
    join_as(tree("i-0aaaaaaaaaaaaaaa1", agent=True), zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-secret\n")
    wrong.chmod(0o600)
    config = secure_zk.config(zk_prefix, "i-0aaaaaaaaaaaaaaa1", agent=True, zk_secret_file=str(wrong))
    client = make_client(config, secure_zk.server.hosts, timeout=10)
    client.start(timeout=20)
    try:
        tree_acl = install_acl(client, zk_paths)
        with pytest.raises(CredentialsRefused, match=r"i-0aaaaaaaaaaaaaaa1.*zk_secret_file"):
            verify_agent_identity(client, zk_paths, "i-0aaaaaaaaaaaaaaa1", tree_acl)
    finally:
        client.stop()
        client.close()


def test_a_secret_file_others_can_read_is_refused_with_its_name(tmp_path) -> None:
    secret = tmp_path / "zk.secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match=re.escape(f"{secret} is readable by group/others")):
        read_secret(secret, "zk_secret_file")


def test_maxchange_is_the_operators_alone_even_while_it_is_absent(tree, zk_paths: ZkPaths) -> None:
    """Agents no longer write maxchange (absent means the 10% default): the node stays absent when
    they join and read their parameters, no agent can create it, and the operator's creates it
    with the operators' ACL."""
    from neti_core.registry import read_params

    agent = tree("i-0aaaaaaaaaaaaaaa1", agent=True)
    join_as(agent, zk_paths, "i-0aaaaaaaaaaaaaaa1", "10.0.0.1")
    read_params(agent, zk_paths)
    assert agent.exists(zk_paths.maxchange) is None, "the agent wrote no maxchange"
    assert refused(lambda: agent.create(zk_paths.maxchange, b"100000"))
    operator = tree("neti-operator")
    assert FleetControl(operator, zk_paths, "alice").set_maxchange(5, "rack move").changed
    acl, _ = operator.get_acls(zk_paths.maxchange)
    assert acl == operator.get_acls(zk_paths.prefix)[0], "maxchange carries the operators' ACL"
    assert refused(lambda: agent.set(zk_paths.maxchange, b"100000"))
    assert agent.get(zk_paths.maxchange)[0] == b"5", "agents read it"


def test_a_restarted_agent_writes_over_its_old_sessions_status_and_owns_it_once_that_expires(
        tree, zk_paths: ZkPaths) -> None:
    """Only operators may delete in a secured tree, so a restarted agent cannot remove the status
    its previous session left. It writes over it (the console sees this run at once) and, when
    the old session ends and ZooKeeper removes that node, writes it again as its own."""
    me = "i-0aaaaaaaaaaaaaaa1"
    old = tree(me, agent=True)
    join_as(old, zk_paths, me, "10.0.0.1")
    path = f"{zk_paths.status}/{me}"
    restarted = tree(me, agent=True)
    publisher = StatusPublisher(restarted, zk_paths, me)
    assert publisher.publish(status_of(me, members=7))
    data, stat = restarted.get(path)
    assert AgentStatus.from_json(data).members == 7 and stat.ephemeralOwner == old.client_id[0]
    old.stop()  # the old session ends; its ephemeral nodes go
    old.close()
    watch_fired = []
    assert publisher.verify(watch=watch_fired.append), "the node is gone: rewrite it"
    assert publisher.publish(status_of(me, members=7))
    data, stat = restarted.get(path)
    assert AgentStatus.from_json(data).members == 7 and stat.ephemeralOwner == restarted.client_id[0]
