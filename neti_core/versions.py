"""Agent versions compared as versions, not strings, and host names sorted as people read them.

``packaging`` parses versions (PEP 440: "0.10.0" is newer than "0.9.2", "1.0rc1" older than
"1.0"); a version that does not parse is None, and the caller decides what that means (the report
treats it as "not shown to be at the version", the console sorts it last).
"""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

__all__ = ["Version", "natural_key", "parse_version"]

_DIGITS = re.compile(r"(\d+)")


def parse_version(text: str | None) -> Version | None:
    """The parsed version, or None when there is none or it is not a version."""
    if not text:
        return None
    try:
        # A local suffix ("+build7") names a build of the same release: it must not count as newer.
        return Version(Version(text.strip()).public)
    except InvalidVersion:
        return None


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders web2 before web10 (digit runs compare as numbers, case ignored)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in _DIGITS.split(text) if part)
