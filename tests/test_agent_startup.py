"""A real agent whose metadata service refuses, then throttles, for its first seconds (issue 14)."""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Address

from agent.agent import Agent
from neti_core.config import parse_config
from neti_core.firewall.netns_thread import call_in_netns
from neti_core.firewall.recording import RecordingBackend
from neti_core.imds import Identity
from neti_core.lab.host import IMDS_PORT
from neti_core.lab.imds_server import ImdsServer
from neti_core.lab.portal import Portal
from neti_core.maxchange import MaxChange
from neti_core.members import Side, parse_party
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


def test_a_connection_lost_while_registering_is_waited_out_not_fatal(zk_server, zk, zk_prefix, tmp_path):
    """Chaos found it: an agent restarted just before the ZooKeeper leader was killed lost its
    connection between connecting and joining, and exited 1 (systemd would restart it 5 s later,
    but a fleet-wide election would then restart every starting agent). It must wait it out."""
    config = parse_config({"zk_prefix": zk_prefix, "firewall_backend": "recording",
                           "table_files_path": str(tmp_path), "zk_session_timeout_seconds": 20})
    identity = Identity("i-0a1b2c3d4e5f60718", IPv4Address("10.20.0.5"), IPv4Address("10.20.0.5"),
                        "02:00:00:00:00:05", Side.VPC, "vpc-1")
    host, port = zk_server.hosts.split(":")
    with Portal(None, ("127.0.0.1", 0), (host, int(port))) as portal:
        agent = Agent(config, identity, RecordingBackend("vpc_whitelist"),
                      zk_hosts=f"127.0.0.1:{portal.port}")
        agent.connect()
        failures: list[BaseException] = []

        def register() -> None:
            try:
                agent.register()
                agent.start_controls()
            except BaseException as exc:  # the test reports whatever escaped
                failures.append(exc)

        try:
            portal.freeze()  # the member it is on hangs: its first request goes unanswered,
            thread = threading.Thread(target=register)
            thread.start()
            time.sleep(1)
            portal.block()  # then dies: that request ends in ConnectionLoss
            time.sleep(3)
            assert thread.is_alive() and not failures, f"gave up at once: {failures}"
            portal.unblock()  # the election is over
            thread.join(60)
            assert not thread.is_alive() and not failures, failures
            members = parse_party(zk.get_children(f"{zk_prefix}/ip-map")).members
            assert [(m.private, m.overlay) for m in members] == [(identity.private_ip, agent.overlay_ip)]
            # Its control watches were armed after the outage: an operator's change reaches it.
            zk.ensure_path(config.zk_paths.maxchange)
            zk.set(config.zk_paths.maxchange, b"7")
            controls = agent.controls
            assert controls is not None
            wait_for(lambda: controls.snapshot().maxchange == MaxChange(count=7), timeout=10,
                     what="the operator's maxchange seen by the agent")
        finally:
            agent.stop()
