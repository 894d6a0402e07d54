"""The fleet model: a member and the party entry format of the original Neti.

A party entry is the name of an ephemeral ZooKeeper node under ``ip-map``::

    <uuid hex>-<public>|<private>|<overlay>|<0 or 1>

Entries come from other hosts, so they are untrusted input on their way to the kernel: parsing is
strict and every failure is a :class:`MalformedEntryError`, never any other exception.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from ipaddress import IPv4Address

from neti_core.errors import MalformedEntryError

_UUID_HEX = re.compile(r"[0-9a-f]{32}")
# EC2 instance ids: i- followed by 8 (old) or 17 (current) lowercase hex digits.
_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255, no leading zero
_IPV4_OCTETS = re.compile(r"\.".join([_OCTET] * 4))


class Side(enum.StrEnum):
    """Which network a host lives in. The party entry encodes it as 0 (EC2) or 1 (VPC)."""

    EC2 = "ec2"
    VPC = "vpc"

    @property
    def flag(self) -> str:
        return "1" if self is Side.VPC else "0"

    @classmethod
    def from_flag(cls, flag: str) -> Side:
        if flag == "0":
            return cls.EC2
        if flag == "1":
            return cls.VPC
        raise MalformedEntryError(f"side flag must be 0 or 1, got {flag!r}")

    @classmethod
    def parse(cls, text: str) -> Side:
        try:
            return cls(text)
        except ValueError:
            raise MalformedEntryError(f"unknown side {text!r} (expected ec2 or vpc)") from None


def parse_ipv4(text: str) -> IPv4Address:
    """A dotted-quad IPv4 address and nothing else (no whitespace, no leading zeros, no IPv6).

    The pattern checks every octet's range itself, so the address is built from its integer:
    ``IPv4Address(text)`` re-parses each octet in Python, and the console parses ~90,000 addresses
    when it reads a fleet of 10,000 (bench/console.py)."""
    match = _IPV4_OCTETS.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise MalformedEntryError(f"not an IPv4 address: {text!r}")
    a, b, c, d = (int(octet) for octet in match.groups())
    return IPv4Address((a << 24) | (b << 16) | (c << 8) | d)


def ipv4_text(text: str) -> str:
    """``text`` itself if it is what :func:`parse_ipv4` accepts (then it is already the canonical
    spelling, ``str(parse_ipv4(text))``), for decoders that keep addresses as text."""
    if not isinstance(text, str) or _IPV4_OCTETS.fullmatch(text) is None:
        raise MalformedEntryError(f"not an IPv4 address: {text!r}")
    return text


def validate_instance_id(text: str) -> str:
    """An EC2 instance id; it becomes a ZooKeeper node name, so nothing else may pass."""
    if not isinstance(text, str) or not _INSTANCE_ID.fullmatch(text):
        raise MalformedEntryError(f"not an EC2 instance id: {text!r}")
    return text


@dataclass(frozen=True, slots=True)
class Member:
    """One host of the fleet as the party knows it; ``instance_id`` comes from the ip-to-id map."""

    public: IPv4Address
    private: IPv4Address
    overlay: IPv4Address
    side: Side
    instance_id: str | None = None

    def identifier(self) -> str:
        """The part of the party entry after the uuid, exactly as the original agent wrote it."""
        return f"{self.public}|{self.private}|{self.overlay}|{self.side.flag}"

    def filter_ip(self, local_side: Side) -> IPv4Address:
        """The address this member's packets arrive from, seen from a host on ``local_side``."""
        return self.private if self.side is local_side else self.public


@dataclass(frozen=True, slots=True)
class PartyEntry:
    """A parsed ``ip-map`` child: the node name's uuid and the member it announces."""

    uuid: str
    member: Member

    @property
    def node_name(self) -> str:
        return f"{self.uuid}-{self.member.identifier()}"


def parse_identifier(identifier: str) -> Member:
    """``<public>|<private>|<overlay>|<0|1>`` → Member (no instance id: the entry does not carry it)."""
    if not isinstance(identifier, str):
        raise MalformedEntryError(f"party identifier must be text, got {type(identifier).__name__}")
    fields = identifier.split("|")
    if len(fields) != 4:
        raise MalformedEntryError(f"party identifier needs 4 '|'-separated fields: {identifier!r}")
    public, private, overlay, flag = fields
    return Member(
        public=parse_ipv4(public),
        private=parse_ipv4(private),
        overlay=parse_ipv4(overlay),
        side=Side.from_flag(flag),
    )


def parse_party_entry(node_name: str) -> PartyEntry:
    """Parse one ``ip-map`` child name; anything not in the exact format is MalformedEntryError."""
    if not isinstance(node_name, str):
        raise MalformedEntryError(f"party entry must be text, got {type(node_name).__name__}")
    uuid, sep, identifier = node_name.partition("-")
    if not sep or not _UUID_HEX.fullmatch(uuid):
        raise MalformedEntryError(f"party entry must start with a 32-hex-digit uuid: {node_name!r}")
    return PartyEntry(uuid=uuid, member=parse_identifier(identifier))


def format_party_entry(uuid: str, member: Member) -> str:
    if not _UUID_HEX.fullmatch(uuid):
        raise MalformedEntryError(f"party entry uuid must be 32 hex digits: {uuid!r}")
    return f"{uuid}-{member.identifier()}"


@dataclass(frozen=True, slots=True)
class ParsedParty:
    """The live member list: good entries, plus the names that failed to parse and why."""

    entries: tuple[PartyEntry, ...]
    malformed: tuple[tuple[str, str], ...]

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(entry.member for entry in self.entries)


def parse_party(children: list[str]) -> ParsedParty:
    """Parse every child; a bad one is reported, never allowed to stop the others."""
    entries: list[PartyEntry] = []
    malformed: list[tuple[str, str]] = []
    for child in children:
        try:
            entries.append(parse_party_entry(child))
        except MalformedEntryError as exc:
            malformed.append((child, str(exc)))
    return ParsedParty(tuple(entries), tuple(malformed))
