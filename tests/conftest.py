"""Real-service fixtures: a ZooKeeper server from Debian's package, one ZK prefix per test.

In CI (CI=true) nothing may be skipped for lack of a service or privilege: a skip becomes a failure.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from neti_core.config import ZkPaths
from neti_core.lab.zkserver import ZooKeeperServer, ZooKeeperUnavailable
from tests.fixtures.servers import started_or_skip

# Fixture modules, one per area, so that work on one area never edits another's fixtures.
pytest_plugins = ["tests.fixtures.aws", "tests.fixtures.netns", "tests.fixtures.agent",
                  "tests.fixtures.console", "tests.fixtures.trust"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Commands the tests start (neti, neti-agent, neti-console) are the ones installed next to this
# interpreter, as an operator's activated virtualenv would find them: `make test` does not put the
# venv on PATH, and a stray system-wide `neti` must never be what a test exercises.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every service and privilege must be present: {reason}"


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One real ZooKeeper for the session; tests keep apart by prefix."""
    server = ZooKeeperServer(workdir=tmp_path_factory.mktemp("zookeeper"))
    with started_or_skip(server, ZooKeeperUnavailable, "ZooKeeper", server.cleanup):
        yield server


@pytest.fixture
def zk_prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def zk_paths(zk_prefix: str) -> ZkPaths:
    return ZkPaths.under(zk_prefix)


def connect(hosts: str, **kwargs: object) -> KazooClient:
    client = KazooClient(hosts=hosts, **kwargs)
    client.start(timeout=15)
    return client


@pytest.fixture
def zk(zk_server: ZooKeeperServer) -> Iterator[KazooClient]:
    client = connect(zk_server.hosts)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables, ipset)")
