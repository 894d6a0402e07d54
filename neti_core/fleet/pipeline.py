"""Many ZooKeeper reads queued at once, waking kazoo's connection thread once instead of per read.

kazoo's ``get_async`` appends a request to the client's queue and writes one byte to a socketpair
to wake the connection thread, which sends one request per byte. Measured on the project's 2-core
machine: 10,000 ``get_async`` calls occupy the calling thread 2.3-3.3 s (each write hands the GIL
to the connection thread), queued together 0.15 s; the replies arrive no slower. The console's
full read issues ~20,000 of them at 10,000 hosts from the one thread that also feeds the screen,
so it queues them here. This reaches into kazoo 2.11's client (``_queue``, ``_connection``) and
falls back to ``get_async`` whenever those are not as expected or the client is not connected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError
from kazoo.protocol.serialization import GetData


def get_many(client: KazooClient, paths: Sequence[str],
             watch: Callable[..., Any] | None = None) -> list[Any]:
    """``client.get_async(path, watch)`` for every path, in order (kazoo IAsyncResults)."""
    queue = getattr(client, "_queue", None)
    write_sock = getattr(getattr(client, "_connection", None), "_write_sock", None)
    if queue is None or write_sock is None or client.chroot or not client.connected or not paths:
        return [client.get_async(path, watch=watch) for path in paths]
    results = []
    for path in paths:
        result = client.handler.async_result()
        queue.append((GetData(path, watch), result))
        results.append(result)
    try:
        write_sock.sendall(b"\0" * len(paths))  # one byte per request, as kazoo's _call writes
    except OSError:  # closed under us: kazoo fails what is queued when it closes; fail the rest
        for result in results:
            if not result.ready():
                result.set_exception(ConnectionClosedError("Connection has been closed"))
    return results
