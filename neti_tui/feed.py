"""The console's data feed: how to reach ZooKeeper and EC2, and the messages that carry their
news. The thread workers that run the session, the live fleet view and the EC2 poller are in
:mod:`neti_tui.app`; they post these messages to the app.

The ZooKeeper client retries its connection forever in the background: a console started while
ZooKeeper is down shows a banner and fills in when it comes up; a lost session is re-established
and the tree re-read. Nothing here touches a widget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry
from textual.message import Message

from neti_core.aws import ec2_client
from neti_core.config import NetiConfig
from neti_core.errors import ConfigError
from neti_core.fleet import FleetBatch
from neti_core.members import Side
from neti_core.zkclient import make_client


@dataclass
class FleetChanged(Message):
    """One batch from the live view (posted by the app's zookeeper worker thread)."""

    batch: FleetBatch


def zk_connect_string(config: NetiConfig) -> str:
    """The ensemble the console talks to: the VPC cluster, else the EC2-side proxies."""
    for side in (Side.VPC, Side.EC2):
        if config.zk_hosts.get(side):
            return config.zk_connect_string(side)
    raise ConfigError("zk_hosts", "the console needs ZooKeeper hosts (zk_hosts.vpc or zk_hosts.ec2)")


def make_zk_client(hosts: str, config: NetiConfig) -> KazooClient:
    """A client that never gives up reconnecting (an operator's console must outlive an outage)."""
    retry = KazooRetry(max_tries=-1, delay=0.2, backoff=2, max_delay=5)
    return make_client(config, hosts, timeout=config.zk_session_timeout_seconds, connection_retry=retry,
                       command_retry=KazooRetry(max_tries=3, delay=0.1, max_delay=1))


def default_ec2_factory(config: NetiConfig) -> Callable[[], Any]:
    return lambda: ec2_client(config)
