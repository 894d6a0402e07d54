"""Readable tables for people, JSON for scripts: the two output forms every ``neti`` command has."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns sized to their widest cell; None shows as '-', booleans as yes/no."""
    text_rows = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in text_rows]
    return "\n".join(lines)


def print_json(document: Any, stream: TextIO | None = None) -> None:
    """One JSON document on one line (sorted keys), so scripts can pipe it into jq."""
    print(json.dumps(document, sort_keys=True, default=str), file=stream or sys.stdout)


def percent(part: int, whole: int) -> float:
    """A percentage with one decimal; 0 of 0 is 0 %, not a division error."""
    return round(100.0 * part / whole, 1) if whole else 0.0
