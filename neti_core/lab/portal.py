"""A TCP portal from inside a network namespace to an address outside it.

A socket belongs to the network namespace its creating thread was in, and keeps it. So one
process can listen inside a namespace and connect out of another: that lets agents in lab and
test namespaces reach the ZooKeeper (and EC2 API) served on the machine's loopback, without
giving the namespaces a route to the host or touching the host's own firewall.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading

from neti_core.firewall.netns_thread import call_in_netns

log = logging.getLogger(__name__)

def listen_in_netns(name: str | None, host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening socket in namespace ``name`` (None: this thread's own namespace)."""

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        return sock

    return listen() if name is None else call_in_netns(name, listen)


class Portal:
    """Accepts on (host, port) inside ``netns``; pipes each connection to ``target`` outside.

    ``block()`` cuts every connection and refuses new ones until ``unblock()``: a ZooKeeper outage
    for one host, for fault drills where iptables is not available (the lab without root).
    ``freeze()`` keeps the connections open but forwards nothing (a hung member): what is sent
    then is in flight when a later ``block()`` cuts it.
    """

    def __init__(self, netns: str | None, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.netns = netns
        self.listen_address = listen
        self.target = target
        self._listener = listen_in_netns(netns, *listen)
        self._selector = selectors.DefaultSelector()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.blocked = False
        self.frozen = False
        self._thread = threading.Thread(target=self._loop, name=f"portal-{netns}", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def block(self) -> None:
        self.blocked = True
        for sock in list(self._pairs):
            self._close_pair(sock)

    def unblock(self) -> None:
        self.blocked = self.frozen = False
        with self._lock:
            for sock in self._pairs:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.register(sock, selectors.EVENT_READ)

    def freeze(self) -> None:
        self.frozen = True
        with self._lock:
            for sock in self._pairs:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)

    def start(self) -> Portal:
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopped.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._pump(sock)

    def _accept(self) -> None:
        try:
            inner, _ = self._listener.accept()
        except OSError:
            return
        if self.blocked:
            inner.close()
            return
        try:
            outer = socket.create_connection(self.target, timeout=5)
        except OSError as exc:
            log.debug("portal %s: cannot reach %s: %s", self.netns, self.target, exc)
            inner.close()
            return
        for sock in (inner, outer):
            sock.setblocking(False)
        with self._lock:
            self._pairs[inner], self._pairs[outer] = outer, inner
        if not self.frozen:
            self._selector.register(inner, selectors.EVENT_READ)
            self._selector.register(outer, selectors.EVENT_READ)

    def _pump(self, source: socket.socket) -> None:
        peer = self._pairs.get(source)
        try:
            data = source.recv(65536)
            if data and peer is not None:
                peer.setblocking(True)
                peer.sendall(data)
                peer.setblocking(False)
                return
        except OSError:
            pass
        self._close_pair(source)

    def _close_pair(self, sock: socket.socket) -> None:
        with self._lock:
            peer = self._pairs.pop(sock, None)
            if peer is not None:
                self._pairs.pop(peer, None)
        for s in (sock, peer):
            if s is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(2)
        for sock in list(self._pairs):
            self._close_pair(sock)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        self._selector.close()

    def __enter__(self) -> Portal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
