"""Network namespaces for tests, benchmarks and the lab: create, wire, run things inside, clean up.

Two ways to act inside a namespace: a command, with :func:`run` (``ip netns exec NAME ...``), a
separate process fully inside; or a Python callable on a thread that has ``setns()``-ed into it
(:func:`call_in_netns`, :class:`NetnsWorker`, re-exported from
:mod:`neti_core.firewall.netns_thread`, where the firewall's namespaced wrapper needs them).

Namespaces are created with ``ip netns add`` (a bind mount under /run/netns). Interfaces are
created directly inside their namespaces (``ip -n``), never in the caller's, so nothing appears in
the host namespace even for a moment and names only need to be unique per namespace.
:class:`Netns` groups what one user created so it can all be removed, even after a failure.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from neti_core.firewall.netns_thread import (
    NETNS_DIR,
    NetnsError,
    NetnsWorker,
    call_in_netns,
    enter,
    start_in_netns,
)

__all__ = ["NETNS_DIR", "NetnsError", "NetnsWorker", "call_in_netns", "enter", "start_in_netns"]

_TIMEOUT = 30.0
T = TypeVar("T")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create(name: str) -> None:
    """Create namespace ``name`` with its loopback up."""
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    """Delete namespace ``name`` if it exists (interfaces inside go with it)."""
    if exists(name):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=_TIMEOUT)


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_TIMEOUT)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def run(name: str, argv: Sequence[str], *, check: bool = True, timeout: float = _TIMEOUT,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace ``name``; with ``check`` a failure raises NetnsError."""
    result = subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True,
                            timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise NetnsError(f"[{name}] {' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result


@dataclass
class Namespace:
    """A handle on one namespace with the operations wiring needs."""

    name: str

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run(self.name, argv, **kwargs)

    def sh(self, script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """A shell snippet inside the namespace (for test set-up steps written as commands)."""
        return run(self.name, ["sh", "-ec", script], **kwargs)

    def ip(self, *args: str) -> str:
        return _ip("-n", self.name, *args)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call_in_netns(self.name, fn, *args, **kwargs)

    def add_address(self, iface: str, cidr: str) -> None:
        self.ip("addr", "add", cidr, "dev", iface)

    def up(self, iface: str) -> None:
        self.ip("link", "set", iface, "up")

    def add_route(self, destination: str, via: str) -> None:
        self.ip("route", "add", destination, "via", via)

    def sysctl(self, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")

        def write() -> None:
            Path(path).write_text(value)  # /proc/sys/net follows the calling thread's namespace

        self.call(write)


@dataclass
class Netns:
    """Namespaces created together under one random prefix and removed together.

    Use as a context manager (or call :meth:`close`): every namespace made through it is deleted
    on exit, including after a failure half-way through building a network.
    """

    prefix: str = field(default_factory=lambda: f"nt{secrets.token_hex(3)}")
    namespaces: list[Namespace] = field(default_factory=list)

    def namespace(self, short: str) -> Namespace:
        """Create ``<prefix>-<short>`` (loopback up) and remember it for cleanup."""
        ns = Namespace(f"{self.prefix}-{short}")
        create(ns.name)
        self.namespaces.append(ns)
        return ns

    def bridge(self, ns: Namespace, name: str) -> None:
        ns.ip("link", "add", name, "type", "bridge")
        ns.up(name)

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair with one end in each namespace; both ends up."""
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.up(a_if)
        b.up(b_if)

    def attach(self, ns: Namespace, iface: str, bridge: str) -> None:
        ns.ip("link", "set", iface, "master", bridge)

    def close(self) -> None:
        errors = []
        for ns in reversed(self.namespaces):
            try:
                delete(ns.name)
            except Exception as exc:  # keep going: leave as little behind as possible
                errors.append(f"{ns.name}: {exc}")
        self.namespaces.clear()
        if errors:
            raise NetnsError("could not delete: " + "; ".join(errors))

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def temporary_namespace(prefix: str = "neti") -> Iterator[Namespace]:
    """One throw-away namespace, deleted on exit (benchmarks, one-off checks)."""
    with Netns(prefix=f"{prefix}{secrets.token_hex(3)}") as group:
        yield group.namespace("ns")
