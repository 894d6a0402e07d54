"""``neti-console``: the Textual application.

The app owns the I/O (a ZooKeeper client, the live fleet view and the EC2 poller, each run in a
Textual thread worker) and the latest :class:`FleetSnapshot`; every batch arrives as a
``FleetChanged`` message and is republished on ``fleet_signal`` to the screens, which update their
own widgets. Screens are modes, like k9s views: 1 fleet, 2 unregistered, 3 phases, 4 audit.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal

from neti_core.config import NetiConfig
from neti_core.fleet import (
    EMPTY_SNAPSHOT,
    Ec2Health,
    Ec2Poller,
    FleetBatch,
    FleetSnapshot,
    LiveFleet,
    ZkHealth,
)
from neti_core.fleet.query import SORTS
from neti_core.fleet.trend import STEP_SECONDS, FleetTrends
from neti_core.fleet.watcher import DEFAULT_COALESCE_SECONDS
from neti_core.operator_actions import FleetControl, default_operator
from neti_core.zkclient import install_acl, is_authenticated
from neti_tui.feed import FleetChanged, default_ec2_factory, make_zk_client, zk_connect_string
from screens.actions import WRITE_ACTIONS, WriteActions
from screens.audit import AuditScreen
from screens.fleet import FleetScreen
from screens.help import HelpScreen
from screens.phases import PhasesScreen
from screens.unregistered import UnregisteredScreen

log = logging.getLogger(__name__)
_NOT_NETI_KEYS = ("focus_", "copy_text")


class NetiConsoleApp(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "neti-console"
    MODES = {"fleet": FleetScreen, "unregistered": UnregisteredScreen, "phases": PhasesScreen,
             "audit": AuditScreen}
    DEFAULT_MODE = "fleet"
    BINDINGS = [
        Binding("1", "switch_mode('fleet')", "Views", key_display="1-4"),
        Binding("2", "switch_mode('unregistered')", "Unregistered instances", show=False),
        Binding("3", "switch_mode('phases')", "Migration phases", show=False),
        Binding("4", "switch_mode('audit')", "Audit log", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("colon", "command_palette", "Command palette", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, config: NetiConfig, *, readonly: bool = False, operator: str | None = None,
                 zk_hosts: str | None = None, clock: Callable[[], float] = time.time,
                 ec2_client_factory: Callable[[], Any] | None = None, ec2: bool = True,
                 poll_ec2: bool = True, coalesce: float = DEFAULT_COALESCE_SECONDS) -> None:
        super().__init__()
        self.config = config
        self.readonly = readonly
        self.operator = operator or default_operator()
        self.authenticated = is_authenticated(config)
        self.now = clock
        hosts = zk_hosts or zk_connect_string(config)
        self.fleet: FleetSnapshot = replace(EMPTY_SNAPSHOT, zk=ZkHealth(hosts=hosts),
                                            ec2=Ec2Health(configured=ec2))
        self.fleet_signal: Signal[FleetBatch] = Signal(self, "fleet")
        self.client = make_zk_client(hosts, config)
        paths = config.zk_paths
        self.control: FleetControl | None = FleetControl(self.client, paths, self.operator,
                                                         readonly=readonly, clock=clock)
        self.live = LiveFleet(self.client, paths, coalesce=coalesce, ec2_configured=ec2, clock=clock,
                              zk_hosts=hosts, overlay_subnet=config.overlay_subnet)
        self.poller: Ec2Poller | None = None
        if ec2 and poll_ec2:
            self.poller = Ec2Poller(ec2_client_factory or default_ec2_factory(config),
                                    config.ignore_name_patterns, config.ec2_poll_seconds)
        self.trends = FleetTrends()  # lagging and error counts over the last minutes (sparklines)
        self._stop = threading.Event()
        self.first_loaded_at: float | None = None  # when the first full read arrived (benchmarks)

    # --- the feed ----------------------------------------------------------------------------------

    def on_mount(self) -> None:
        # What exists now (modules, classes, the app) lives as long as the process: out of the
        # collector's sight, so that reading a large fleet does not rescan it in every full
        # collection (bench/console.py: ~0.3 s of 10,000 hosts' first paint).
        gc.freeze()
        self.set_interval(STEP_SECONDS, self._sample_trends)  # a quiet fleet still moves the line
        self.run_worker(self._zookeeper_worker, thread=True, name="zookeeper", exit_on_error=False)
        if self.poller is not None:
            self.run_worker(self._ec2_worker, thread=True, name="ec2", exit_on_error=False)

    def _zookeeper_worker(self) -> None:
        self.client.start_async()  # connects (and reconnects) in the background, forever
        threading.Thread(target=self._install_acl_once_connected, daemon=True).start()
        self.live.run(lambda batch: self.post_message(FleetChanged(batch)), self._stop)

    def _install_acl_once_connected(self) -> None:
        """What this operator creates (control, audit) must carry the tree's ACL from its first write."""
        while not self._stop.is_set() and not self.client.connected:
            self._stop.wait(0.1)
        if self.client.connected:
            try:
                install_acl(self.client, self.config.zk_paths)
            except Exception:  # the feed reports the session; a refused read shows up there too
                log.warning("reading the tree ACL failed", exc_info=True)

    def _ec2_worker(self) -> None:
        assert self.poller is not None
        self.poller.run(self.live.submit_instances, self.live.submit_ec2_error, self._stop)

    def on_fleet_changed(self, message: FleetChanged) -> None:
        self.fleet = message.batch.snapshot
        self._sample_trends()
        if self.first_loaded_at is None and self.fleet.zk.loaded:
            self.first_loaded_at = time.perf_counter()
        self.fleet_signal.publish(message.batch)

    def _sample_trends(self) -> None:
        if self.fleet.zk.loaded:
            self.trends.observe(self.now(), self.fleet.summary)

    def poll_ec2_now(self) -> None:
        if self.poller is not None:
            self.poller.poll_now()

    def on_unmount(self) -> None:
        self._stop.set()
        if self.poller is not None:
            self.poller.poll_now()
        threading.Thread(target=self._close_client, daemon=True).start()

    def _close_client(self) -> None:
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # closing a client that never connected; nothing left to do
            log.debug("closing the ZooKeeper client", exc_info=True)

    # --- help and commands ---------------------------------------------------------------------------

    def action_help(self) -> None:
        screen = self.screen
        keys: list[tuple[str, str]] = []
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if (active.node not in (screen, self) or not binding.description
                    or any(word in binding.action for word in _NOT_NETI_KEYS)):
                continue  # cursor movement, focus, copy: Textual's keys, not the console's
            description = binding.description
            if binding.action == "switch_mode('fleet')":
                description = "Fleet"
            elif binding.action.startswith("sort("):
                column = binding.action.split("'")[1]
                description = f"Sort by {SORTS[column][0]} (again: reverse)"
            shown = self.get_key_display(replace(binding, key_display=None)) or key
            if description in seen:
                # Same action on two keys (Textual's ^q and our q): list both, the footer's first.
                index = next(i for i, (_, d) in enumerate(keys) if d == description)
                first, _ = keys[index]
                keys[index] = (f"{shown} / {first}" if binding.show else f"{first} / {shown}", description)
                continue
            seen.add(description)
            keys.append((shown, description))
        keys += [("↑ ↓ pgup pgdn", "Move"), ("g home / G end", "First / last row"),
                 ("enter", "Open / select")]
        self.push_screen(HelpScreen(type(screen).__name__.removesuffix("Screen"), keys))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, help_text in (("fleet", "every member and unregistered instance"),
                                ("unregistered", "running EC2 instances not in Neti"),
                                ("phases", "the migration procedure and its guards"),
                                ("audit", "every operator action")):
            yield SystemCommand(f"Show {mode}", help_text, partial(self.switch_mode, mode))
        yield SystemCommand("Poll EC2 now", "refresh the running-instance inventory", self.poll_ec2_now)
        if self.readonly or not isinstance(screen, WriteActions):
            return
        for action, title in (("fleet_default", "Set the fleet reject_all default…"),
                              ("maxchange", "Set maxchange…"),
                              ("reject_on", "reject_all ON for the selection…"),
                              ("reject_off", "reject_all OFF for the selection…"),
                              ("reject_clear", "Clear reject_all overrides of the selection…")):
            if action in WRITE_ACTIONS and hasattr(screen, f"action_{action}"):
                yield SystemCommand(title, "asks for confirmation", partial(screen.run_action, action))
