"""Random identifiers on the request path: request ids and decision ids.

Both come from the operating system's CSPRNG, as `secrets.token_*` would give them, but
read 4 KiB at a time: one `os.urandom` call per 256 ids of 16 bytes instead of one per
id (a system call costs far more than slicing a buffer). Each thread has its own
buffer, and a forked child drops the parent's, so no two ids share bytes.
"""

from __future__ import annotations

import binascii
import os
import threading

_CHUNK = 4096
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class _Pool(threading.local):
    buffer = b""
    offset = 0


_pool = _Pool()


def _forget_after_fork() -> None:
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_after_fork)


def random_bytes(count: int) -> bytes:
    """`count` (at most 4096) bytes of `os.urandom`, never handed out twice."""
    pool = _pool
    start = pool.offset
    end = start + count
    if end > len(pool.buffer):
        pool.buffer = os.urandom(_CHUNK)
        start, end = 0, count
    pool.offset = end
    return pool.buffer[start:end]


def random_hex(count: int) -> str:
    """Like `secrets.token_hex(count)`."""
    return random_bytes(count).hex()


def random_urlsafe(count: int) -> str:
    """Like `secrets.token_urlsafe(count)`: unpadded base64url."""
    encoded = binascii.b2a_base64(random_bytes(count), newline=False).rstrip(b"=")
    return encoded.translate(_URLSAFE).decode("ascii")


__all__ = ["random_bytes", "random_hex", "random_urlsafe"]
