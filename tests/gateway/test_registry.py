"""Registries: the documented test ids, national id validation, the five-minute cache
(memory, and Redis at 127.0.0.1:6379), timeouts and injected failures (504/502
`registry_unavailable`, still audited), metrics, regulated-mode minimisation.

The Redis tests use a key prefix of their own per run. Without a reachable Redis they
skip, unless `IDGW_TEST_REQUIRE_SERVICES=1`, where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime

import pytest

from server.errors import ApiError
from server.metrics import REGISTRY
from server.registry import (
    MockCitizenRegistry,
    MockSanctionsRegistry,
    RegistryService,
    RegistryUnavailable,
)
from server.registry.cache import MemoryCache, RedisCache, cache_key
from server.registry.clients import citizen_facts, sanctions_facts
from server.settings import Settings
from tests.gateway.conftest import FakeClock, GatewayClient, start_gateway

REDIS_URL = os.environ.get("IDGW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def service(*, regulated: bool = False, latency_ms: float = 0, timeout_ms: float = 2000,
            cache: MemoryCache | RedisCache | None = None) -> RegistryService:
    return RegistryService(
        MockCitizenRegistry(latency_ms), MockSanctionsRegistry(latency_ms),
        cache=cache, timeout_ms=timeout_ms, regulated=regulated, clock=lambda: NOW,
    )


def sample(name: str, registry_type: str) -> float:
    return REGISTRY.get_sample_value(name, {"registry_type": registry_type}) or 0.0


# -- the mock registries ----------------------------------------------------------------


async def test_documented_test_ids() -> None:
    registry = service()
    adult = await registry.citizen("123456789")
    assert adult.valid and adult.is_over_18
    assert adult.name and adult.address and adult.date_of_birth
    assert not (await registry.sanctions("123456789")).listed
    assert (await registry.sanctions("987654321")).listed
    assert (await registry.citizen("987654321")).valid
    underage = await registry.citizen("111111111")
    assert underage.valid and not underage.is_over_18
    assert not (await registry.citizen("000000000")).valid
    pep = await registry.sanctions("555555555")
    assert pep.pep and not pep.listed
    assert not (await registry.sanctions("123456789")).pep


async def test_records_are_deterministic_from_the_national_id() -> None:
    first, second = service(), service()
    for national_id in ("123456789", "AB123456", "ZZZZZZ", "X1Y2Z3W4V5"):
        assert await first.citizen(national_id) == await second.citizen(national_id)
        assert await first.sanctions(national_id) == await second.sanctions(national_id)


def test_other_ids_spread_over_every_case() -> None:
    today = date(2026, 6, 1)
    ids = [f"ID{n:06d}" for n in range(2000)]
    citizens = [citizen_facts(i, today) for i in ids]
    screened = [sanctions_facts(i) for i in ids]
    assert any(not valid for valid, _ in citizens)
    assert any(valid and (today.year - born.year) < 18 for valid, born in citizens)
    assert any(listed for listed, _ in screened) and any(pep for _, pep in screened)
    assert sum(valid for valid, _ in citizens) > 0.8 * len(ids)


@pytest.mark.parametrize("national_id", ["12345", "abc123456", "123 456 789", "1234567890123456789012",
                                         "12345678É", "", "123456789\n"])
async def test_national_ids_are_validated(national_id: str) -> None:
    registry = service()
    for lookup in (registry.citizen, registry.sanctions):
        with pytest.raises(ApiError) as caught:
            await lookup(national_id)
        assert caught.value.status_code == 400 and caught.value.error == "invalid_national_id"
    assert registry.calls == {"citizen": 0, "sanctions": 0}


# -- cache --------------------------------------------------------------------------------


async def test_answers_are_cached_for_five_minutes() -> None:
    ticks = [0.0]
    registry = service(cache=MemoryCache(monotonic=lambda: ticks[0]))
    first = await registry.citizen("123456789")
    await registry.citizen("123456789")
    await registry.sanctions("123456789")
    await registry.sanctions("123456789")
    assert registry.calls == {"citizen": 1, "sanctions": 1}
    ticks[0] = 299.0
    assert await registry.citizen("123456789") == first
    assert registry.calls["citizen"] == 1
    ticks[0] = 300.0
    await registry.citizen("123456789")
    assert registry.calls["citizen"] == 2


async def test_expired_entries_go_on_the_next_write() -> None:
    # A new user a minute: each adds a subject index, which nothing reads again but an
    # erasure. Only the last five minutes' stay, with the answer they share.
    ticks = [0.0]
    cache = MemoryCache(monotonic=lambda: ticks[0])
    registry = service(cache=cache)
    for minute in range(10):
        ticks[0] = minute * 60.0
        await registry.citizen("123456789", subject=f"usr_{minute}")
    indexes = [key for key in cache._entries if key.startswith("registry:subject:")]
    assert len(indexes) == 5  # usr_5 to usr_9
    assert set(cache._entries) == {*indexes, cache_key("citizen", "123456789")}
    assert registry.calls["citizen"] == 2  # looked up again at minute 5


async def test_evict_forgets_both_answers() -> None:
    registry = service()
    await registry.citizen("123456789")
    await registry.sanctions("123456789")
    await registry.citizen("987654321")
    await registry.evict("123456789")
    await registry.citizen("123456789")
    await registry.sanctions("123456789")
    await registry.citizen("987654321")
    assert registry.calls == {"citizen": 3, "sanctions": 2}  # 987654321 still cached


async def test_evict_subject_forgets_what_a_user_looked_up() -> None:
    registry = service()
    await registry.citizen("123456789", subject="usr_ada")
    await registry.sanctions("987654321", subject="usr_ada")
    await registry.citizen("555555555", subject="usr_bob")
    assert await registry.evict_subject("usr_ada") == 2
    assert await registry.evict_subject("usr_ada") == 0
    await registry.citizen("123456789")
    await registry.sanctions("987654321")
    await registry.citizen("555555555")
    assert registry.calls == {"citizen": 3, "sanctions": 2}  # Bob's answer is still cached


async def test_cache_keys_do_not_hold_the_national_id() -> None:
    cache = MemoryCache()
    await service(cache=cache).citizen("123456789")
    assert all("123456789" not in key for key in cache._entries)


# -- timeouts, failures, metrics ----------------------------------------------------------


async def test_a_slow_registry_is_a_504_and_counted() -> None:
    registry = service(latency_ms=200, timeout_ms=20)
    before = sample("registry_call_errors_total", "citizen")
    durations = sample("registry_call_duration_seconds_count", "citizen")
    with pytest.raises(RegistryUnavailable) as caught:
        await registry.citizen("123456789")
    assert caught.value.status_code == 504 and caught.value.error == "registry_unavailable"
    assert "20 ms" in caught.value.description
    assert sample("registry_call_errors_total", "citizen") == before + 1
    assert sample("registry_call_duration_seconds_count", "citizen") == durations + 1
    # Nothing was cached: the next lookup asks again.
    registry.citizen_client.latency_ms = 0  # type: ignore[attr-defined]
    assert (await registry.citizen("123456789")).valid
    assert registry.calls["citizen"] == 2


async def test_injected_failures_are_502_and_repeatable() -> None:
    registry = service()
    registry.sanctions_client.failure_rate = 1.0  # type: ignore[attr-defined]
    before = sample("registry_call_errors_total", "sanctions")
    with pytest.raises(RegistryUnavailable) as caught:
        await registry.sanctions("123456789")
    assert caught.value.status_code == 502 and caught.value.error == "registry_unavailable"
    assert sample("registry_call_errors_total", "sanctions") == before + 1

    async def outcomes(rate: float) -> list[bool]:
        client = MockCitizenRegistry(failure_rate=rate, seed=7)
        results = []
        for _ in range(40):
            try:
                await client.lookup("123456789", NOW)
                results.append(True)
            except Exception:
                results.append(False)
        return results

    half = await outcomes(0.5)
    assert half == await outcomes(0.5)  # same seed, same faults
    assert 5 < half.count(False) < 35


async def test_lookups_run_concurrently() -> None:
    registry = service(latency_ms=100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(registry.citizen("123456789"), registry.sanctions("123456789"))
    assert loop.time() - started < 0.19


# -- regulated mode -----------------------------------------------------------------------


async def test_regulated_mode_minimises_answers_and_cache() -> None:
    cache = MemoryCache()
    registry = service(regulated=True, cache=cache)
    record = await registry.citizen("123456789")
    assert (record.name, record.date_of_birth, record.address) == (None, None, None)
    assert record.valid and record.is_over_18  # derived before minimising
    assert not (await registry.citizen("111111111")).is_over_18
    stored = json.dumps([value for _, value in cache._entries.values()])
    assert "date_of_birth\": null" in stored
    for name in ("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Backus", "Street",
                 "Road", "Lane", "Avenue"):
        assert name not in stored


# -- HTTP ---------------------------------------------------------------------------------


async def test_citizen_and_sanctions_endpoints(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "registry_check")
    citizen = await gateway.client.post("/registry/citizen", json={"national_id": "123456789"},
                                        headers=ada.headers)
    assert citizen.status_code == 200, citizen.text
    body = citizen.json()
    assert set(body) == {"national_id", "valid", "date_of_birth", "name", "address", "is_over_18", "checked_at"}
    assert body["national_id"] == "123456789" and body["valid"] is True and body["is_over_18"] is True
    assert datetime.fromisoformat(body["checked_at"]) == gateway.clock.now
    sanctions = await gateway.client.post("/registry/sanctions", json={"national_id": "987654321"},
                                          headers=ada.headers)
    assert sanctions.status_code == 200, sanctions.text
    assert sanctions.json() == {"national_id": "987654321", "listed": True, "source": "mock-sanctions-list",
                                "checked_at": body["checked_at"]}
    checked = [e for e in gateway.events if e.action.startswith("registry_")]
    assert [(e.action, e.subject, e.purpose, e.outcome) for e in checked] == [
        ("registry_citizen_checked", ada.user_id, "registry_check", "valid"),
        ("registry_sanctions_checked", ada.user_id, "registry_check", "listed"),
    ]


async def test_regulated_citizen_answer_has_three_fields(regulated_gateway: GatewayClient) -> None:
    ada = await regulated_gateway.caller()
    await regulated_gateway.grant(ada, "registry_check")
    response = await regulated_gateway.client.post("/registry/citizen", json={"national_id": "123456789"},
                                                   headers=ada.headers)
    assert response.status_code == 200
    assert set(response.json()) == {"national_id", "valid", "checked_at"}


@pytest.mark.parametrize("path", ["/registry/citizen", "/registry/sanctions"])
async def test_bad_national_ids_are_400_without_echo(gateway: GatewayClient, path: str) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "registry_check")
    for body in ({"national_id": "abc<script>"}, {"national_id": "12"}, {"national_id": 123456789}, {},
                 {"national_id": "123456789", "name": "x"}):
        response = await gateway.client.post(path, json=body, headers=ada.headers)
        assert response.status_code == 400, (body, response.text)
        assert "<script>" not in response.text
    assert gateway.app.state.registry.calls == {"citizen": 0, "sanctions": 0}


@pytest.mark.parametrize("path", ["/registry/citizen", "/registry/sanctions"])
async def test_registry_routes_need_a_bearer_token(gateway: GatewayClient, path: str) -> None:
    response = await gateway.client.post(path, json={"national_id": "123456789"})
    assert response.status_code == 401


async def test_a_registry_timeout_is_a_504_and_still_audited(
    gateway_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = gateway_settings(registry_latency_ms=300, registry_timeout_ms=20)
    async with start_gateway(settings, clock) as gw:
        ada = await gw.caller()
        await gw.grant(ada, "registry_check")
        for path, action in (("/registry/citizen", "registry_citizen_checked"),
                             ("/registry/sanctions", "registry_sanctions_checked")):
            response = await gw.client.post(path, json={"national_id": "123456789"}, headers=ada.headers)
            assert response.status_code == 504, response.text
            assert response.json()["error"] == "registry_unavailable"
            event = gw.events[-1]
            assert (event.action, event.subject, event.outcome, event.reason) == (
                action, ada.user_id, "unavailable", "registry_unavailable",
            )
            assert event.request_id == response.headers["x-request-id"]


async def test_failure_rate_setting_makes_every_lookup_fail(
    gateway_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = gateway_settings(registry_failure_rate=1.0)
    async with start_gateway(settings, clock) as gw:
        ada = await gw.caller()
        await gw.grant(ada, "registry_check")
        response = await gw.client.post("/registry/citizen", json={"national_id": "123456789"}, headers=ada.headers)
        assert response.status_code == 502 and response.json()["error"] == "registry_unavailable"


async def test_registry_metrics_are_exposed(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "registry_check")
    await gateway.client.post("/registry/citizen", json={"national_id": "123456789"}, headers=ada.headers)
    metrics = (await gateway.client.get("/metrics")).text
    assert 'registry_call_duration_seconds_count{registry_type="citizen"}' in metrics
    assert "registry_call_errors_total" in metrics


# -- Redis --------------------------------------------------------------------------------


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    """A Redis cache under a key prefix of its own, deleted afterwards."""
    cache = RedisCache(REDIS_URL, prefix=f"idgw-test-{uuid.uuid4().hex[:12]}")
    try:
        await cache.client.ping()
    except Exception as exc:
        await cache.close()
        if os.environ.get("IDGW_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc}) and IDGW_TEST_REQUIRE_SERVICES=1")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc})")
    try:
        yield cache
    finally:
        keys = [key async for key in cache.client.scan_iter(match=f"{cache.prefix}:*")]
        if keys:
            await cache.client.delete(*keys)
        await cache.close()


async def test_redis_caches_for_five_minutes(redis_cache: RedisCache) -> None:
    registry = service(cache=redis_cache)
    first = await registry.citizen("123456789")
    again = await service(cache=redis_cache).citizen("123456789")  # another worker, same Redis
    assert again == first
    assert registry.calls["citizen"] == 1
    assert 295 <= await redis_cache.ttl(cache_key("citizen", "123456789")) <= 300
    await registry.evict("123456789")
    assert await redis_cache.ttl(cache_key("citizen", "123456789")) == -2


async def test_redis_holds_no_personal_data_in_regulated_mode(redis_cache: RedisCache) -> None:
    await service(regulated=True, cache=redis_cache).citizen("123456789")
    keys = [key async for key in redis_cache.client.scan_iter(match=f"{redis_cache.prefix}:*")]
    assert len(keys) == 1 and b"123456789" not in keys[0]
    stored = json.loads(await redis_cache.client.get(keys[0]))
    assert stored["name"] is None and stored["date_of_birth"] is None and stored["address"] is None
    assert stored["is_over_18"] is True


async def test_gateway_uses_redis_when_configured(
    gateway_settings: Callable[..., Settings], clock: FakeClock, redis_cache: RedisCache
) -> None:
    async with start_gateway(gateway_settings(redis_url=REDIS_URL), clock) as gw:
        registry: RegistryService = gw.app.state.registry
        assert isinstance(registry.cache, RedisCache)
        registry.cache.prefix = redis_cache.prefix  # this run's keys, removed by the fixture
        ada = await gw.caller()
        await gw.grant(ada, "registry_check")
        for _ in range(2):
            response = await gw.client.post("/registry/sanctions", json={"national_id": "123456789"},
                                            headers=ada.headers)
            assert response.status_code == 200
        assert registry.calls["sanctions"] == 1
        assert await redis_cache.ttl(cache_key("sanctions", "123456789")) > 0


async def test_an_unreachable_redis_degrades_to_the_registry() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", timeout_seconds=0.2)
    registry = service(cache=cache)
    try:
        assert (await registry.citizen("123456789")).valid
        assert (await registry.citizen("123456789")).valid
        await registry.evict("123456789")
        assert registry.calls["citizen"] == 2
    finally:
        await registry.close()
