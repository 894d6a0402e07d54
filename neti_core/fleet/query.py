"""The console's filter language and sort orders, as pure functions of a :class:`HostRow`.

Filter (the ``/`` prompt, k9s-like): whitespace-separated terms that must all match. A bare term
matches a substring of the name, instance id, IPs, version or state; ``field:value`` matches one
field (``name id side state version ip want applied source``); a leading ``!`` negates. Examples:
``web side:vpc``, ``state:lagging``, ``!state:in``, ``applied:off``.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from neti_core.fleet.state import HostRow
from neti_core.versions import natural_key, parse_version

Predicate = Callable[[HostRow], bool]


def on_off(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


def _fields(row: HostRow) -> dict[str, tuple[str, ...]]:
    return {
        "name": (row.name,),
        "id": (row.key,),
        "side": (row.side,),
        "state": (row.state_label, row.state.value),
        "version": (row.version,),
        "ip": (row.public_ip, row.private_ip, row.overlay_ip),
        "want": (on_off(row.desired),),
        "applied": (on_off(row.applied),),
        "source": (row.desired_source or "", row.applied_source or ""),
    }


FIELDS = ("name", "id", "side", "state", "version", "ip", "want", "applied", "source")


def _term(term: str) -> Predicate:
    negate = term.startswith("!")
    term = term.lstrip("!").lower()
    field, sep, value = term.partition(":")
    if sep and field in FIELDS:
        exact = field in ("side", "want", "applied")

        def match(row: HostRow) -> bool:
            values = [v.lower() for v in _fields(row)[field]]
            return any(v == value if exact else value in v for v in values)
    else:
        def match(row: HostRow) -> bool:
            return any(term in v.lower() for vs in _fields(row).values() for v in vs)
    return (lambda row: not match(row)) if negate else match


def compile_filter(text: str) -> Predicate | None:
    """A predicate for the filter text; None for an empty filter (everything matches)."""
    terms = [_term(t) for t in text.split() if t.strip("!")]
    if not terms:
        return None
    return lambda row: all(term(row) for term in terms)


def _ip_key(text: str) -> tuple[int, int]:
    try:
        return (0, int(IPv4Address(text)))
    except ValueError:
        return (1, 0)


def _version_key(text: str) -> tuple[int, object]:
    version = parse_version(text) if text else None
    return (0, version) if version is not None else (1, text)


SORTS: dict[str, tuple[str, Callable[[HostRow], object]]] = {
    "name": ("name", lambda r: (r.name == "", natural_key(r.name), r.key)),
    "instance": ("instance id", lambda r: r.key),
    "side": ("side", lambda r: (r.side, natural_key(r.name), r.key)),
    "overlay": ("overlay IP", lambda r: _ip_key(r.overlay_ip)),
    "version": ("version", lambda r: (_version_key(r.version), r.key)),
    "state": ("state (worst first)", lambda r: (r.state.severity, -r.lag, natural_key(r.name), r.key)),
    "age": ("last apply (oldest first)", lambda r: (r.applied_at is None, r.applied_at or 0.0, r.key)),
}
