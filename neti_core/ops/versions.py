"""Agent versions compared as versions, not strings ("0.10.0" is newer than "0.9.2").

A small PEP 440-style parser so the core keeps no dependency on ``packaging``: numeric release
segments (missing ones count as 0), then an optional pre-release (dev < a < b < rc < final) and a
local ``+suffix`` that is ignored. Anything else is unparseable, and the caller decides what that
means (the report treats it as "not shown to be at the version").
"""

from __future__ import annotations

import re
from functools import total_ordering

_VERSION = re.compile(
    r"v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>dev|a|alpha|b|beta|c|rc|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:\+[A-Za-z0-9.]+)?",
    re.IGNORECASE,
)
_PRE_RANK = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "c": 3, "rc": 3, "pre": 3,
             "preview": 3}
_FINAL_RANK = 4


@total_ordering
class Version:
    """A parsed version; equal when the release numbers (zero-padded) and pre-release match."""

    __slots__ = ("_key", "text")

    def __init__(self, text: str) -> None:
        match = _VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"not a version: {text!r}")
        release = [int(part) for part in match["release"].split(".")]
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        pre = match["pre"]
        rank = _FINAL_RANK if pre is None else _PRE_RANK[pre.lower()]
        self.text = text.strip()
        self._key = (tuple(release), rank, int(match["pre_n"] or 0))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


def parse_version(text: str | None) -> Version | None:
    """The parsed version, or None when there is none or it is not a version."""
    if not text:
        return None
    try:
        return Version(text)
    except ValueError:
        return None
