"""Reading Neti's table through libnftables in-process, with ``nft`` as the fallback.

Why: the drift check reads the whole table (10,000 set and map elements) every resync, and the
``nft`` process start is a large share of that on a busy 2-core host (bench/apply.py: a read in
process took 76-106 ms where ``nft -j list table`` took 123-135 ms in the same run). The library
is ``libnftables.so.1`` from the same Debian package as the ``nft`` command (``libnftables1`` is a
dependency of ``nftables``), so this adds no packaging. Writes stay with ``nft -f -``: a process
with a timeout, whose refusal text is the operator-facing error.

A context is made per call in the calling thread, so its netlink socket is in that thread's network
namespace (a NamespacedBackend's pinned thread) and no context is shared between threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON


class NftLibraryError(Exception):
    """libnftables refused the command; the text is its error output."""


@cache
def library() -> ctypes.CDLL | None:
    """libnftables, or None when it cannot be loaded (then callers run ``nft``)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    return lib


def run_json(lib: ctypes.CDLL, command: str) -> str:
    """Run one read command with JSON output; NftLibraryError carries the library's error text."""
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NftLibraryError("nft_ctx_new failed")
    try:
        lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        code = lib.nft_run_cmd_from_buffer(ctx, command.encode())
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        if code != 0:
            raise NftLibraryError((lib.nft_ctx_get_error_buffer(ctx) or b"").decode().strip())
        return output
    finally:
        lib.nft_ctx_free(ctx)
