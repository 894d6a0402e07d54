"""The last good value of each control document, kept on disk so fail-static survives a restart.

A host that restarts while ``control/defaults`` holds garbage must not fall back to its neti.yml
(which may say reject_all off) when it had read a good fleet default before. The raw text of each
good document is saved and decoded again on load, by the same decoder, so a damaged state file is
reported and ignored like any other bad input.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FILE_NAME = "last-good-controls.json"


def load_last_good(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``{key: {"data": text or None, "version": int or None}}`` and notes on what was unreadable."""
    try:
        saved = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError) as exc:
        return {}, [f"{path}: unreadable ({exc}); no last good controls"]
    if not isinstance(saved, dict):
        return {}, [f"{path}: not a JSON object; no last good controls"]
    entries, notes = {}, []
    for key, entry in saved.items():
        if (isinstance(entry, dict) and isinstance(entry.get("data"), str | None)
                and isinstance(entry.get("version"), int | None)
                and not isinstance(entry.get("version"), bool)):
            entries[str(key)] = {"data": entry.get("data"), "version": entry.get("version")}
        else:
            notes.append(f"{path}: entry {key!r} unreadable; ignored")
    return entries, notes


def save_last_good(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Replace the file atomically: a crash mid-write leaves the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(entries, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".last-good-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
