"""libiptc helpers for the iptc backend: the xtables lock, raw DNAT entries, normalised read-back.

Kept apart from the backend's apply/read logic so each stays readable; nothing here imports
python-iptables itself (the backend passes its module in), so importing this never needs root.
"""

from __future__ import annotations

import ctypes as ct
import errno
import fcntl
import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from socket import inet_ntoa
from typing import Any

from neti_core.firewall.base import FirewallApplyError, FirewallUnavailableError

_MARK_DST, _MARK_TO = "203.0.113.77", "198.51.100.99"  # template markers, found and patched by offset
# Fields of struct ipt_entry the kernel fills in (nfcache, comefrom, counters): ignored in compares.
_KERNEL_FIELDS = ((84, 88), (92, 112))


def _inherited_lock(path: str) -> int | None:
    """A copy of stdin when stdin is the lock file itself: the systemd unit hands it over with
    ``StandardInput=file:/run/xtables.lock`` (opened by systemd as root), because the file is
    root's (0600) and the agent runs as an unprivileged user."""
    try:
        mine, lock = os.fstat(0), os.stat(path)
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (lock.st_dev, lock.st_ino):
        return None
    return os.dup(0)


def _open_lock(path: str) -> int:
    try:
        return os.open(path, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o600)  # flock needs no write
    except OSError as exc:
        inherited = _inherited_lock(path)
        if inherited is not None:
            return inherited
        hint = " (run under conf/neti-agent.service, which passes the lock as stdin)" \
            if exc.errno == errno.EACCES else ""
        raise FirewallUnavailableError(f"cannot open {path}: {exc.strerror}{hint}") from exc


@contextmanager
def xtables_lock(wait_seconds: float) -> Iterator[None]:
    """Hold the lock ``iptables-legacy -w`` uses, waiting up to ``wait_seconds``."""
    path = os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock")
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FirewallApplyError(f"xtables lock {path} held for {wait_seconds}s") from None
                time.sleep(0.01)
        yield
    finally:
        # explicit unlock: an inherited lock's open file description outlives this descriptor
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class DnatTemplate:
    """A DNAT ``ipt_entry`` built once by python-iptables; entries for other addresses are patched copies."""

    def __init__(self, iptc: Any) -> None:
        rule = iptc.Rule()
        rule.dst = _MARK_DST
        rule.create_target("DNAT").to_destination = _MARK_TO
        raw = bytearray(bytes(rule.rule))
        target_offset = struct.unpack_from("=H", raw, 88)[0]
        name = target_offset + 2  # struct xt_entry_target: u16 size, char name[29], u8 revision
        end = raw.index(0, name) + 1
        # The kernel copies back only the name's bytes and NUL; the rest of the field is whatever
        # libiptc's buffer held, so it is ignored in comparisons (and zeroed in what we write).
        raw[end:name + 29] = bytes(name + 29 - end)
        dst, to = socket.inet_aton(_MARK_DST), socket.inet_aton(_MARK_TO)
        if raw[4:8] != dst:
            raise FirewallUnavailableError("unexpected ipt_entry layout from python-iptables")
        self.to_offsets = [i for i in range(target_offset, len(raw) - 3) if raw[i:i + 4] == to]
        if not self.to_offsets:
            raise FirewallUnavailableError("cannot find the DNAT address in python-iptables' entry")
        self.size = len(raw)
        self.variable = [(4, 8), *_KERNEL_FIELDS, (end, name + 29),
                         *((o, o + 4) for o in self.to_offsets)]
        # Comparing as integers (one AND, one ==) is the cheapest whole-entry check in Python.
        mask = bytearray(b"\xff" * self.size)
        for first, last in self.variable:
            mask[first:last] = bytes(last - first)
        self.mask_int = int.from_bytes(mask, "big")
        self.masked_int = int.from_bytes(raw, "big") & self.mask_int
        self.buffer = raw  # patched in place; the ctypes view below shares its memory
        self.entry = ct.cast((ct.c_ubyte * self.size).from_buffer(self.buffer),
                             ct.POINTER(iptc.ip4tc.ipt_entry))

    def fill(self, overlay: IPv4Address, target: IPv4Address) -> Any:
        """The template pointing ``overlay`` at ``target`` (valid until the next fill)."""
        self.buffer[4:8] = overlay.packed
        packed = target.packed
        for offset in self.to_offsets:
            self.buffer[offset:offset + 4] = packed
        return self.entry

    def decode(self, data: bytes) -> str | None:
        """The canonical spec when ``data`` is a plain Neti DNAT entry, else None."""
        if len(data) != self.size or int.from_bytes(data, "big") & self.mask_int != self.masked_int:
            return None
        to = self.to_offsets[0]
        # inet_ntoa prints exactly what str(IPv4Address) prints, 10x faster (see dnat_spec).
        return f"-d {inet_ntoa(data[4:8])}/32 -j DNAT --to-destination {inet_ntoa(data[to:to + 4])}"


def _address_spec(flag: str, text: str) -> list[str]:
    """python-iptables' ``1.2.3.0/255.255.255.0`` (maybe ``!``-prefixed) → ``-s 1.2.3.0/24``."""
    inverted = text.startswith("!")
    network = IPv4Network(text.lstrip("!"))
    if network.prefixlen == 0 and not inverted:
        return []
    return (["!"] if inverted else []) + [flag, str(network)]


def rule_spec(rule: Any) -> str:
    """A python-iptables Rule as ``iptables-save`` prints it (the normalised read-back)."""
    parts = _address_spec("-s", rule.src) + _address_spec("-d", rule.dst)
    for flag, iface in (("-i", rule.in_interface), ("-o", rule.out_interface)):
        if iface:
            parts += (["!", flag, iface[1:]] if iface.startswith("!") else [flag, iface])
    if rule.protocol not in ("ip", "0", None):
        parts += ["-p", rule.protocol]
    for match in rule.matches:
        parts += ["-m", match.name]
        for key, raw in match.get_all_parameters().items():
            values = list(raw)
            parts += (["!", f"--{key}", *values[1:]] if values[:1] == ["!"] else [f"--{key}", *values])
    target = rule.target
    parts += ["-g" if target.goto else "-j", target.name]
    for key, values in target.get_all_parameters().items():
        parts += [f"--{key}", *values]
    return " ".join(parts)
