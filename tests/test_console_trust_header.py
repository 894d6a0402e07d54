"""The console's header says when it talks to ZooKeeper without credentials (issue 12): the operator
name it shows is then only what it writes in the audit, and anyone who reaches ZooKeeper could do the
same. With the operator's credentials on a secured, TLS-only tree the header has no such part."""

from __future__ import annotations

from screens.fleet import FleetScreen
from tests.fixtures.console import pilot_test, wait_until
from tests.fixtures.trust import SecureZk

WIDE, NARROW = (170, 45), (80, 24)


def header(app) -> str:
    return str(app.screen.query_one("#header").render())


async def loaded(pilot) -> str:
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.fleet.zk.loaded,
                     what="the fleet loaded from ZooKeeper", timeout=30)
    await pilot.pause()
    return header(app)


def test_an_unauthenticated_console_says_so_at_any_width(console, zk_paths) -> None:
    @pilot_test
    async def run() -> None:
        for size, word in ((WIDE, "unauthenticated"), (NARROW, "no auth")):
            app = console(ec2=False)
            async with app.run_test(size=size) as pilot:
                first_line = (await loaded(pilot)).splitlines()[0]
                assert word in first_line and "tester" in first_line, (size, first_line)

    run()


def test_the_operator_on_a_secured_tree_has_no_unauthenticated_part(console, secure_zk: SecureZk,
                                                                   zk_prefix: str) -> None:
    secure_zk.secure(zk_prefix)
    config = secure_zk.config(zk_prefix, "neti-operator")

    @pilot_test
    async def run() -> None:
        for size in (WIDE, NARROW):
            app = console(ec2=False, config=config)
            async with app.run_test(size=size) as pilot:
                text = await loaded(pilot)
                assert "operator" in text or "tester" in text, text
                assert "unauthenticated" not in text and "no auth" not in text, text

    run()
