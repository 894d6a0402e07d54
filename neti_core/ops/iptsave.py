"""Reading ``iptables-save`` text for ``neti check``: tables, chains, and INPUT's verdict on a stranger.

The question the original Sensu check asked is "does this host drop what it should?". Here it is
answered by walking the live filter INPUT chain, rules of every tool included (a Docker or an
operator's ``-I INPUT -j ACCEPT`` in front of Neti's jump defeats reject_all just as well), for a
*stranger*: a new TCP connection from an address no rule names, to a port no rule opens, on a
non-loopback interface. Pure text in, verdict out.

A rule may match the stranger only if all its conditions are among: an input interface other than
``lo``, a protocol, ``-m tcp/udp`` without ports, a conntrack/state match that includes NEW, and a
comment. Any other condition (a source, a set, a port, ESTABLISHED, ``!``…) is taken not to match.
So "drops" is proven: an unconditional DROP/REJECT (or DROP policy) is reached first; "accepts"
names the rule that lets strangers in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

_DROPPING = {"DROP", "REJECT"}
_BUILTIN_TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "LOG", "NFLOG", "MARK", "CONNMARK",
                    "TRACE", "AUDIT", "CT", "NOTRACK"}
_MAX_DEPTH = 32


@dataclass
class SavedTable:
    policies: dict[str, str] = field(default_factory=dict)  # built-in chain → policy
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain → rule specs, in order


def parse_save(text: str) -> dict[str, SavedTable]:
    """Table name → its chains and rules, from ``iptables-save`` output (all tables)."""
    tables: dict[str, SavedTable] = {}
    current: SavedTable | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            current = tables.setdefault(line[1:], SavedTable())
        elif current is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            policy = rest.split(" ", 1)[0]
            current.chains.setdefault(name, [])
            if policy and policy != "-":
                current.policies[name] = policy
        elif line.startswith("-A "):
            name, _, spec = line[3:].partition(" ")
            current.chains.setdefault(name, []).append(spec)
    return tables


@dataclass(frozen=True, slots=True)
class Verdict:
    drops: bool
    reason: str


def _split(spec: str) -> tuple[list[str], str | None, bool]:
    """(condition tokens, target, is goto) of a rule spec."""
    try:
        tokens = shlex.split(spec)
    except ValueError:
        return ["<unparsable>"], None, False
    conditions: list[str] = []
    target, goto = None, False
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in ("-j", "-g") and index + 1 < len(tokens):
            target, goto = tokens[index + 1], token == "-g"
            index += 2
            # The target's own options (--reject-with, --log-prefix…) follow it; they match nothing.
            while index < len(tokens) and tokens[index] not in ("-m", "-p", "-i", "-s", "-d", "!"):
                index += 1
            continue
        conditions.append(token)
        index += 1
    return conditions, target, goto


def _pairs(conditions: list[str]) -> list[tuple[str, str]] | None:
    """(option, value) pairs, or None when the conditions are not simple pairs (e.g. a ``!``)."""
    if len(conditions) % 2 or "!" in conditions:
        return None
    return list(zip(conditions[::2], conditions[1::2], strict=True))


def _lets_stranger_through(option: str, value: str) -> bool:
    """Whether one condition still matches the stranger (see the module docstring)."""
    return ((option == "-i" and value != "lo")
            or (option == "-p" and value in ("tcp", "all", "6"))
            or (option == "-m" and value in ("tcp", "comment", "conntrack", "state"))
            or option == "--comment"
            or (option in ("--ctstate", "--state") and "NEW" in value.split(",")))


def may_match_stranger(conditions: list[str]) -> bool:
    """True when nothing in ``conditions`` keeps a stranger's new TCP connection out."""
    pairs = _pairs(conditions)
    return pairs is not None and all(_lets_stranger_through(o, v) for o, v in pairs)


def is_unconditional(conditions: list[str]) -> bool:
    """Matches every packet: no conditions, or only a comment."""
    pairs = _pairs(conditions)
    return pairs is not None and all(p in (("-m", "comment"),) or p[0] == "--comment" for p in pairs)


def stranger_verdict(table: SavedTable, chain: str = "INPUT") -> Verdict:
    """Whether ``chain`` (with everything it jumps to) ends a stranger's connection."""
    result = _walk(table, chain, 0, [])
    if result is not None:
        return result
    policy = table.policies.get(chain, "ACCEPT")
    if policy in _DROPPING:
        return Verdict(True, f"policy {policy} of {chain}")
    return Verdict(False, f"nothing in {chain} drops it and the policy is {policy}")


def _walk(table: SavedTable, chain: str, depth: int, path: list[str]) -> Verdict | None:
    """A verdict, or None when the stranger falls through (or RETURNs from) ``chain``."""
    if depth > _MAX_DEPTH:
        return Verdict(False, f"chains nest deeper than {_MAX_DEPTH} at {chain}: cannot tell")
    for number, spec in enumerate(table.chains.get(chain, []), start=1):
        conditions, target, goto = _split(spec)
        if target is None or not may_match_stranger(conditions):
            continue
        where = " → ".join([*path, f"{chain} rule {number}: -A {chain} {spec}"])
        unconditional = is_unconditional(conditions)
        if target == "ACCEPT":
            return Verdict(False, f"accepted by {where}")
        if target in _DROPPING and unconditional:
            return Verdict(True, f"dropped by {where}")
        if target == "RETURN" and unconditional:
            return None
        if target in table.chains and target not in _BUILTIN_TARGETS:
            inner = _walk(table, target, depth + 1, [*path, f"{chain} rule {number}"])
            if inner is not None and (unconditional or not inner.drops):
                return inner
            if goto and unconditional:
                return inner
    return None


def every_hook_verdict(neti: SavedTable, others: SavedTable | None) -> Verdict:
    """The verdict on a host where Neti has its own nftables table (the nft backend).

    The kernel runs every base chain registered at the input hook, Neti's table and the iptables
    ``filter`` table alike: an ACCEPT ends only its own chain, a DROP ends the packet. So a stranger
    is dropped when either drops it, and another tool's ACCEPT cannot undo Neti's drop.
    """
    ours = stranger_verdict(neti)
    if ours.drops:
        return Verdict(True, f"table ip neti: {ours.reason}")
    theirs = (stranger_verdict(others) if others is not None
              else Verdict(False, "no iptables filter table"))
    if theirs.drops:
        return Verdict(True, f"iptables filter: {theirs.reason}")
    return Verdict(False, f"table ip neti: {ours.reason}; iptables filter: {theirs.reason}")
