"""Operator actions: reject_all per host or fleet-wide, ``maxchange``, the migration phase.

Every change is written together with its ``audit/entry-<seq>`` record in one ZooKeeper
transaction, so there is never a control change without its who/when/why, nor an audit record of
a change that did not happen. Writes are optimistic (version checks) and retried on a race. A
read-only controller refuses every write with :class:`ReadOnlyError` before touching ZooKeeper:
``--readonly`` is enforced here, not only by hiding keys in the console.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError

from neti_core.config import ZkPaths
from neti_core.errors import MalformedEntryError, NetiError
from neti_core.fleet.state import EMPTY_SNAPSHOT, AuditRecord, FleetSnapshot
from neti_core.fleet.treeread import audit_seq
from neti_core.maxchange import MaxChange, audit_value, parse_maxchange
from neti_core.members import validate_instance_id
from neti_core.phases import Check, check_move, get_phase
from neti_core.revert_plan import (
    RevertPlan,
    RevertRefused,
    recorded_value,
    revert_slots,
    shown,
    slot_document,
    when,
)
from neti_core.schema import AuditEntry, FleetDefaults, PhaseRecord

CHUNK = 200  # hosts per transaction: one audit record each, well under ZooKeeper's 1 MB request
_ATTEMPTS = 5
T = TypeVar("T")


class ReadOnlyError(NetiError):
    """A write was attempted through a read-only controller."""


class ControlConflictError(NetiError):
    """Someone else kept changing the same nodes; nothing of this chunk was written."""


def retry_on_conflict(attempt: Callable[[], T | None], conflict: str) -> T:
    """Optimistic concurrency: run ``attempt`` until it commits, at most ``_ATTEMPTS`` times.

    ``attempt`` reads the nodes, writes them in one transaction guarded by the versions it read and
    returns its result, or None when a version check failed (someone wrote in between); it then runs
    again on fresh reads. Raises ControlConflictError with ``conflict`` when every attempt lost.
    """
    for _ in range(_ATTEMPTS):
        outcome = attempt()
        if outcome is not None:
            return outcome
    raise ControlConflictError(conflict)


class PhaseMoveRefused(NetiError):
    """The phase move is not allowed now; ``reasons`` say why (failing guard checks)."""

    def __init__(self, reasons: Sequence[str], checks: Sequence[Check] = ()) -> None:
        self.reasons = tuple(reasons)
        self.checks = tuple(checks)
        super().__init__("; ".join(self.reasons))


def default_operator() -> str:
    """The person at the keyboard: ``$SUDO_USER`` (who ran sudo) before ``$USER``."""
    for variable in ("SUDO_USER", "USER"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    audit_paths: tuple[str, ...]


class FleetControl:
    """Writes control nodes and audit records for one operator."""

    def __init__(self, client: KazooClient, paths: ZkPaths, operator: str, *, readonly: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        if not operator:
            raise ValueError("an operator name is required for the audit log")
        self.client = client
        self.paths = paths
        self.operator = operator
        self.readonly = readonly
        self.clock = clock

    def _check_writable(self, what: str) -> None:
        if self.readonly:
            raise ReadOnlyError(f"read-only console: refusing to {what}")

    def _entry(self, action: str, target: str, before: Any, after: Any, *, why: str,
               extra: dict[str, Any] | None = None) -> AuditEntry:
        return AuditEntry(who=self.operator, when=self.clock(), action=action, target=target,
                          before=before, after=after, why=why, extra=extra or {})

    def _commit(self, transaction: Any, entry: AuditEntry) -> str | None:
        """Add the audit record and commit; the audit path, or None when a check failed (race)."""
        transaction.create(f"{self.paths.audit}/entry-", entry.to_json(), sequence=True)
        results = transaction.commit()
        for result in results:
            if isinstance(result, NoAuthError):  # not a race: these credentials may not write here
                raise result
        if any(isinstance(result, Exception) for result in results):
            return None
        return str(results[-1])

    # --- reject_all ----------------------------------------------------------------------------

    def retry_host_reject_all(self, instance_ids: Sequence[str], why: str = "",
                              extra: dict[str, Any] | None = None) -> ActionResult:
        """Write reject_all on again for hosts whose dead-man switch rolled it back: a new version of
        the override is a new instruction, which the agent tries afresh (re-arming the switch)."""
        return self.set_host_reject_all(instance_ids, True, why, extra, retry=True)

    def set_host_reject_all(self, instance_ids: Sequence[str], value: bool | None, why: str = "",
                            extra: dict[str, Any] | None = None, *, retry: bool = False) -> ActionResult:
        """Set (True/False) or clear (None) the override of each host; hosts already so are left
        (unless ``retry``: then every host's override is rewritten)."""
        action = "reject_all.retry" if retry else "reject_all.clear" if value is None else "reject_all.set"
        self._check_writable(f"{action} on {len(instance_ids)} hosts")
        ids = list(dict.fromkeys(validate_instance_id(i) for i in instance_ids))
        self.client.ensure_path(self.paths.control_reject_all)
        self.client.ensure_path(self.paths.audit)
        changed: list[str] = []
        unchanged: list[str] = []
        audits: list[str] = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            done, same, path = self._write_overrides(chunk, value, why, action, extra=extra or {},
                                                     retry=retry)
            changed += done
            unchanged += same
            if path:
                audits.append(path)
        return ActionResult(action, tuple(changed), tuple(unchanged), tuple(audits))

    def _override_path(self, instance_id: str) -> str:
        return f"{self.paths.control_reject_all}/{instance_id}"

    def _write_overrides(self, chunk: list[str], value: bool | None, why: str, action: str, *,
                         extra: dict[str, Any], retry: bool = False,
                         ) -> tuple[list[str], list[str], str | None]:
        def attempt() -> tuple[list[str], list[str], str | None] | None:
            reads = [(i, self.client.get_async(self._override_path(i))) for i in chunk]
            current: dict[str, tuple[bool | str | None, int | None]] = {}
            for instance_id, result in reads:
                try:
                    data, stat = result.get()
                except NoNodeError:
                    current[instance_id] = (None, None)
                    continue
                current[instance_id] = (recorded_value(action, data), stat.version)
            if retry:
                todo = list(chunk)
            elif value is None:
                todo = [i for i in chunk if current[i][1] is not None]
            else:
                todo = [i for i in chunk if current[i][0] is not value]
            same = [i for i in chunk if i not in todo]
            if not todo:
                return [], same, None
            transaction = self.client.transaction()
            document = (None if value is None
                        else slot_document(action, value, self.operator, self.clock(), why))
            for instance_id in todo:
                path, version = self._override_path(instance_id), current[instance_id][1]
                if document is None:
                    transaction.delete(path, version=version)
                elif version is None:
                    transaction.create(path, document)
                else:
                    transaction.set_data(path, document, version=version)
            if len(todo) == 1:
                entry = self._entry(action, todo[0], current[todo[0]][0], value, why=why, extra=extra)
            else:
                entry = self._entry(action, f"{len(todo)} hosts", {i: current[i][0] for i in todo}, value,
                                    why=why, extra={**extra, "instance_ids": todo})
            committed = self._commit(transaction, entry)
            if committed is not None:
                return todo, same, committed
            return None  # a version check failed: someone wrote in between

        return retry_on_conflict(attempt, f"{action}: the overrides kept changing under us; nothing written")

    def set_fleet_reject_all(self, value: bool | None, why: str = "") -> ActionResult:
        """The fleet-wide default (None: unset, each host's neti.yml decides)."""
        self._check_writable("change the fleet reject_all default")
        self.client.ensure_path(self.paths.control)
        self.client.ensure_path(self.paths.audit)
        path = self.paths.control_defaults
        def attempt() -> ActionResult | None:
            data, version = self._read(path)
            try:
                old = FleetDefaults.from_json(data) if data else FleetDefaults()
            except MalformedEntryError:
                old = FleetDefaults()
            if data is not None and old.reject_all == value:
                return ActionResult("defaults.reject_all", (), ("fleet",), ())
            document = slot_document("defaults.reject_all", value, self.operator, self.clock(), why)
            transaction = self.client.transaction()
            self._put(transaction, path, document, version)
            audit = self._commit(transaction, self._entry("defaults.reject_all", "fleet", old.reject_all,
                                                          value, why=why))
            if audit is not None:
                return ActionResult("defaults.reject_all", ("fleet",), (), (audit,))
            return None  # a version check failed: someone wrote in between

        return retry_on_conflict(attempt, "control/defaults kept changing under us; nothing written")

    # --- maxchange -------------------------------------------------------------------------------

    def set_maxchange(self, value: int | str | MaxChange, why: str = "") -> ActionResult:
        """The most members an agent may drop in one update (the mass-change guard's limit): a count
        (``20``) or a share of the fleet (``"10%"``)."""
        self._check_writable("change maxchange")
        try:
            limit = value if isinstance(value, MaxChange) else parse_maxchange(value)
        except MalformedEntryError as exc:
            raise ValueError(f"maxchange must be a whole number >= 0 or a share (10%): {exc}") from None
        value = audit_value(limit)
        self.client.ensure_path(self.paths.audit)
        def attempt() -> ActionResult | None:
            data, version = self._read(self.paths.maxchange)
            before = recorded_value("maxchange.set", data)
            if before == value:
                return ActionResult("maxchange.set", (), ("maxchange",), ())
            transaction = self.client.transaction()
            self._put(transaction, self.paths.maxchange,
                      slot_document("maxchange.set", value, self.operator, self.clock(), why), version)
            entry = self._entry("maxchange.set", "maxchange", before, value, why=why)
            audit = self._commit(transaction, entry)
            if audit is not None:
                return ActionResult("maxchange.set", ("maxchange",), (), (audit,))
            return None  # a version check failed: someone wrote in between

        return retry_on_conflict(attempt, "maxchange kept changing under us; nothing written")

    # --- the migration phase ---------------------------------------------------------------------

    def move_phase(self, target: str, snapshot: FleetSnapshot, why: str = "") -> ActionResult:
        """Move to ``target`` if the procedure allows it now (its guard, on ``snapshot``, passes)."""
        self._check_writable(f"move the migration phase to {target}")
        get_phase(target)
        self.client.ensure_path(self.paths.control)
        self.client.ensure_path(self.paths.audit)
        def attempt() -> ActionResult | None:
            data, version = self._read(self.paths.control_phase)
            try:
                current = PhaseRecord.from_json(data).phase if data else None
            except MalformedEntryError:
                current = None
            verdict = check_move(current or "prepare", target, snapshot)
            if not verdict.allowed:
                raise PhaseMoveRefused(verdict.reasons, verdict.checks)
            transaction = self.client.transaction()
            self._put(transaction, self.paths.control_phase,
                      slot_document("phase.move", target, self.operator, self.clock(), why), version)
            extra = {"checks": [{"label": c.label, "ok": c.ok, "detail": c.detail} for c in verdict.checks],
                     "backward": verdict.backward}
            audit = self._commit(transaction, self._entry("phase.move", "phase", current, target, why=why,
                                                          extra=extra))
            if audit is not None:
                return ActionResult("phase.move", ("phase",), (), (audit,))
            return None  # a version check failed: someone wrote in between

        return retry_on_conflict(attempt, "control/phase kept changing under us; nothing written")

    # --- undo ----------------------------------------------------------------------------------------

    def plan_revert(self, seq: int) -> RevertPlan:
        """What reverting ``audit/entry-<seq>`` would write; refused if a value has changed since."""
        return self._plan_and_versions(seq)[0]

    def revert(self, seq: int, snapshot: FleetSnapshot | None = None, why: str = "") -> ActionResult:
        """Restore the before-values of entry ``seq`` in one transaction, audited as its revert.
        Refused when any value has changed since the entry (nothing is written then)."""
        self._check_writable(f"revert audit entry {seq}")
        def attempt() -> ActionResult | None:
            plan, versions = self._plan_and_versions(seq)
            entry, reason = plan.entry, f"revert of entry {seq}" + (f": {why}" if why else "")
            transaction = self.client.transaction()
            for target, (before, _) in plan.slots.items():
                self._slot_write(transaction, entry.action, target, before, version=versions[target],
                                 why=reason, snapshot=snapshot)
            targets = list(plan.slots)
            now, restored = plan.values()
            extra = {"revert_of": seq, **({"instance_ids": targets} if len(targets) > 1 else {})}
            audit = self._commit(transaction, self._entry(entry.action, entry.target, now, restored,
                                                          why=reason, extra=extra))
            if audit is not None:
                return ActionResult(f"revert of entry {seq}", tuple(targets), (), (audit,))
            return None  # a version check failed: someone wrote in between

        return retry_on_conflict(attempt,
                                 f"the values of entry {seq} kept changing under us; nothing written")

    def _plan_and_versions(self, seq: int) -> tuple[RevertPlan, dict[str, int | None]]:
        data, _ = self._read(self._audit_path(seq))
        if data is None:
            raise RevertRefused(f"audit entry {seq} does not exist")
        entry = AuditEntry.from_json(data)
        slots = revert_slots(entry)
        versions: dict[str, int | None] = {}
        for target, (_, after) in slots.items():
            now, versions[target] = self._slot_read(entry.action, target)
            if now != after:
                raise RevertRefused(f"{target} has changed since entry {seq}: it is {shown(now)}, not "
                                    f"{shown(after)}{self._changed_by(seq, entry.action, target)}")
        return RevertPlan(seq, entry, slots), versions

    def _audit_path(self, seq: int) -> str:
        return f"{self.paths.audit}/entry-{seq:010d}"

    def _slot_path(self, action: str, target: str) -> str:
        if action.startswith("reject_all."):
            return self._override_path(validate_instance_id(target))
        return {"defaults.reject_all": self.paths.control_defaults, "maxchange.set": self.paths.maxchange,
                "phase.move": self.paths.control_phase}[action]

    def _slot_read(self, action: str, target: str) -> tuple[Any, int | None]:
        """The value an action of this kind sets, as its audit entries record it, and the version."""
        data, version = self._read(self._slot_path(action, target))
        return recorded_value(action, data), version

    def _slot_write(self, transaction: Any, action: str, target: str, value: Any, *, version: int | None,
                    why: str, snapshot: FleetSnapshot | None) -> None:
        path = self._slot_path(action, target)
        if value is None and action in ("reject_all.set", "reject_all.clear", "maxchange.set"):
            if version is not None:  # no override / no maxchange node before: remove it again
                transaction.delete(path, version=version)
            return
        if action == "phase.move":
            current = self._slot_read(action, target)[0] or "prepare"
            verdict = check_move(current, value or "prepare", snapshot or EMPTY_SNAPSHOT)
            if not verdict.allowed:
                raise PhaseMoveRefused(verdict.reasons, verdict.checks)
        self._put(transaction, path, slot_document(action, value, self.operator, self.clock(), why), version)

    def _changed_by(self, seq: int, action: str, target: str) -> str:
        """Who changed ``target`` after entry ``seq``: the newest later audit entry about it."""
        names = self.client.get_children(self.paths.audit)
        later = sorted((s for s in map(audit_seq, names) if s is not None and s > seq), reverse=True)
        for newer in later[:500]:
            data, _ = self._read(self._audit_path(newer))
            try:
                record = AuditRecord(newer, AuditEntry.from_json(data or b""))
            except MalformedEntryError:
                continue
            same_kind = record.entry.action.split(".", maxsplit=1)[0] == action.split(".", maxsplit=1)[0]
            if same_kind and (record.concerns(target) or record.entry.target == target):
                return f" (changed by {record.entry.who} at {when(record.entry.when)}, entry {newer})"
        return " (changed without an audit record)"

    # --- helpers ---------------------------------------------------------------------------------

    def _read(self, path: str) -> tuple[bytes | None, int | None]:
        try:
            data, stat = self.client.get(path)
        except NoNodeError:
            return None, None
        return data, stat.version

    @staticmethod
    def _put(transaction: Any, path: str, data: bytes, version: int | None) -> None:
        if version is None:
            transaction.create(path, data)
        else:
            transaction.set_data(path, data, version=version)

