"""Random identifiers on the request path: request, decision and audit event ids.

All come from the operating system's CSPRNG, as `secrets.token_*` would give them, but
read 4 KiB at a time and encoded once per read: one `os.urandom` call and one hex or
base64 encoding per 256 ids of 16 bytes, then each id is a slice of that text (a system
call, and even an encoding call, cost far more than slicing a string). Each thread has
its own pools, and a forked child drops the parent's, so no two ids share bytes.

Decision and event ids start with the current time (`time_ordered`: the second and its
65,536ths): rows keyed by them are appended at the end of their indexes instead of at
random places, which keeps a growing audit table's inserts cheap (SQLite's pages and
WAL, PostgreSQL's B-trees). `PerSecond` renders the decision JSON's `evaluated_at`
once a second.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable

_CHUNK = 4096
_URLSAFE_CHUNK = 3072  # a multiple of 3: its base64 has no padding, 4,096 characters


class _Pool(threading.local):
    hex_text = ""
    hex_offset = 0
    url_text = ""
    url_offset = 0


_pool = _Pool()


def _forget_after_fork() -> None:
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_after_fork)


def random_hex(count: int) -> str:
    """Like `secrets.token_hex(count)` (`count` at most 4096): 2 * `count` hex digits."""
    pool = _pool
    start = pool.hex_offset
    end = start + 2 * count
    if end > len(pool.hex_text):
        pool.hex_text = os.urandom(_CHUNK).hex()
        start, end = 0, 2 * count
    pool.hex_offset = end
    return pool.hex_text[start:end]


def random_urlsafe(count: int) -> str:
    """Like `secrets.token_urlsafe(count)` (`count` at most 3072): unpadded base64url of
    the same length, ceil(4 * `count` / 3) characters, each carrying 6 random bits."""
    pool = _pool
    length = (4 * count + 2) // 3
    start = pool.url_offset
    end = start + length
    if end > len(pool.url_text):
        pool.url_text = base64.urlsafe_b64encode(os.urandom(_URLSAFE_CHUNK)).decode("ascii")
        start, end = 0, length
    pool.url_offset = end
    return pool.url_text[start:end]


class PerSecond:
    """`render(second)` of the current UNIX second, rendered once per second: a call
    compares the second and renders only when it has changed."""

    __slots__ = ("_last", "_render")

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._last: tuple[int, str] = (-1, "")  # one tuple: threads never see half an update

    def __call__(self) -> str:
        now = int(time.time())
        last = self._last
        if last[0] != now:
            last = self._last = (now, self._render(now))
        return last[1]


def time_ordered() -> str:
    """The current time as 12 hex digits, sortable as text until 2106: the UNIX second
    (8 digits) and its 65,536ths (4 digits, about 15 µs): the prefix of ids that sort by
    creation time.

    The fraction matters to the tables keyed by these ids: a second's rows must not land
    at random places in a second's worth of index. At 12,000 decisions a second, a
    batch of 500 with second-only prefixes touched most of the ~130 index pages of its
    second, in each of three indexes, and SQLite wrote every touched page to its WAL
    and again at the checkpoint: half of what the audit writer wrote. With the fraction,
    a batch's ids follow each other and fill a few pages at the end."""
    return format(int(time.time() * 65536), "012x")


__all__ = ["PerSecond", "random_hex", "random_urlsafe", "time_ordered"]
