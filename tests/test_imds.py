"""Identity from an IMDSv2 endpoint served over HTTP on loopback."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from agent.cli import wait_for_identity
from neti_core.imds import MetadataError, MetadataUnavailable, fetch_identity
from neti_core.lab.imds_server import ImdsServer, metadata_tree
from neti_core.members import Side

MAC = "0a:1b:2c:3d:4e:5f"


def test_ec2_classic_identity():
    tree = metadata_tree("i-0123456789abcdef0", "10.0.0.5", "54.0.0.5", MAC)
    with ImdsServer(tree) as server:
        identity = fetch_identity(server.url)
    assert identity.instance_id == "i-0123456789abcdef0"
    assert (identity.private_ip, identity.public_ip) == (IPv4Address("10.0.0.5"), IPv4Address("54.0.0.5"))
    assert identity.side is Side.EC2 and identity.vpc_id is None


def test_vpc_identity_takes_the_public_address_from_ipv4_associations():
    tree = metadata_tree("i-0123456789abcdef1", "172.31.0.5", "3.3.3.3", MAC, vpc_id="vpc-1234")
    tree["public-ipv4"] = "9.9.9.9"  # not what a VPC host should use
    with ImdsServer(tree) as server:
        identity = fetch_identity(server.url)
    assert identity.side is Side.VPC and identity.vpc_id == "vpc-1234"
    assert identity.public_ip == IPv4Address("3.3.3.3")


def test_tokens_are_required():
    import urllib.error
    import urllib.request

    with ImdsServer(metadata_tree("i-0123456789abcdef0", "10.0.0.5", "54.0.0.5", MAC)) as server:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{server.url}/latest/meta-data/instance-id", timeout=5)
        assert caught.value.code == 401


@pytest.mark.parametrize(("field", "value"), [("local-ipv4", "10.0.0.5; reboot"),
                                              ("instance-id", "../../etc"),
                                              ("mac", "not-a-mac")])
def test_malformed_metadata_is_a_clear_error(field, value):
    tree = metadata_tree("i-0123456789abcdef0", "10.0.0.5", "54.0.0.5", MAC)
    tree[field] = value
    with ImdsServer(tree) as server, pytest.raises(MetadataError):
        fetch_identity(server.url)


def test_unreachable_endpoint_is_a_metadata_error():
    from neti_core.lab.zkserver import free_port

    with pytest.raises(MetadataError):
        fetch_identity(f"http://127.0.0.1:{free_port()}", timeout=0.5, attempts=1)


def test_a_service_that_answers_late_is_asked_again_and_a_silent_one_is_given_up():
    import threading
    import time

    from neti_core.lab.zkserver import free_port

    port = free_port()
    tree = metadata_tree("i-0123456789abcdef0", "10.0.0.5", "54.0.0.5", MAC)
    server = ImdsServer(tree, port=port)
    timer = threading.Timer(1.5, server.start)  # the service comes up after the agent asked
    timer.start()
    try:
        identity = wait_for_identity(f"http://127.0.0.1:{port}", 0.5, give_up_after=30)
    finally:
        timer.join()
        server.stop()
    assert identity.instance_id == "i-0123456789abcdef0"

    began = time.monotonic()
    with pytest.raises(MetadataUnavailable):
        wait_for_identity(f"http://127.0.0.1:{free_port()}", 0.2, give_up_after=1.5)
    assert 1.0 <= time.monotonic() - began < 15


def test_a_malformed_answer_is_not_asked_again():
    tree = metadata_tree("i-0123456789abcdef0", "10.0.0.5", "54.0.0.5", MAC)
    tree["mac"] = "not-a-mac"
    calls = []
    with ImdsServer(tree) as server, pytest.raises(MetadataError) as caught:
        wait_for_identity(server.url, 1.0, give_up_after=30, sleep=calls.append)
    assert not isinstance(caught.value, MetadataUnavailable) and calls == []
