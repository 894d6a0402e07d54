"""A hung ZooKeeper member must cost a TLS client seconds, not its session (issue 14).

A hung member (a SIGSTOPped JVM, a wedged host) still completes TCP handshakes in its kernel but
never answers the TLS handshake. kazoo gives that handshake the whole session timeout, so a client
that tried such a member while failing over lost its session, and with it every ephemeral node:
what the chaos checker saw as agents leaving the fleet when one ensemble member froze. Here the
hung member is a listening socket nobody accepts on (what such a member looks like from outside),
the healthy ones are a real TLS-only ZooKeeper behind two lab portals.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kazoo.protocol.states import KazooState

from neti_core.lab.portal import Portal
from neti_core.zkclient import make_client
from tests.fixtures.agent import wait_for
from tests.fixtures.trust import SecureZk

SESSION_SECONDS = 10.0


@pytest.fixture
def hung_member() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # the kernel completes the TCP handshake; nothing ever answers
    yield sock.getsockname()[1]
    sock.close()


def test_failing_over_past_a_hung_member_keeps_the_session(secure_zk: SecureZk, zk_prefix: str,
                                                           hung_member: int) -> None:
    target = (secure_zk.server.host, secure_zk.server.port)
    config = secure_zk.config(zk_prefix)
    with Portal(None, ("127.0.0.1", 0), target) as first, Portal(None, ("127.0.0.1", 0), target) as second:
        # In this order: connected through the first, the failover meets the hung member next.
        hosts = f"127.0.0.1:{first.port},127.0.0.1:{hung_member},127.0.0.1:{second.port}"
        client = make_client(config, hosts, timeout=SESSION_SECONDS, randomize_hosts=False)
        client.start(timeout=20)
        try:
            session = client.client_id[0]
            node = client.create(zk_prefix, ephemeral=True)
            states: list[KazooState] = []
            client.add_listener(states.append)
            began = time.monotonic()
            first.block()  # the member we are on goes away
            wait_for(lambda: KazooState.SUSPENDED in states and client.state == KazooState.CONNECTED,
                     timeout=3 * SESSION_SECONDS, what="the client back on a healthy member")
            failover = time.monotonic() - began
            assert KazooState.LOST not in states, f"session lost after {failover:.1f} s"
            assert client.client_id[0] == session and client.exists(node), "same session, node kept"
            assert failover < SESSION_SECONDS / 2, f"failover took {failover:.1f} s"
        finally:
            client.stop()
            client.close()


def test_a_hung_member_first_in_line_does_not_stall_the_first_connection(
        secure_zk: SecureZk, zk_prefix: str, hung_member: int) -> None:
    target = (secure_zk.server.host, secure_zk.server.port)
    with Portal(None, ("127.0.0.1", 0), target) as healthy:
        hosts = f"127.0.0.1:{hung_member},127.0.0.1:{healthy.port}"
        client = make_client(secure_zk.config(zk_prefix), hosts, timeout=SESSION_SECONDS,
                             randomize_hosts=False)
        began = time.monotonic()
        try:
            client.start(timeout=SESSION_SECONDS)  # kazoo alone: the hung handshake takes it all
            assert time.monotonic() - began < SESSION_SECONDS / 2
        finally:
            client.stop()
            client.close()
