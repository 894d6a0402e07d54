"""The agent: register, watch, converge, guard, report. DESIGN.md "The agent's loop".

One reconcile loop (a BoundedFrequencyRunner): ZooKeeper watches only mark it dirty. A sync takes
a snapshot of the party and the controls, computes the desired RuleSet (pure), applies only what
changed, verifies, and publishes ``status/<id>``. Losing ZooKeeper never flushes rules: the sync
then keeps the last good rules and only looks after the dead-man deadline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

from agent.applied import Applied
from agent.control_watch import ControlWatcher
from agent.deadman import Deadman
from agent.last_good import FILE_NAME as LAST_GOOD_FILE
from agent.membership import MembershipPlan, MembershipTracker, load_applied, save_applied
from agent.metrics import AgentMetrics
from agent.retry import wait_out_drops
from agent.runner import BoundedFrequencyRunner, RealTimer
from agent.selfheal import SelfHeal
from agent.status import StatusPublisher
from neti_core.config import NetiConfig
from neti_core.errors import NetiError
from neti_core.firewall.protocol import FirewallBackend
from neti_core.imds import Identity
from neti_core.maxchange import MaxChange
from neti_core.members import Member
from neti_core.party.mirror import MirroredParty
from neti_core.party.view import MirrorView
from neti_core.registry import OverlayRegistry, read_params
from neti_core.rules import RuleSet, build_ruleset
from neti_core.schema import AgentStatus, RejectAllSource
from neti_core.zkclient import (
    UNAUTHENTICATED_NOTE,
    install_acl,
    is_authenticated,
    make_client,
    verify_agent_identity,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_ZK_SECONDS = 120.0  # how long start-up waits out a connection that keeps dropping
RETRY_AFTER_ERROR_SECONDS = 5.0  # a failed apply is retried this soon, not at the next resync
# Test-only: a planted bug (the agent ignores the guard) so `neti lab chaos` can show it catches one.
PLANTED_IGNORE_GUARD = os.environ.get("NETI_TEST_PLANT_BUG") == "ignore-guard"


class Agent:
    def __init__(self, config: NetiConfig, identity: Identity, backend: FirewallBackend, *,
                 zk_hosts: str | None = None, clock: Callable[[], float] = time.monotonic,
                 state_dir: Path | None = None) -> None:
        self.config = config
        self.identity = identity
        self.backend = backend
        self.paths = config.zk_paths
        self.zk_hosts = zk_hosts or config.zk_connect_string(identity.side)
        self.clock = clock
        self.metrics = AgentMetrics()
        self.state_dir = state_dir or config.table_files_path
        self.state_file = self.state_dir / "applied-members.json"
        saved, notes = load_applied(self.state_file)
        for note in notes:
            log.warning("%s", note)
        self.tracker = MembershipTracker(config.removal_grace_seconds, saved)
        self.deadman = Deadman(config.reject_all_confirm_seconds)
        self.applied = Applied()
        self.overlay_ip: Any = None
        self.client: KazooClient | None = None
        self.membership: MirroredParty | None = None
        self.view: MirrorView | None = None
        self.controls: ControlWatcher | None = None
        self.publisher: StatusPublisher | None = None
        self.healer: SelfHeal | None = None
        self._heal_problems: tuple[str, ...] = ()
        self.runner: BoundedFrequencyRunner | None = None
        self._last_full_check = float("-inf")
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        if PLANTED_IGNORE_GUARD:
            log.warning("TEST-ONLY planted bug (NETI_TEST_PLANT_BUG=ignore-guard): the guard is ignored")

    # --- lifecycle --------------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> None:
        """Connect to ZooKeeper, retrying until it answers (or ``timeout`` passes)."""
        retry = KazooRetry(max_tries=-1, delay=0.2, max_delay=5)
        self.client = make_client(self.config, self.zk_hosts, timeout=self.config.zk_session_timeout_seconds,
                                  connection_retry=retry)
        self.client.add_listener(self._zk_state_changed)
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            try:
                self.client.start(timeout=5)
                break
            except KazooTimeoutError:
                if self._stopping.is_set() or (deadline is not None and self.clock() > deadline):
                    raise NetiError(f"cannot reach ZooKeeper at {self.zk_hosts}") from None
                log.warning("ZooKeeper at %s not reachable yet; retrying", self.zk_hosts)
        client, paths = self.client, self.paths
        tree = self._wait_out(install_acl, client, paths)  # every node we create carries its ACL
        self._wait_out(verify_agent_identity, client, paths, self.identity.instance_id, tree)
        if not is_authenticated(self.config):
            log.warning("%s", UNAUTHENTICATED_NOTE)

    def _wait_out(self, call: Callable[..., T], *args: Any) -> T:
        return wait_out_drops(call, *args, hosts=self.zk_hosts, seconds=STARTUP_ZK_SECONDS)

    def register(self) -> None:
        assert self.client is not None
        registry = OverlayRegistry(self.client, self.paths, self.config.overlay_subnet)
        registration = self._wait_out(registry.register, self.identity.instance_id)
        params = self._wait_out(read_params, self.client, self.paths)
        for problem in params.problems:
            log.warning("%s", problem)
        for note in registration.repaired:
            log.warning("registry: %s", note)
        self.overlay_ip = registration.overlay_ip
        member = Member(self.identity.public_ip, self.identity.private_ip, self.overlay_ip,
                        self.identity.side, self.identity.instance_id)
        self.publisher = StatusPublisher(self.client, self.paths, self.identity.instance_id)
        self.membership = MirroredParty(self.client, self.paths, member, on_rejoin=self._rejoined)
        self._wait_out(self.membership.join)
        # Poll no more often than the session timeout: kazoo only notices a dead connection when
        # it has sent nothing for a third of it, so frequent requests would hide a lost link.
        self.view = MirrorView(self.client, self.paths, self._party_changed,
                               legacy_poll_seconds=max(5.0, self.config.zk_session_timeout_seconds))
        self.healer = SelfHeal(self.client, registry=registry, membership=self.membership,
                               publisher=self.publisher, instance_id=self.identity.instance_id,
                               overlay_ip=self.overlay_ip, wake=self._party_event)
        log.info("registered %s as overlay %s (%s side)", self.identity.instance_id, self.overlay_ip,
                 self.identity.side.value)

    def start_controls(self) -> None:
        """Create the runner and the control watches (their first values arrive synchronously)."""
        assert self.client is not None
        self.runner = BoundedFrequencyRunner(self.sync, self._min_interval, self.config.resync_seconds,
                                             RealTimer(self.clock))
        self.controls = self._wait_out(ControlWatcher, self.client, self.paths, self.identity.instance_id,
                                       self.runner.mark_dirty, self.state_dir / LAST_GOOD_FILE)

    def start(self) -> None:
        """Connect, register, join, watch, and run the loop in a background thread."""
        if self.client is None:
            self.connect()
        self.register()
        self.start_controls()
        assert self.runner is not None
        self._thread = threading.Thread(target=self.runner.run_forever, name="neti-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop syncing and close the session. The rules stay as they are (fail-static)."""
        self._stopping.set()
        if self.runner is not None:
            self.runner.stop()
        if self.view is not None:
            self.view.close()
        if self._thread is not None:
            self._thread.join(10)
        if self.client is not None:
            try:
                self.client.stop()
                self.client.close()
            except Exception:  # closing a dead session must not mask the reason we stopped
                log.debug("closing ZooKeeper client", exc_info=True)

    def _min_interval(self) -> float:
        return self.controls.interval if self.controls is not None else 1.0

    def _zk_state_changed(self, state: KazooState) -> None:
        self.metrics.zk_connected.set(1 if state == KazooState.CONNECTED else 0)
        if self._stopping.is_set():
            pass  # our own close, not an outage
        elif state == KazooState.SUSPENDED:  # kazoo's thread: log only, never block
            log.warning("ZooKeeper connection lost; the session may still be alive, rules kept")
        elif state == KazooState.LOST:
            log.warning("ZooKeeper session lost; will rejoin on the next session, rules kept")
        if state == KazooState.CONNECTED and self.client is not None:
            # The tree may have been secured (or opened) while we were away: re-read its principals
            # before anything is created again. Off kazoo's event thread, which must not block.
            self.client.handler.spawn(self._refresh_acl)
        if state == KazooState.CONNECTED and self.runner is not None:
            self.runner.mark_dirty()

    def _refresh_acl(self) -> None:
        try:
            if self.client is not None:
                install_acl(self.client, self.paths)
        except Exception:
            log.warning("re-reading the tree's principals failed", exc_info=True)

    def _rejoined(self) -> None:
        """A new session: our ephemeral status is gone and watches must be set again."""
        if self.publisher is not None:
            self.publisher.invalidate()
        if self.runner is not None:
            self.runner.mark_dirty()

    def _party_changed(self) -> None:
        if self.runner is not None:
            self.runner.mark_dirty()

    def _party_event(self, _event: object) -> None:
        self._party_changed()

    # --- the sync ---------------------------------------------------------------------------------

    def sync(self) -> float | None:
        started = time.perf_counter()
        self.metrics.syncs.inc()
        try:
            return self._sync()
        finally:
            self.metrics.sync_seconds.observe(time.perf_counter() - started)

    def _connected(self) -> bool:
        return self.client is not None and self.client.state == KazooState.CONNECTED

    def _sync(self) -> float | None:
        now = self.clock()
        if not self._connected():
            self._check_deadman(now)
            return self.deadman.next_wakeup(now)
        assert self.client is not None and self.controls is not None and self.view is not None
        try:
            view = self.view.snapshot()
            self._heal(list(view.names))
        except (KazooException, KazooTimeoutError) as exc:
            log.info("ZooKeeper unavailable (%s): keeping the current rules", exc)
            self._check_deadman(now)
            # The view keeps what it could not read marked; try again soon, not at the next resync.
            wakeup = self.deadman.next_wakeup(now)
            return RETRY_AFTER_ERROR_SECONDS if wakeup is None else min(wakeup, RETRY_AFTER_ERROR_SECONDS)
        party, cversion = view.party, view.cversion
        for name, reason in party.malformed:
            log.warning("skipping malformed party entry %r: %s", name, reason)
        controls = self.controls.snapshot()
        wanted, source, token = controls.reject_all(self.config.reject_all)
        reject_all = self.deadman.allowed(wanted, token)
        maxchange = controls.maxchange if not PLANTED_IGNORE_GUARD else MaxChange(count=1 << 30)
        plan = self.tracker.plan(party.members, now, maxchange)
        desired = build_ruleset(self.identity.side, plan.members, self.config, reject_all)
        full_check = now - self._last_full_check >= self.config.resync_seconds
        self._converge(desired, plan, reject_all=reject_all, source=source, now=now, full_check=full_check)
        if self.applied.error is None:  # a failed apply leaves the previous membership applied
            self.applied.membership_version = cversion
            self.metrics.membership_version.set(cversion)
            self.metrics.last_sync.set(time.time())
        self.applied.malformed = len(party.malformed)
        self.metrics.malformed.set(len(party.malformed))
        self.applied.problems = controls.problems + self._heal_problems
        self._check_deadman(now)
        self._publish()
        waits = [w for w in (self.deadman.next_wakeup(now),
                             None if plan.next_expiry is None else plan.next_expiry - now,
                             RETRY_AFTER_ERROR_SECONDS if self.applied.error else None) if w is not None]
        return min(waits) if waits else None

    def _heal(self, party_names: list[str]) -> None:
        if self.healer is None:
            return
        restored, self._heal_problems = self.healer.check(party_names)
        if restored:
            self.applied.self_heals += len(restored)
            self.metrics.self_heals.inc(len(restored))

    def _repair_drift(self, desired: RuleSet) -> None:
        """Compare the kernel with ``desired`` and rebuild what differs; a failure is reported."""
        try:
            drift = self.backend.drift(desired)
            self.applied.drift_detected = bool(drift)
            if not drift:
                return
            log.warning("rules drifted; repairing:\n%s", drift)
            self.backend.repair(desired)
        except NetiError as exc:
            self._failed(f"drift repair failed: {exc}")
            return
        self.applied.drift_repairs += 1
        self.metrics.drift_repairs.inc()
        self.applied.error = None

    def _converge(self, desired: RuleSet, plan: MembershipPlan, *, reject_all: bool,
                  source: RejectAllSource, now: float, full_check: bool) -> None:
        """Apply if the desired rules differ; on a full check, also repair drift."""
        previous = self.applied.ruleset
        changed = previous is None or desired.hash != previous.hash
        if not changed:  # same rules, maybe a new reason for them (an override equal to neti.yml)
            self.applied.source = source
            if full_check:
                self._last_full_check = now
                self._repair_drift(desired)
            self._record_plan(plan)
            return
        began = time.perf_counter()
        try:
            self.backend.apply(desired)
        except NetiError as exc:
            self._failed(f"apply failed, previous rules kept: {exc}")
            return
        turned_on = reject_all and not self.applied.reject_all
        self.applied.ruleset = desired
        self.applied.reject_all, self.applied.source = reject_all, source
        self.applied.apply_ms = round((time.perf_counter() - began) * 1000, 2)
        self.applied.applied_at = time.time()
        self.applied.error = None
        self.metrics.applies.inc()
        self.tracker.commit(plan)
        self._record_plan(plan)
        try:
            save_applied(self.state_file, plan.members)
        except OSError as exc:
            log.warning("cannot save applied members to %s: %s", self.state_file, exc)
        if full_check:
            # A delta trusts that the kernel still holds what was applied last; the full check that
            # was due must still look, or a host that keeps receiving changes (flips, churn) would
            # never find a flushed set. The chaos soak caught exactly that.
            self._last_full_check = now
            self._repair_drift(desired)
        if turned_on:
            self.deadman.armed(now)
        elif not reject_all:
            self.deadman.disarm()

    def _record_plan(self, plan: MembershipPlan) -> None:
        self.metrics.members.set(len(plan.members))
        self.metrics.guard_blocked.set(plan.blocked_removals if plan.guard_tripped else 0)
        change = self.applied.record_plan(plan, time.time())
        if change == "tripped":
            self.metrics.guard_trips.inc()
            log.warning("mass-change guard: %d removals held (maxchange %s: at most %d of %d)",
                        plan.blocked_removals, plan.maxchange_setting, plan.maxchange,
                        len(self.tracker.applied))
        elif change == "cleared":
            log.info("mass-change guard cleared")

    def _failed(self, message: str) -> None:
        log.error("%s", message)
        self.applied.error = message
        self.metrics.errors.inc()

    def _check_deadman(self, now: float) -> None:
        if self.deadman.may_confirm(now) and self._connected():
            self.deadman.confirm()
            if self._publish(force=True):
                log.info("reject_all confirmed by a healthy ZooKeeper session")
                return
            self.deadman.armed(self.deadman.applied_at)  # not confirmed after all: still pending
        if self.deadman.overdue(now):
            self._roll_back()

    def _roll_back(self) -> None:
        plan = self.applied.plan
        members = plan.members if plan is not None else ()
        fallback = build_ruleset(self.identity.side, members, self.config, False)
        token = self.controls.snapshot().reject_all(self.config.reject_all)[2] if self.controls else None
        try:
            self.backend.apply(fallback)
        except NetiError as exc:
            self._failed(f"dead-man rollback failed: {exc}")
            return
        log.error("reject_all was not confirmed within %.0f s: previous rules restored",
                  self.deadman.confirm_seconds)
        self.metrics.rollbacks.inc()
        self.deadman.rolled_back(token)
        self.applied.ruleset = fallback
        self.applied.reject_all = False
        self.applied.applied_at = time.time()

    # --- status and health ------------------------------------------------------------------------

    def status(self) -> AgentStatus:
        return self.applied.status(self.identity, self.overlay_ip, backend=self.backend.name,
                                   deadman=self.deadman.state)

    def _publish(self, force: bool = False) -> bool:
        if self.publisher is None or not self._connected():
            return False
        return self.publisher.publish(self.status(), force=force)

    def health(self) -> tuple[bool, dict[str, Any]]:
        last = self.runner.last_run if self.runner is not None else None
        loop_age = None if last is None else self.clock() - last
        loop_alive = loop_age is not None and loop_age < self.config.resync_seconds * 2 + 30
        zk = self.client.state if self.client is not None else "none"
        healthy = loop_alive and self.applied.error is None and zk == KazooState.CONNECTED
        return healthy, {"zookeeper": str(zk), "last_sync_age_s": loop_age, "error": self.applied.error,
                         "deadman": self.deadman.state, "members": self.applied.members,
                         "ruleset_hash": self.applied.ruleset.hash if self.applied.ruleset else None}

