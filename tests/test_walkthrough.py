"""docs/walkthrough.md, executed: every step on a real lab, with the same keys (Textual's pilot on
the lab's console) and the same ``neti`` commands, checking what the doc says the engineer sees.

A change that breaks the rehearsal breaks this test; a change to what the tool prints must be made
in the doc too: every line the doc quotes (``text`` blocks, the output under a command) is compared
with what the tool printed here (tests/fixtures/doc_quotes.py), and a quote no step compares fails
the test. The lab is secured as ``make demo``'s (TLS-only ZooKeeper, ACLs, the console as the
operator). Smaller than the doc's lab (10 hosts instead of 40; the same 5 legacy instances), so it
runs in a few minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.doc_quotes import DocQuotes

pytestmark = [pytest.mark.netns, pytest.mark.slow]
BIN = Path(sys.executable).parent
SIZE = (170, 45)
DOC = Path(__file__).resolve().parent.parent / "docs" / "walkthrough.md"
HOSTS, LEGACY = 10, 5
LEGACY_NAMES = [f"legacy-{n:03d}" for n in range(HOSTS + 1, HOSTS + LEGACY + 1)]
TOTAL = HOSTS + LEGACY


@pytest.fixture
def lab(as_root, tmp_path):
    prefix = f"nwt{secrets.token_hex(2)}"
    env = {**os.environ, "NETI_LAB_DIR": str(tmp_path / "lab"), "NETI_LAB_NETNS_PREFIX": prefix,
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    yield env
    subprocess.run([str(BIN / "neti"), "lab", "down"], env=env, capture_output=True, timeout=180, check=False)


class Walk:
    """The engineer: types ``neti`` commands (in a thread, so the console keeps running) and keys."""

    def __init__(self, env: dict[str, str], pilot: Any, status: dict[str, Any], doc: DocQuotes) -> None:
        self.env, self.pilot, self.app, self.doc = env, pilot, pilot.app, doc
        self.config = status["console_config"]
        self.hosts = {h["name"]: h for h in status["hosts"]}

    async def sh(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, list(argv), env=self.env, capture_output=True,
                                       text=True, timeout=timeout, check=False)

    async def neti(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = await self.sh(str(BIN / "neti"), *args)
        assert result.returncode in (0, 1, 2), result.stderr
        return result

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                rows = {r.name or r.key: r.state_label for r in self.app.fleet.rows.values()}
                raise AssertionError(f"timed out waiting for {what}; rows: {rows}")
            await self.pilot.pause(0.1)

    def row(self, name: str) -> Any:
        return next((r for r in self.app.fleet.rows.values() if r.name == name), None)

    def cell(self, name: str, column: str) -> str:
        from tests.fixtures.console import cell

        return cell(self.app, self.row(name).key, column)

    async def view(self, key: str, screen: str) -> None:
        await self.pilot.press(key)
        await self.until(lambda: type(self.app.screen).__name__ == screen, f"the {screen}")

    async def cursor_to(self, name: str) -> None:
        table = self.app.screen.table
        key = self.row(name).key
        await self.pilot.press("home")
        for _ in range(table.row_count):
            if table.cursor_row_key() == key:
                return
            await self.pilot.press("down")
        raise AssertionError(f"{name} is not in the fleet view")

    def notified(self, text: str) -> bool:
        return any(text in n.message or text in (n.title or "") for n in self.app._notifications)

    def dialog_summary(self) -> str:
        return str(self.app.screen.query_one("#summary").render())

    async def dialog(self, *keys: str) -> str:
        from screens.confirm import ConfirmScreen

        await self.pilot.press(*keys)
        await self.until(lambda: isinstance(self.app.screen, ConfirmScreen), "the dialog")
        return self.dialog_summary()

    async def confirm_by_tab(self) -> None:
        """The doc's way: focus starts on Cancel, Tab moves to Confirm, Enter."""
        from screens.confirm import ConfirmScreen

        assert self.app.focused is not None and self.app.focused.id == "cancel"
        await self.pilot.press("tab")
        assert self.app.focused.id == "confirm"
        await self.pilot.press("enter")
        await self.until(lambda: not isinstance(self.app.screen, ConfirmScreen), "the dialog closed")

    async def enter_phase(self, phase: str) -> None:
        """Phases view, n, type the phase's name, Enter (what the doc says for every phase)."""
        await self.view("3", "PhasesScreen")
        await self.pilot.press("n")
        from screens.confirm import ConfirmScreen

        await self.until(lambda: isinstance(self.app.screen, ConfirmScreen) or self.notified("refused"),
                         f"the dialog for {phase}")
        assert isinstance(self.app.screen, ConfirmScreen), [n.message for n in self.app._notifications]
        await self.pilot.press(*phase, "enter")
        await self.until(lambda: self.app.fleet.phase is not None and self.app.fleet.phase.phase == phase,
                         f"phase {phase}")

    async def refused(self, target: str) -> str:
        self.app._notifications.clear()
        await self.view("3", "PhasesScreen")
        await self.pilot.press("n")
        await self.until(lambda: self.notified("refused"), f"the refusal of {target}")
        return next(n.message for n in self.app._notifications if "refused" in (n.title or ""))


@pytest.mark.timeout(900)
def test_the_walkthrough_works_as_written(lab):
    doc = DocQuotes(DOC)
    up = subprocess.run([str(BIN / "neti"), "lab", "up", "--hosts", str(HOSTS), "--vpc", "30",
                         "--unregistered", str(LEGACY), "--no-console"], env=lab, capture_output=True,
                        text=True, timeout=600, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    # §0: lab up says what it started, as the doc quotes it (secured: TLS-only, ACLs).
    for line in ("lab: 40 agents all in sync", "lab: started ZooKeeper", "lab: started 40 hosts",
                 "lab: launched 5 instances", "lab: security groups:", "lab: console:"):
        doc.check(line, up.stdout)
    assert "TLS-only, ACLs" in up.stdout and "console: neti-console -c " in up.stdout, up.stdout
    status = json.loads(subprocess.run([str(BIN / "neti"), "lab", "status", "--json"], env=lab,
                                       capture_output=True, text=True, timeout=60, check=True).stdout)
    asyncio.run(_walk(lab, status, doc))
    down = subprocess.run([str(BIN / "neti"), "lab", "down"], env=lab, capture_output=True, text=True,
                          timeout=180, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    doc.check("lab: stopping", down.stdout)
    doc.check("lab: down:", down.stdout)
    assert not doc.unchecked(), f"quoted in {DOC.name} but compared by no step: {doc.unchecked()}"


async def _walk(env: dict[str, str], status: dict[str, Any], doc: DocQuotes) -> None:
    from neti_core.config import load_config
    from neti_tui.app import NetiConsoleApp

    app = NetiConsoleApp(load_config(status["console_config"]), operator="tester")
    async with app.run_test(size=SIZE) as pilot:
        walk = Walk(env, pilot, status, doc)
        assert app.authenticated, "the lab's console config carries the operator's credentials"
        started = time.monotonic()
        for section in (_prepare_and_register, _overlay, _vpc_pilot, _canary_and_deadman, _rollout,
                        _incidents, _everywhere_and_security_groups):
            await section(walk)
            print(f"walkthrough: {section.__name__} done at {time.monotonic() - started:.0f} s", flush=True)


async def _prepare_and_register(walk: Walk) -> None:
    """§1-2: every app-* row in sync, off (config); enter register; an overlay IP answers."""
    apps = [name for name in walk.hosts if name.startswith("app-")]
    await walk.until(lambda: all(walk.row(n) is not None and walk.cell(n, "state") == "in sync"
                                 for n in apps), "every app-* row in sync")
    assert {walk.cell(n, "want") for n in apps} == {"off (config)"}
    assert {walk.cell(n, "applied") for n in apps} == {"off (config)"}
    await walk.enter_phase("register")
    ec2 = next(h for h in walk.hosts.values() if h["agent"] and h["side"] == "ec2")
    vpc = next(h for h in walk.hosts.values() if h["agent"] and h["side"] == "vpc")
    probe = ("ip", "netns", "exec", ec2["netns"], "python3", "-c",
             "import socket; socket.create_connection(('{}', 22), 2)")
    arrived = await walk.sh(*probe[:-1], probe[-1].format(vpc["overlay"]))
    assert "ConnectionRefusedError" in arrived.stderr, arrived.stderr  # the packet arrived
    dropped = await walk.sh(*probe[:-1], probe[-1].format(vpc["private"]))
    assert "TimeoutError" in dropped.stderr or "timed out" in dropped.stderr, dropped.stderr


async def _overlay(walk: Walk) -> None:
    """§3: overlay is refused while legacy-* run without Neti; adopt them; enter overlay."""
    refusal = await walk.refused("overlay")
    line = walk.doc.check("every running instance runs Neti", refusal)
    assert f"{LEGACY} unregistered: {', '.join(LEGACY_NAMES[:3])} and {LEGACY - 3} more" in line, line
    await walk.view("2", "UnregisteredScreen")
    await walk.until(lambda: {r.name for r in walk.app.fleet.unregistered} == set(LEGACY_NAMES),
                     "the legacy instances in the unregistered view")
    report = await walk.neti("report", "-c", walk.config, "--not-in-neti", "--names-only")
    assert report.stdout.split() == LEGACY_NAMES, report.stdout + report.stderr
    for name in LEGACY_NAMES:
        adopt = await walk.neti("lab", "adopt", name)
        assert adopt.returncode == 0 and f"{name}: agent installed and started" in adopt.stdout
    await walk.until(lambda: not walk.app.fleet.unregistered, "the unregistered view empty", timeout=90)
    await walk.until(lambda: walk.app.fleet.summary.in_sync == TOTAL, "the adopted hosts in sync",
                     timeout=120)
    report = await walk.neti("report", "-c", walk.config)
    assert report.stdout.splitlines()[-1] == f"{TOTAL} instances, {TOTAL} in Neti (100%)"
    await walk.enter_phase("overlay")


async def _vpc_pilot(walk: Walk) -> None:
    """§4: sort by side, open a VPC host, enter vpc-pilot."""
    await walk.view("1", "FleetScreen")
    await walk.pilot.press("D")
    vpc = next(name for name, h in walk.hosts.items() if h["side"] == "vpc" and h["agent"])
    await walk.cursor_to(vpc)
    await walk.view("enter", "HostScreen")
    await walk.view("escape", "FleetScreen")
    await walk.enter_phase("vpc-pilot")


async def _canary_and_deadman(walk: Walk) -> None:
    """§5: reject_all on one host (o, Tab, Enter); the dead-man rehearsal and its way out."""
    await walk.view("1", "FleetScreen")
    await walk.cursor_to("app-002")
    assert "on 1 of 1 host" in await walk.dialog("o")
    await walk.confirm_by_tab()
    await walk.until(lambda: walk.cell("app-002", "state") == "deadman pending", "deadman pending", 20)
    await walk.until(lambda: walk.cell("app-002", "state") == "in sync"
                     and walk.cell("app-002", "applied") == "on (host)", "app-002 confirmed", 60)
    assert any(r.entry.action == "reject_all.set" and r.entry.who == "tester" for r in walk.app.fleet.audit)
    await walk.enter_phase("reject-canary")

    await walk.view("1", "FleetScreen")
    await walk.cursor_to("app-007")
    await walk.dialog("o")
    await walk.confirm_by_tab()
    cut = await walk.neti("lab", "cut", "app-007")
    assert cut.returncode == 0, cut.stderr
    await walk.until(lambda: walk.cell("app-007", "state").startswith("out of contact (was "),
                     "app-007 out of contact", 60)
    assert walk.app.fleet.summary.registered == TOTAL, "a cut host still counts as registered"
    await asyncio.sleep(16)  # reject_all_confirm_seconds: the agent rolls back by itself
    assert (await walk.neti("lab", "heal", "app-007")).returncode == 0
    await walk.until(lambda: walk.cell("app-007", "state") == "deadman rolled_back", "the rollback shown", 90)
    assert "1 rolled back (o retries, c clears)" in str(walk.app.screen.query_one("#header").render())
    refusal = await walk.refused("reject-rollout")
    line = walk.doc.check("no agent in error or held by the mass-change guard", refusal)
    assert ": app-007 — rolled back:" in line, line
    await walk.view("1", "FleetScreen")
    await walk.cursor_to("app-007")
    assert "rolled back by the dead-man switch: retried" in await walk.dialog("o")
    await walk.confirm_by_tab()
    await walk.until(lambda: walk.cell("app-007", "state") == "in sync"
                     and walk.cell("app-007", "applied") == "on (host)", "app-007 retried and confirmed", 60)


async def _rollout(walk: Walk) -> None:
    """§6: a tier by filter, a canary of it, then the rest; the fleet default for everything else."""
    await walk.enter_phase("reject-rollout")
    await walk.view("1", "FleetScreen")
    await walk.pilot.press("slash", *"app-00", "enter", "asterisk")
    walk.doc.check("set reject_all ON (host override)", await walk.dialog("o"))
    await walk.confirm_by_tab()
    await walk.until(lambda: sum(walk.cell(f"app-00{n}", "want") == "on (host)" for n in range(1, 10)) == 3,
                     "the canary's override shown")
    summary = await walk.dialog("o")
    assert "on 6 of 6 hosts; the rest after the canary (3 already so)" in summary, summary
    await walk.confirm_by_tab()
    await walk.pilot.press("escape")  # clears the selection
    await walk.until(lambda: not walk.app.screen.selected, "the selection cleared")
    await walk.pilot.press("F")
    await walk.until(lambda: type(walk.app.screen).__name__ == "ChoiceScreen", "the fleet default choice")
    await walk.pilot.press("enter")
    from screens.confirm import ConfirmScreen

    await walk.until(lambda: isinstance(walk.app.screen, ConfirmScreen), "the fleet default dialog")
    await walk.confirm_by_tab()
    await walk.until(lambda: walk.app.fleet.summary.reject_on == TOTAL
                     and walk.app.fleet.summary.in_sync == TOTAL, "reject_all on everywhere", 120)


async def _incidents(walk: Walk) -> None:
    """§6's incidents: a flushed chain (drift), a ZooKeeper outage, churn past the guard."""
    host = walk.hosts["app-004"]
    host_config = Path(walk.config).parent / "hosts" / "app-004" / "neti.yml"
    check = (str(BIN / "neti"), "check", "-c", str(host_config))
    assert (await walk.neti("lab", "break", "app-004")).returncode == 0
    critical = await walk.sh("ip", "netns", "exec", host["netns"], *check)
    assert critical.returncode == 2, critical.stdout + critical.stderr
    walk.doc.check("NETI CRITICAL:", critical.stdout.splitlines()[:1])
    await walk.until(lambda: walk.cell("app-004", "state") == "drift", "the drift shown", 60)
    await walk.until(lambda: walk.cell("app-004", "state") == "in sync", "the drift gone", 60)
    ok = await walk.sh("ip", "netns", "exec", host["netns"], *check)
    assert ok.returncode == 0 and ok.stdout.startswith("NETI OK"), ok.stdout

    assert (await walk.neti("lab", "zk", "stop")).returncode == 0
    banner = walk.app.screen.query_one("#banner")
    await walk.until(lambda: banner.display and "data may be stale" in str(banner.render()), "the banner", 60)
    walk.doc.check("ZooKeeper suspended:", str(banner.render()))
    assert (await walk.neti("lab", "zk", "start")).returncode == 0
    await walk.until(lambda: not banner.display, "the banner gone", 90)
    await walk.until(lambda: walk.app.fleet.summary.in_sync == TOTAL, "every agent back", 90)

    await walk.pilot.press("M")  # maxchange 1: losing 2 members at once trips the guard
    await walk.until(lambda: type(walk.app.screen).__name__ == "MaxChangeScreen", "the maxchange field")
    await walk.pilot.press("ctrl+u", "1", "enter")
    await walk.until(lambda: type(walk.app.screen).__name__ == "ConfirmScreen", "the maxchange dialog")
    await walk.confirm_by_tab()
    # Watched while the command runs: on a slow machine launching the new hosts can take longer
    # than the grace period the leaving rows last.
    churn = asyncio.ensure_future(walk.neti("lab", "churn", "--count", "2", "--rate", "10"))
    # Leaving (grace) first, for removal_grace_seconds after the EC2 poll sees them gone; on a
    # loaded machine that window can pass unseen, so the test waits for either leaving state.
    await walk.until(lambda: any(r.state.value == "leaving" for r in walk.app.fleet.rows.values()),
                     "the leaving members", 90)
    assert (await churn).returncode == 0
    await walk.until(lambda: any(r.state_label == "leaving (held: M)" for r in walk.app.fleet.rows.values()),
                     "the guard holding the removals", 90)
    # The header names the key (in full, "guard holds N removals (M releases)", or "N held (M)"),
    # the agents holding them say so on their rows. The screen repaints at most every 0.2 s
    # (MIN_APPLY_SECONDS) while the rows above are the model's, so the header is waited for too.
    header = walk.app.screen.query_one("#header")
    await walk.until(lambda: re.search(r"M releases|held \(M\)", str(header.render())),
                     "the header naming M", 10)
    await walk.until(lambda: any(re.fullmatch(r"guard: \d+ held", r.state_label)
                                 for r in walk.app.fleet.rows.values()), "the agents' guard: N held", 30)
    await walk.pilot.press("M")
    await walk.until(lambda: type(walk.app.screen).__name__ == "MaxChangeScreen", "the maxchange field")
    await walk.pilot.press("ctrl+u", "2", "0", "enter")
    await walk.until(lambda: type(walk.app.screen).__name__ == "ConfirmScreen", "the maxchange dialog")
    await walk.confirm_by_tab()
    await walk.until(lambda: not any(r.state.value == "leaving" for r in walk.app.fleet.rows.values())
                     and walk.app.fleet.summary.in_sync == TOTAL, "the removals released", 90)


async def _everywhere_and_security_groups(walk: Walk) -> None:
    """§7-8: reject-everywhere; open-security-groups refused until the groups are open; migrate."""
    await walk.view("2", "UnregisteredScreen")
    await walk.pilot.press("p")  # poll EC2 now: the churned instances are gone, the new ones there
    await walk.until(lambda: not walk.app.fleet.unregistered and walk.app.fleet.summary.reject_on == TOTAL,
                     "the churned fleet on", 60)
    await walk.enter_phase("reject-everywhere")
    refusal = await walk.refused("open-security-groups")
    walk.doc.check("the fleet's security groups are open to the AWS ranges", refusal)
    status = (await walk.neti("lab", "status")).stdout
    prefix = "open the fleet to AWS's ranges: "
    argv = next(line for line in status.splitlines() if line.startswith(prefix))[len(prefix):].split()
    plan = await walk.sh(*argv)
    walk.doc.check("… plan: 16 to authorize", plan.stdout)
    assert "plan: 16 to authorize, 0 to revoke, 0 already as wanted" in plan.stdout, plan.stdout
    applied = await walk.sh(*argv, "--apply")
    walk.doc.check("… applied:", applied.stdout)
    assert "applied: 16 changed" in applied.stdout, applied.stdout
    again = await walk.sh(*argv, "--apply")
    assert "plan: 0 to authorize, 0 to revoke, 16 already as wanted" in again.stdout, again.stdout
    zk_line = next(line for line in status.splitlines() if line.startswith("ZooKeeper and its proxies: "))
    zk_plan = await walk.sh(*zk_line.split(": ", 1)[1].split())
    walk.doc.check("… plan: 2 to authorize", zk_plan.stdout + zk_plan.stderr)
    await walk.view("2", "UnregisteredScreen")
    await walk.pilot.press("p")  # poll EC2 now: the groups are read again
    await walk.until(lambda: walk.app.fleet.ec2.groups and all(g.open for g in walk.app.fleet.ec2.groups),
                     "the groups read open", 60)
    await walk.enter_phase("open-security-groups")
    await walk.enter_phase("migrate")
