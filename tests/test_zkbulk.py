"""Bulk reads and bulk-armed watches (neti_core/zkbulk.py) against a real ZooKeeper 3.8."""

from __future__ import annotations

import threading
import time

import pytest
from kazoo.exceptions import ConnectionLoss, NoAuthError
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.security import make_digest_acl

from neti_core import zkbulk
from neti_core.zkbulk import arm_data_watches, last_zxid, read_many
from tests.conftest import connect


def _seed(zk, prefix: str, count: int) -> list[str]:
    zk.ensure_path(prefix)
    paths = [f"{prefix}/n{n:05d}" for n in range(count)]
    pending = [zk.create_async(path, f"value {n}".encode() * (n % 7 + 1)) for n, path in enumerate(paths)]
    for result in pending:
        result.get(timeout=30)
    return paths


class _Events:
    def __init__(self) -> None:
        self.seen: list[WatchedEvent] = []
        self.arrived = threading.Condition()

    def __call__(self, event: WatchedEvent) -> None:
        with self.arrived:
            self.seen.append(event)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, str]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.seen) >= count, timeout)
            return sorted((event.type, event.path) for event in self.seen)


def test_many_reads_come_back_in_order_across_batches_with_none_where_a_node_is_gone(zk, zk_prefix):
    paths = _seed(zk, zk_prefix, 2 * zkbulk.READ_BATCH + 17)
    zk.delete(paths[5])
    zk.set(paths[-1], b"")
    asked = [*paths, f"{zk_prefix}/never-was"]
    expected = [zk.get(path)[0] if zk.exists(path) else None for path in asked]
    values = read_many(zk, asked)
    assert values == expected
    assert values[5] is None and values[-1] is None and values[-2] == b"" and values[6] == b"value 6" * 7


def test_a_node_this_client_may_not_read_is_refused_as_a_get_would_be(zk, zk_prefix):
    paths = _seed(zk, zk_prefix, 3)
    secret = f"{zk_prefix}/operators-only"
    zk.create(secret, b"x", acl=[make_digest_acl("operator", "s3cret", all=True)])
    assert read_many(zk, paths) == [zk.get(path)[0] for path in paths]
    with pytest.raises(NoAuthError):
        zk.get(secret)
    with pytest.raises(NoAuthError):
        read_many(zk, [*paths, secret])


def test_a_chrooted_client_reads_the_same_one_by_one(zk, zk_server, zk_prefix):
    paths = _seed(zk, zk_prefix, 40)
    chrooted = connect(f"{zk_server.hosts}{zk_prefix}")
    try:
        names = [path.rsplit("/", 1)[1] for path in paths]
        assert read_many(chrooted, [f"/{name}" for name in names]) == read_many(zk, paths)
    finally:
        chrooted.stop()
        chrooted.close()


def test_watches_armed_after_a_read_miss_nothing_that_changed_in_between(zk, zk_server, zk_prefix):
    paths = _seed(zk, zk_prefix, 3000)
    since = last_zxid(zk)
    assert since > 0
    values = read_many(zk, paths)
    # Another client changes one node and deletes another after the read, before the watches.
    other = connect(zk_server.hosts)
    try:
        other.set(paths[10], b"changed after the read")
        other.delete(paths[20])
        events = _Events()
        arm_data_watches(zk, paths, events, since)
        assert events.wait_for(2) == [(EventType.CHANGED, paths[10]), (EventType.DELETED, paths[20])]
        assert values[10] != zk.get(paths[10])[0], "the read had the old value: the watch says so"

        other.set(paths[2999], b"a later change")  # an armed watch fires once, like get(watch=...)
        assert events.wait_for(3)[1] == (EventType.CHANGED, paths[2999])
        other.set(paths[2999], b"and another")
        other.set(paths[10], b"its watch fired already")
        other.set(paths[0], b"first")
        assert events.wait_for(4) == sorted([(EventType.CHANGED, paths[10]), (EventType.DELETED, paths[20]),
                                             (EventType.CHANGED, paths[2999]), (EventType.CHANGED, paths[0])])
        other.set(paths[1], b"one more, to flush the stream")
        assert len(events.wait_for(5)) == 5, "one event per armed node, none twice"
    finally:
        other.stop()
        other.close()


def test_a_server_without_the_request_is_read_node_by_node_after_it_drops_the_connection(
        zk, zk_prefix, monkeypatch):
    """ZooKeeper before 3.6 has no multi-read. Asked for a request it does not implement, 3.8
    answers "unimplemented" and drops the connection, as those do: the call fails, and once kazoo
    has reconnected the same client reads node by node."""
    paths = _seed(zk, zk_prefix, 30)
    expected = [zk.get(path)[0] for path in paths]
    monkeypatch.setattr(zkbulk._MultiRead, "type", 99)  # an opcode no ZooKeeper implements
    try:
        first = read_many(zk, paths, timeout=10)
    except ConnectionLoss:
        first = None
    assert first in (None, expected)
    deadline = time.monotonic() + 30
    while not zk.connected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_many(zk, paths) == expected
