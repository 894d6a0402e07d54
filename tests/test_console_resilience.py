"""The console against moto's EC2 server and through outages: unregistered instances, a ZooKeeper
that goes away and comes back, an EC2 API that does not answer."""

from __future__ import annotations

import pytest

from neti_core.lab.zkserver import ZooKeeperServer, ZooKeeperUnavailable
from screens.fleet import FleetScreen
from screens.unregistered import UnregisteredScreen
from tests.conftest import connect
from tests.fixtures.console import FleetSeeder, cell, console_config, launch, pilot_test, wait_until
from tests.fixtures.servers import started_or_skip

SIZE = (170, 45)


def banner(app) -> str:
    widget = app.screen.query_one("#banner")
    return str(widget.render()) if widget.display else ""


@pilot_test
async def test_unregistered_instances_are_listed_live_from_ec2(console, seeder, ec2, moto_server):
    web = launch(ec2, 3, "web")
    launch(ec2, 2, "zkneti")  # the ZooKeeper proxies never run Neti: ignored by pattern
    seeder.seed(2)
    app = console(moto_url=moto_server.url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.fleet.summary.inventory_known and len(app.fleet.rows) == 5
                         and isinstance(app.screen, FleetScreen) and app.screen.settled,
                         what="members and the EC2 inventory on screen")
        assert cell(app, web[0], "state") == "unregistered" and cell(app, web[0], "name") == "web0"
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, UnregisteredScreen)
                         and app.screen.query_one("#unregistered").row_count == 3)
        assert "3 running instances not in Neti" in str(app.screen.query_one("#inventory").render())
        (more,) = launch(ec2, 1, "web-late")
        await pilot.press("p")  # poll now rather than wait for the period
        await wait_until(pilot, lambda: app.screen.query_one("#unregistered").row_count == 4)
        assert more in {row.key for row in app.fleet.unregistered}


@pilot_test
async def test_an_unreachable_ec2_api_is_a_banner_not_a_crash(console, seeder):
    seeder.seed(2)
    import boto3
    from botocore.config import Config as BotoConfig

    fast = BotoConfig(retries={"max_attempts": 1}, connect_timeout=1)
    app = console(ec2=True, ec2_client_factory=lambda: boto3.client(
        "ec2", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="x", config=fast))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "EC2 API" in banner(app), what="the EC2 banner")
        assert "no inventory yet" in banner(app)
        assert app.screen.table.row_count == 2, "ZooKeeper data is still shown"


@pytest.fixture
def own_zookeeper(tmp_path):
    """A ZooKeeper of this test's own, so it can be stopped without disturbing the others."""
    server = ZooKeeperServer(workdir=tmp_path / "zk")
    with started_or_skip(server, ZooKeeperUnavailable, "ZooKeeper", server.cleanup):
        yield server


@pilot_test
async def test_the_console_survives_zookeeper_going_away_and_reloads_when_it_is_back(console, own_zookeeper,
                                                                                   zk_paths):
    client = connect(own_zookeeper.hosts)
    seeder = FleetSeeder(client, zk_paths, ephemeral=False)
    seeder.seed(3)
    client.stop()
    config = console_config(own_zookeeper.hosts, zk_paths.prefix, zk_session_timeout_seconds=4)
    app = console(config=config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                         and app.screen.table.row_count == 3)
        assert banner(app) == ""
        own_zookeeper.stop()
        await wait_until(pilot, lambda: "ZooKeeper" in banner(app), timeout=20, what="the ZooKeeper banner")
        assert app.screen.table.row_count == 3, "the last data stays on screen, marked stale"
        await pilot.press("enter")  # the operator can still browse what was last seen
        await pilot.pause(0.2)
        assert "ZooKeeper" in banner(app)
        await pilot.press("escape")
        await pilot.pause(0.1)
        own_zookeeper.start()
        await wait_until(pilot, lambda: banner(app) == "", timeout=30, what="reconnection")
        client = connect(own_zookeeper.hosts)
        again = FleetSeeder(client, zk_paths, ephemeral=False, hosts=seeder.hosts)
        again.publish(2, error="after the outage")
        client.stop()
        key = seeder.hosts[2].instance_id
        await wait_until(pilot, lambda: cell(app, key, "state") == "error", timeout=15)
