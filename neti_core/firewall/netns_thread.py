"""Acting inside a network namespace from Python: a thread that has ``setns()``-ed into it.

:func:`call_in_netns` and :class:`NetnsWorker` run callables on a thread that entered the namespace.
Sockets, subprocesses and libiptc handles created on that thread belong to the namespace; the rest
of the process is unaffected. This is what lets one process (the lab, a test, ``neti check
--netns``) drive firewalls in many namespaces without touching the host's own. It lives beside
the firewall because :class:`~neti_core.firewall.base.NamespacedBackend` needs it; creating and
wiring namespaces is the lab's business (:mod:`neti_core.lab.netns`).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from neti_core.errors import NetiError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetnsError(NetiError):
    """A namespace operation failed (no root, name taken, ip refused)."""


def enter(name: str) -> None:
    """Move the *calling thread* into namespace ``name`` (only use on a thread you own)."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns = getattr(os, "setns", None)
        if setns is not None:
            setns(fd, CLONE_NEWNET)
        elif _libc().setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise NetnsError(f"setns({name}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def call_in_netns(name: str, fn: Callable[..., T], *args: Any, timeout: float | None = None,
                  **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` on a fresh thread inside ``name``; return or raise what it does."""
    values: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            enter(name)
            values.append(fn(*args, **kwargs))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"netns:{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise NetnsError(f"call in {name} still running after {timeout}s")
    if errors:
        raise errors[0]
    return values[0]


def start_in_netns(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
    """Start ``fn`` on a daemon thread inside ``name`` (servers, listeners); returns the thread."""
    def target() -> None:
        enter(name)
        fn(*args, **kwargs)

    thread = threading.Thread(target=target, name=f"netns:{name}", daemon=True)
    thread.start()
    return thread


class NetnsWorker:
    """One long-lived thread pinned inside a namespace; ``call`` runs callables on it in order.

    Cheaper than a thread per call, and keeps per-thread state (a libiptc handle) in one place.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns:{name}",
                                        initializer=enter, initargs=(name,))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
