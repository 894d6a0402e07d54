"""JSON documents Neti keeps in ZooKeeper besides the original layout: status, controls, audit.

The agent writes ``status/<id>``; operators (console, ``neti``) write ``control/*`` and ``audit/``;
everyone reads them. Decoding is strict: a document that is not in this format is a
MalformedEntryError, so a bad write by hand can never be taken for an instruction.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Self

from neti_core.errors import MalformedEntryError
from neti_core.members import Side, ipv4_text, validate_instance_id

RejectAllSource = Literal["host", "fleet", "config"]
DeadmanState = Literal["pending", "confirmed", "rolled_back"]
_SOURCES = ("host", "fleet", "config")
_DEADMAN = ("pending", "confirmed", "rolled_back")

# No Neti document comes near this; a bigger one is a problem to report, never a value to parse.
MAX_DOCUMENT_BYTES = 64 * 1024
# The migration phases in order (neti_core.phases describes each; a test keeps the two in step).
PHASE_KEYS = ("prepare", "register", "overlay", "vpc-pilot", "reject-canary", "reject-rollout",
              "reject-everywhere", "open-security-groups", "migrate")
DEFAULT_MAXCHANGE = 20
DEFAULT_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 3600.0


def _bounded(data: bytes | str, what: str) -> bytes | str:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MalformedEntryError(f"{what}: {len(data)} bytes, more than the {MAX_DOCUMENT_BYTES} allowed")
    if not data.strip():
        raise MalformedEntryError(f"{what}: empty")
    return data


# (name, JSON types accepted, default or ... when required): one line of a control document.
_FieldSpecs = tuple[tuple[str, type | tuple[type, ...], Any], ...]


def _load(data: bytes | str, what: str) -> dict[str, Any]:
    _bounded(data, what)
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEntryError(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedEntryError(f"{what}: expected a JSON object")
    return value


def _get(doc: dict[str, Any], key: str, kinds: type | tuple[type, ...], what: str,
         default: Any = ..., ) -> Any:
    if key not in doc:
        if default is ...:
            raise MalformedEntryError(f"{what}: missing {key!r}")
        return default
    value = doc[key]
    if value is None and default is None:
        return None
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise MalformedEntryError(f"{what}: {key!r} has the wrong type")
    if not isinstance(value, kinds):
        raise MalformedEntryError(f"{what}: {key!r} has the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise MalformedEntryError(f"{what}: {key!r} is not finite")
    return value


def _dump(document: object) -> bytes:
    return json.dumps(asdict(document), sort_keys=True, separators=(",", ":")).encode()  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class GuardState:
    """The mass-change guard refused removals: how many, against which maxchange, since when."""

    blocked_removals: int
    maxchange: int
    since: float


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """What one agent has *applied* (``status/<instance_id>``, ephemeral)."""

    instance_id: str
    overlay_ip: str
    side: str
    version: str
    reject_all: bool
    reject_all_source: RejectAllSource
    membership_version: int
    members: int
    ruleset_hash: str
    applied_at: float | None = None
    apply_ms: float | None = None
    error: str | None = None
    guard: GuardState | None = None
    deadman: DeadmanState | None = None
    drift_repairs: int = 0
    public_ip: str | None = None
    private_ip: str | None = None
    backend: str | None = None
    malformed_entries: int = 0
    pending_removals: int = 0
    drift_detected: bool = False  # the last full check found drift (repaired); cleared by a clean one
    problems: tuple[str, ...] = ()  # documents the agent refused, each naming which and why
    self_heals: int = 0             # own nodes (party entry, overlay pair, status) restored

    def to_json(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> AgentStatus:
        what = "status"
        doc = _load(data, what)
        instance_id = _get(doc, "instance_id", str, what)
        validate_instance_id(instance_id)
        overlay_ip = ipv4_text(_get(doc, "overlay_ip", str, what))
        side = Side.parse(_get(doc, "side", str, what)).value
        source = _get(doc, "reject_all_source", str, what)
        if source not in _SOURCES:
            raise MalformedEntryError(f"{what}: reject_all_source {source!r} is not one of {_SOURCES}")
        deadman = _get(doc, "deadman", str, what, None)
        if deadman is not None and deadman not in _DEADMAN:
            raise MalformedEntryError(f"{what}: deadman {deadman!r} is not one of {_DEADMAN}")
        guard_doc = _get(doc, "guard", dict, what, None)
        guard = None
        if guard_doc is not None:
            guard = GuardState(_get(guard_doc, "blocked_removals", int, "guard"),
                               _get(guard_doc, "maxchange", int, "guard"),
                               float(_get(guard_doc, "since", (int, float), "guard")))
        optional_ip = {}
        for key in ("public_ip", "private_ip"):
            text = _get(doc, key, str, what, None)
            optional_ip[key] = None if text is None else ipv4_text(text)
        return cls(
            instance_id=instance_id,
            overlay_ip=overlay_ip,
            side=side,
            version=_get(doc, "version", str, what),
            reject_all=_get(doc, "reject_all", bool, what),
            reject_all_source=source,
            membership_version=_get(doc, "membership_version", int, what),
            members=_get(doc, "members", int, what),
            ruleset_hash=_get(doc, "ruleset_hash", str, what),
            applied_at=_get(doc, "applied_at", (int, float), what, None),
            apply_ms=_get(doc, "apply_ms", (int, float), what, None),
            error=_get(doc, "error", str, what, None),
            guard=guard,
            deadman=deadman,
            drift_repairs=_get(doc, "drift_repairs", int, what, 0),
            backend=_get(doc, "backend", str, what, None),
            malformed_entries=_get(doc, "malformed_entries", int, what, 0),
            pending_removals=_get(doc, "pending_removals", int, what, 0),
            drift_detected=_get(doc, "drift_detected", bool, what, False),
            problems=_strings(_get(doc, "problems", list, what, []), "problems", what),
            self_heals=_get(doc, "self_heals", int, what, 0),
            **optional_ip,
        )


def _strings(values: list[Any], key: str, what: str) -> tuple[str, ...]:
    if not all(isinstance(value, str) for value in values):
        raise MalformedEntryError(f"{what}: {key!r} has the wrong type")
    return tuple(values)


def _number_text(data: bytes | str | None, what: str) -> str:
    if data is None:
        raise MalformedEntryError(f"{what}: missing")
    _bounded(data, what)
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return text.strip()


def decode_maxchange(data: bytes | str | None) -> int:
    """``maxchange``: how many members one sync may remove; a whole number >= 0.

    The original agents read it with int(), so it is written as plain digits. A new notation (a
    percentage of the fleet, say) is a new branch here that returns its own kind of limit.
    """
    text = _number_text(data, "maxchange")
    if not text.isascii() or not text.isdigit():
        raise MalformedEntryError(f"maxchange: {text[:40]!r} is not a whole number >= 0")
    return int(text)


def decode_interval(data: bytes | str | None) -> float:
    """``interval``: the least number of seconds between two syncs, 0 to 3600."""
    text = _number_text(data, "interval")
    try:
        value = float(text)
    except ValueError:
        raise MalformedEntryError(f"interval: {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_INTERVAL_SECONDS:
        raise MalformedEntryError(f"interval: {text[:40]!r} is not between 0 and {MAX_INTERVAL_SECONDS:g}")
    return value


class _Document:
    """A small control document: ``_FIELDS`` lists (name, JSON types, default or ... if required)."""

    __slots__ = ()
    _WHAT: ClassVar[str]
    _FIELDS: ClassVar[_FieldSpecs]

    def to_json(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        doc = _load(data, cls._WHAT)
        values = {name: _get(doc, name, kinds, cls._WHAT, default) for name, kinds, default in cls._FIELDS}
        values["when"] = float(values["when"])  # JSON may carry an int; the field is a float
        cls._check(values)
        return cls(**values)

    @classmethod
    def _check(cls, values: dict[str, Any]) -> None:
        """Rules on the values beyond their JSON types (none by default)."""


_STAMP: _FieldSpecs = (("who", str, ...), ("when", (int, float), ...), ("why", str, ""))


@dataclass(frozen=True, slots=True)
class RejectAllOverride(_Document):
    """``control/reject_all/<instance_id>``: an operator's value for one host."""

    value: bool
    who: str
    when: float
    why: str = ""
    _WHAT: ClassVar[str] = "control/reject_all"
    _FIELDS: ClassVar[_FieldSpecs] = (("value", bool, ...), *_STAMP)


@dataclass(frozen=True, slots=True)
class FleetDefaults(_Document):
    """``control/defaults``: fleet-wide values set from the console; None = not set (use neti.yml)."""

    reject_all: bool | None = None
    who: str = ""
    when: float = 0.0
    why: str = ""
    _WHAT: ClassVar[str] = "control/defaults"
    # Every writer stamps who and when: a document without them was not written by an operator tool.
    _FIELDS: ClassVar[_FieldSpecs] = (("reject_all", bool, None), ("who", str, ...),
                                      ("when", (int, float), ...), ("why", str, ""))


@dataclass(frozen=True, slots=True)
class PhaseRecord(_Document):
    """``control/phase``: the migration phase the fleet is in, and who moved it there."""

    phase: str
    who: str
    when: float
    why: str = ""
    _WHAT: ClassVar[str] = "control/phase"
    _FIELDS: ClassVar[_FieldSpecs] = (("phase", str, ...), *_STAMP)

    @classmethod
    def _check(cls, values: dict[str, Any]) -> None:
        if values["phase"] not in PHASE_KEYS:
            raise MalformedEntryError(f"{cls._WHAT}: unknown phase {values['phase'][:40]!r}")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """``audit/entry-<seq>``: one operator action, with the value before and after."""

    who: str
    when: float
    action: str
    target: str
    before: Any = None
    after: Any = None
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> AuditEntry:
        what = "audit"
        doc = _load(data, what)
        return cls(_get(doc, "who", str, what), float(_get(doc, "when", (int, float), what)),
                   _get(doc, "action", str, what), _get(doc, "target", str, what),
                   doc.get("before"), doc.get("after"), _get(doc, "why", str, what, ""),
                   _get(doc, "extra", dict, what, {}))


def effective_reject_all(host: RejectAllOverride | None, fleet: FleetDefaults | None,
                         configured: bool) -> tuple[bool, RejectAllSource]:
    """Precedence of reject_all: host override > fleet default > the host's neti.yml."""
    if host is not None:
        return host.value, "host"
    if fleet is not None and fleet.reject_all is not None:
        return fleet.reject_all, "fleet"
    return configured, "config"
