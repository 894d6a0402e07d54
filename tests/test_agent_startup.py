"""A real agent whose metadata service refuses, then throttles, for its first seconds (issue 14)."""

from __future__ import annotations

import time

from neti_core.firewall.netns_thread import call_in_netns
from neti_core.lab.host import IMDS_PORT
from neti_core.lab.imds_server import ImdsServer
from neti_core.members import Side
from tests.fixtures.agent import connect_from, wait_for


def test_the_agent_waits_for_a_late_metadata_service_then_registers(agent_fleet):
    peer = agent_fleet.add(Side.EC2)
    late = agent_fleet.add(Side.EC2, start=False)
    imds = late.host.imds
    assert imds is not None
    tree = imds.tree
    imds.stop()  # connection refused, as a metadata service that is not up yet
    late.host.start_agent()
    wait_for(lambda: "waiting for the metadata service" in agent_fleet.log(late), timeout=30,
             what="the agent saying what it waits for")
    time.sleep(2)
    assert late.host.process is not None and late.host.process.poll() is None, "it did not exit"
    # Back, but throttling (429) for a few seconds more.
    server = call_in_netns(late.ns, ImdsServer, tree, "127.0.0.1", IMDS_PORT)
    server.throttle_until = time.monotonic() + 4
    late.host.imds = server.start()
    wait_for(lambda: server.throttled > 0, timeout=20, what="a throttled request")
    status = wait_for(lambda: agent_fleet.status(late), timeout=60, what="the late agent registered")
    wait_for(lambda: agent_fleet.converged(members=2), timeout=60, what="both converged")
    assert "the metadata service at" in agent_fleet.log(late) and "answered after" in agent_fleet.log(late)
    assert connect_from(peer.ns, status.overlay_ip) == str(peer.address)
