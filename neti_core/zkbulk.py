"""Thousands of ZooKeeper reads in a handful of requests: multi-read, and watches armed in bulk.

Why not kazoo's ``get_async`` per node: its connection thread sends one request per wake-up (a
``select``, a ``send`` and a one-byte ``recv`` each) and answers each with its own result object,
so 20,000 pipelined reads took 2.4 s on the project's 2-core machine, all of it on the GIL that
the console also paints with. ZooKeeper 3.6+ answers many reads in one request (``multiRead``,
opcode 22): the same 20,000 nodes in 20 requests took 0.07 s. kazoo 2.11 has no multi-read, so
the two request types below are written in ZooKeeper's wire format and queued with kazoo's own
``_call``, on its connection, session and thread.

A multi-read cannot set watches (the server drops the flag), so watches are armed afterwards with
``setWatches`` (opcode 101, what ZooKeeper's own client sends after a reconnection): it names a
zxid, and the server fires at once the watch of every node changed since then (or gone), and
registers the rest. Naming a zxid seen *before* the read makes the pair race-free: a change that
the read may have missed fires its watch, and the caller reads the node again.

Both reach into kazoo 2.11's client (``_call``, ``_data_watchers``, ``last_zxid``).
:func:`read_many` falls back to pipelined ``get_async`` on a client with a chroot, and on a server
without multi-read: such a server answers "unimplemented" and drops the connection, so that call
fails with ConnectionLoss and, once kazoo has reconnected, every later one reads node by node.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import EXCEPTIONS, NoNodeError, UnimplementedError
from kazoo.protocol.serialization import (
    GetData,
    int_struct,
    long_struct,
    multiheader_struct,
    stat_struct,
)

# Paths per multi-read request: ~45 KB asked, ~0.5 MB answered for statuses (ZooKeeper refuses a
# request over jute.maxbuffer, 1 MB by default).
READ_BATCH = 1000
# Bytes of paths per setWatches request: ZooKeeper's own client keeps them under 128 KiB.
WATCH_BATCH_BYTES = 128 * 1024
_TIMEOUT = 30.0
_GET_DATA = GetData.type
_NO_NODE = NoNodeError.code
# Clients whose server answered a multi-read with "unimplemented" (ZooKeeper before 3.6).
_WITHOUT_MULTI_READ: weakref.WeakSet[KazooClient] = weakref.WeakSet()


class _MultiRead:
    """``multiRead`` of getData ops: each path's data, None for a node that is gone, or an error."""

    type = 22

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths

    def serialize(self) -> bytes:
        op: bytes = multiheader_struct.pack(_GET_DATA, False, -1)
        parts = [op + _string(path) + b"\0" for path in self.paths]  # b"\0": watch = false
        end: bytes = multiheader_struct.pack(-1, True, -1)
        return b"".join(parts) + end

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> list[bytes | Exception | None]:
        header, length, stat = multiheader_struct.unpack_from, int_struct.unpack_from, stat_struct.size
        results: list[bytes | Exception | None] = []
        while True:
            kind, done, _err = header(buffer, offset)
            offset += multiheader_struct.size
            if done:
                return results
            if kind == -1:  # this op failed: its error code follows
                code = length(buffer, offset)[0]
                offset += int_struct.size
                results.append(None if code == _NO_NODE else EXCEPTIONS[code]())
                continue
            size = length(buffer, offset)[0]
            offset += int_struct.size
            results.append(bytes(buffer[offset:offset + size]) if size >= 0 else b"")
            offset += max(size, 0) + stat


class _SetWatches:
    """``setWatches``: arm ``watch`` on every path, firing at once for those changed since ``zxid``."""

    type = 101

    def __init__(self, client: KazooClient, zxid: int, paths: Sequence[str],
                 watch: Callable[..., Any]) -> None:
        self.client, self.zxid, self.paths, self.watch = client, zxid, paths, watch

    def serialize(self) -> bytes:
        # Called on kazoo's connection thread just before the request is sent: the watcher goes into
        # kazoo's table there, before any event the request fires can arrive, and on the one thread
        # that otherwise changes that table.
        for path in self.paths:
            self.client._data_watchers[path].add(self.watch)
        head: bytes = long_struct.pack(self.zxid) + int_struct.pack(len(self.paths))
        no_more: bytes = int_struct.pack(0) + int_struct.pack(0)  # no exist watches, no child watches
        return head + b"".join(_string(path) for path in self.paths) + no_more

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True


def _string(text: str) -> bytes:
    encoded = text.encode()
    return bytes(int_struct.pack(len(encoded))) + encoded


def _call(client: KazooClient, request: Any) -> Any:
    result = client.handler.async_result()
    client._call(request, result)
    return result


def _bulk_capable(client: KazooClient) -> bool:
    return not client.chroot and hasattr(client, "_call") and client not in _WITHOUT_MULTI_READ


def read_many(client: KazooClient, paths: Sequence[str], *,
              timeout: float = _TIMEOUT) -> list[bytes | None]:
    """Each path's data, in order; None where the node does not exist. Other errors (no read
    permission, the connection lost) raise, as kazoo's ``get`` would."""
    if not paths:
        return []
    if _bulk_capable(client):
        pending = [_call(client, _MultiRead(paths[start:start + READ_BATCH]))
                   for start in range(0, len(paths), READ_BATCH)]
        try:
            replies = [result.get(timeout=timeout) for result in pending]
        except UnimplementedError:  # a server before 3.6: remember, and read one by one
            _WITHOUT_MULTI_READ.add(client)
        else:
            values: list[bytes | None] = []
            for reply in replies:
                for value in reply:
                    if isinstance(value, Exception):
                        raise value
                    values.append(value)
            return values
    return _read_one_by_one(client, paths, timeout)


def _read_one_by_one(client: KazooClient, paths: Sequence[str], timeout: float) -> list[bytes | None]:
    results = [client.get_async(path) for path in paths]
    values: list[bytes | None] = []
    for result in results:
        try:
            values.append(result.get(timeout=timeout)[0])
        except NoNodeError:
            values.append(None)
    return values


def arm_data_watches(client: KazooClient, paths: Sequence[str], watch: Callable[..., Any],
                     since_zxid: int, *, timeout: float = _TIMEOUT) -> None:
    """A one-shot data watch on every path, as ``get(path, watch=watch)`` would leave, for nodes
    read after ``since_zxid``: the watch of any node changed since (or deleted) fires at once."""
    batch: list[str] = []
    size = 0
    pending = []
    for path in paths:
        batch.append(path)
        size += len(path) + 4
        if size >= WATCH_BATCH_BYTES:
            pending.append(_call(client, _SetWatches(client, since_zxid, batch, watch)))
            batch, size = [], 0
    if batch:
        pending.append(_call(client, _SetWatches(client, since_zxid, batch, watch)))
    for result in pending:
        result.get(timeout=timeout)


def last_zxid(client: KazooClient) -> int:
    """The newest transaction id this session has seen in a reply: every read after it sees at
    least that state (ZooKeeper orders a session's requests)."""
    return int(getattr(client, "last_zxid", 0) or 0)
