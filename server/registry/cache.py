"""The registry answers cache: five minutes, in process or in Redis.

    cache = MemoryCache()                    # the default: per process
    cache = RedisCache(url, prefix="idgw")   # IDGW_REDIS_URL: shared by every worker

Values are the records' JSON forms; keys are `<prefix>:registry:<type>:<hash>`, where
the hash is a SHA-256 of the national id, so Redis never holds the id itself. In
regulated mode the records are minimised before they are cached.

A cache that fails (Redis down) is logged and treated as a miss: the registry is asked
instead, and the request still gets its answer. After a failure `RedisCache` leaves
Redis alone for `retry_after_seconds` (1 s): a Redis that accepts connections but does
not answer would otherwise cost every lookup one timeout per cache call (a get, a set,
the subject index's get and set: 2 s, nearly all of the evidence deadline of a decision).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog

from server.json_codec import dumps, loads

logger = structlog.get_logger("idgw.registry")

CACHE_TTL_SECONDS = 300


class CacheError(Exception):
    """The cache could not be read or written."""


class RegistryCache(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def set(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None: ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def close(self) -> None: ...


def cache_key(registry_type: str, national_id: str) -> str:
    digest = hashlib.sha256(national_id.encode("utf-8")).hexdigest()
    return f"registry:{registry_type}:{digest}"


class MemoryCache:
    """Entries with a deadline on the monotonic clock, in the order they were last set.

    With one TTL for every entry (the registry service's five minutes) that is the order
    they expire in, so each write first drops the expired entries at the front: the
    cache holds what the last TTL looked up, not every subject index of the last hours
    (each user's lookups add one, read again only by an erasure). At `max_entries` the
    expired ones of other TTLs go too, then the oldest entry.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, max_entries: int = 100_000) -> None:
        self._monotonic = monotonic
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if deadline <= self._monotonic():
            del self._entries[key]
            return None
        return dict(value)

    async def set(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        now = self._monotonic()
        while self._entries and next(iter(self._entries.values()))[0] <= now:  # bounded by the entries
            self._entries.popitem(last=False)
        if len(self._entries) >= self.max_entries:
            self._entries = OrderedDict((k, e) for k, e in self._entries.items() if e[0] > now)
            if len(self._entries) >= self.max_entries:  # still full: drop the oldest entry
                self._entries.popitem(last=False)
        self._entries[key] = (now + ttl_seconds, dict(value))
        self._entries.move_to_end(key)

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """The cache in Redis (`redis.asyncio`), entries expiring by Redis's own TTL."""

    def __init__(
        self,
        url: str,
        prefix: str = "idgw",
        timeout_seconds: float = 0.5,
        retry_after_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.retry_after_seconds = retry_after_seconds
        self._monotonic = monotonic
        self._failed_at = float("-inf")
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def _call(self, operation: str, command: Callable[[], Awaitable[Any]]) -> Any:
        if self._monotonic() - self._failed_at < self.retry_after_seconds:
            raise CacheError(f"redis {operation} skipped: redis failed less than "
                             f"{self.retry_after_seconds:g} s ago")
        try:
            return await command()
        except self._errors as exc:
            self._failed_at = self._monotonic()
            raise CacheError(f"redis {operation} failed: {exc}") from None

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self._call("get", lambda: self.client.get(self._key(key)))
        if raw is None:
            return None
        value: dict[str, Any] = loads(raw)
        return value

    async def set(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        text = dumps(value)
        await self._call("set", lambda: self.client.set(self._key(key), text, ex=ttl_seconds))

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        await self._call("delete", lambda: self.client.delete(*(self._key(k) for k in keys)))

    async def ttl(self, key: str) -> int:
        """Seconds left before `key` expires (-2: absent), for tests and operators."""
        remaining: int = await self.client.ttl(self._key(key))
        return remaining

    async def close(self) -> None:
        await self.client.aclose()


__all__ = ["CACHE_TTL_SECONDS", "CacheError", "MemoryCache", "RedisCache", "RegistryCache", "cache_key"]
