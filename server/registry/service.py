"""Registry lookups as the gateway makes them: validated, cached, bounded, measured.

`RegistryService` is made by `create_app` as `app.state.registry`:

    record = await registry.citizen("123456789")     # CitizenRecord
    record = await registry.sanctions("123456789")   # SanctionsRecord
    await registry.evict("123456789")                # forget both cached answers

Each lookup validates the national id (400), answers from the cache when it can (five
minutes), else calls the client under `IDGW_REGISTRY_TIMEOUT_MS`: a timeout is a 504
`registry_unavailable`, a registry error a 502 with the same code (`RegistryUnavailable`,
an `ApiError`, so a handler can let it through). `registry_call_duration_seconds` and
`registry_call_errors_total` count the calls that reach a registry. In regulated mode the
citizen record is minimised before it is cached or returned.

Callers that know whose data they look up pass `subject=` so that the answers can be
evicted with the user's other data (`evict_subject`, used on erasure).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import structlog

from engine.clock import Clock
from server.errors import ApiError
from server.metrics import REGISTRY_CALL_DURATION, REGISTRY_CALL_ERRORS
from server.registry.cache import (
    CACHE_TTL_SECONDS,
    CacheError,
    MemoryCache,
    RedisCache,
    RegistryCache,
    cache_key,
)
from server.registry.clients import (
    CitizenRegistry,
    MockCitizenRegistry,
    MockSanctionsRegistry,
    RegistryError,
    SanctionsRegistry,
)
from server.registry.records import CitizenRecord, SanctionsRecord, check_national_id
from server.settings import Settings

logger = structlog.get_logger("idgw.registry")

R = TypeVar("R", CitizenRecord, SanctionsRecord)

CITIZEN = "citizen"
SANCTIONS = "sanctions"
REGISTRY_TYPES = (CITIZEN, SANCTIONS)


class RegistryUnavailable(ApiError):
    """A registry did not answer in time (504) or answered with an error (502)."""

    def __init__(self, registry_type: str, description: str, status_code: int = 504) -> None:
        super().__init__(status_code, description, error="registry_unavailable",
                         extra={"registry_type": registry_type})
        self.registry_type = registry_type


def _subject_key(subject: str) -> str:
    return "registry:subject:" + hashlib.sha256(subject.encode("utf-8")).hexdigest()


class RegistryService:
    """The citizen and sanctions registries behind one cache."""

    def __init__(
        self,
        citizen_client: CitizenRegistry,
        sanctions_client: SanctionsRegistry,
        *,
        cache: RegistryCache | None = None,
        timeout_ms: float = 2000,
        regulated: bool = False,
        clock: Clock,
        cache_ttl_seconds: int = CACHE_TTL_SECONDS,
    ) -> None:
        self.citizen_client = citizen_client
        self.sanctions_client = sanctions_client
        self.cache: RegistryCache = cache if cache is not None else MemoryCache()
        self.timeout_ms = timeout_ms
        self.regulated = regulated
        self.clock = clock
        self.cache_ttl_seconds = cache_ttl_seconds

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock, *, cache_prefix: str = "idgw") -> RegistryService:
        """Mock clients with `IDGW_REGISTRY_LATENCY_MS`; Redis when `IDGW_REDIS_URL` is set."""
        cache: RegistryCache = (RedisCache(settings.redis_url, prefix=cache_prefix) if settings.redis_url
                                else MemoryCache())
        return cls(
            MockCitizenRegistry(settings.registry.latency_ms, settings.registry.failure_rate),
            MockSanctionsRegistry(settings.registry.latency_ms, settings.registry.failure_rate),
            cache=cache, timeout_ms=settings.registry.timeout_ms, regulated=settings.regulated_mode,
            clock=clock,
        )

    @property
    def calls(self) -> dict[str, int]:
        """Lookups that reached each client (cache hits excluded), when it counts them."""
        return {CITIZEN: getattr(self.citizen_client, "calls", 0),
                SANCTIONS: getattr(self.sanctions_client, "calls", 0)}

    async def citizen(self, national_id: str, *, subject: str | None = None) -> CitizenRecord:
        """The citizen record (minimised in regulated mode; `is_over_18` always kept)."""

        async def fetch(now: datetime) -> CitizenRecord:
            record = await self.citizen_client.lookup(national_id, now)
            return record.minimised() if self.regulated else record

        return await self._lookup(CITIZEN, national_id, subject, fetch, CitizenRecord.from_json)

    async def sanctions(self, national_id: str, *, subject: str | None = None) -> SanctionsRecord:
        """The sanctions record: listed, politically exposed, the list it comes from."""

        async def fetch(now: datetime) -> SanctionsRecord:
            return await self.sanctions_client.lookup(national_id, now)

        return await self._lookup(SANCTIONS, national_id, subject, fetch, SanctionsRecord.from_json)

    async def evict(self, national_id: str) -> None:
        """Forget the cached answers for `national_id` (both registries)."""
        await self._cache_delete([cache_key(t, national_id) for t in REGISTRY_TYPES])

    async def evict_subject(self, subject: str) -> int:
        """Forget every cached answer looked up with `subject=`; returns how many keys."""
        index = _subject_key(subject)
        entry = await self._cache_get(index)
        keys = list(entry.get("keys", [])) if entry else []
        await self._cache_delete([*keys, index])
        return len(keys)

    async def close(self) -> None:
        await self.cache.close()

    # -- internals ----------------------------------------------------------------------------

    async def _lookup(
        self,
        registry_type: str,
        national_id: str,
        subject: str | None,
        fetch: Callable[[datetime], Awaitable[R]],
        parse: Callable[[dict[str, Any]], R],
    ) -> R:
        check_national_id(national_id)
        key = cache_key(registry_type, national_id)
        cached = await self._cache_get(key)
        if cached is not None:
            record = parse(cached)
        else:
            record = await self._call(registry_type, fetch)
            await self._cache_set(key, record.to_json(), self.cache_ttl_seconds)
        if subject is not None:
            await self._remember(subject, key)
        return record

    async def _call(self, registry_type: str, fetch: Callable[[datetime], Awaitable[R]]) -> R:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):
                return await fetch(self.clock())
        except TimeoutError:
            REGISTRY_CALL_ERRORS.labels(registry_type).inc()
            logger.warning("registry_timeout", registry_type=registry_type, timeout_ms=self.timeout_ms)
            raise RegistryUnavailable(
                registry_type, f"the {registry_type} registry did not answer within {self.timeout_ms:g} ms",
            ) from None
        except RegistryError as exc:
            REGISTRY_CALL_ERRORS.labels(registry_type).inc()
            logger.warning("registry_error", registry_type=registry_type, error=str(exc))
            raise RegistryUnavailable(
                registry_type, f"the {registry_type} registry answered with an error", status_code=502,
            ) from None
        finally:
            REGISTRY_CALL_DURATION.labels(registry_type).observe(time.perf_counter() - started)

    async def _remember(self, subject: str, key: str) -> None:
        index = _subject_key(subject)
        entry = await self._cache_get(index)
        keys = list(entry.get("keys", [])) if entry else []
        if key not in keys:
            await self._cache_set(index, {"keys": [*keys, key]}, self.cache_ttl_seconds)

    async def _cache_get(self, key: str) -> dict[str, Any] | None:
        try:
            return await self.cache.get(key)
        except CacheError as exc:
            logger.warning("registry_cache_unavailable", operation="get", error=str(exc))
            return None

    async def _cache_set(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        try:
            await self.cache.set(key, value, ttl_seconds)
        except CacheError as exc:
            logger.warning("registry_cache_unavailable", operation="set", error=str(exc))

    async def _cache_delete(self, keys: list[str]) -> None:
        try:
            await self.cache.delete(keys)
        except CacheError as exc:
            logger.warning("registry_cache_unavailable", operation="delete", error=str(exc))


__all__ = ["CITIZEN", "REGISTRY_TYPES", "SANCTIONS", "RegistryService", "RegistryUnavailable"]
