"""Redis, the registry answers cache (`IDGW_REDIS_URL`), stopped under load on a real
`idgw serve`: lookups fall back to the registries and answer as before, nothing answers
5xx, and the cache is used again once Redis is back.

Two ways Redis goes away: killed (connections cut, new ones refused) and frozen with
SIGSTOP (connections open, nothing answers: a cache call ends at the client's 0.5 s
timeout, and the process then leaves Redis alone for a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.faults.conftest import Answer, Load, PrivateRedis, login, metric
from tests.server.conftest import ServerProcess, wait_until

# The mock registries' test ids (docs/registry.md) and a few derived ones.
NATIONAL_IDS = ["123456789", "987654321", "111111111", "000000000", "555555555",
                "AB123456", "CD234567", "EF345678", "GH456789", "JK567890"]
ENDPOINTS = ("citizen", "sanctions", "evaluate")


def cached_answers(url: str) -> int:
    """Registry answers in Redis (not counting the per-subject indexes)."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return sum(1 for kind in ("citizen", "sanctions") for _ in client.scan_iter(f"*:registry:{kind}:*"))
    finally:
        client.close()


def registry_calls(server: ServerProcess) -> float:
    return metric(server.client, "registry_call_duration_seconds_count")


def cache_used_again(server: ServerProcess, url: str) -> None:
    """Every answer is back in Redis, and lookups no longer reach the registries."""
    wait_until(lambda: cached_answers(url) == 2 * len(NATIONAL_IDS), timeout=30)

    def no_new_calls() -> bool:
        calls = registry_calls(server)
        time.sleep(1.0)
        return registry_calls(server) == calls

    wait_until(no_new_calls, timeout=15)


def start_load(load: Load, headers: dict[str, str]) -> None:
    def lookup(path: str) -> Callable[[httpx.Client, int], httpx.Response]:
        def call(client: httpx.Client, n: int) -> httpx.Response:
            return client.post(path, json={"national_id": NATIONAL_IDS[n % len(NATIONAL_IDS)]}, headers=headers)
        return call

    def evaluate(client: httpx.Client, n: int) -> httpx.Response:
        context = {"national_id": NATIONAL_IDS[n % len(NATIONAL_IDS)]}
        return client.post("/decision/evaluate", json={"purpose": "sanctions_screening", "context": context},
                           headers=headers)

    load.add("citizen", lookup("/registry/citizen"), pause=0.03)
    load.add("sanctions", lookup("/registry/sanctions"), pause=0.03)
    load.add("evaluate", evaluate, pause=0.03)


def outcome(answer: Answer) -> tuple[Any, ...]:
    """What an answer says about its national id (not when it was checked)."""
    body = answer.body
    if answer.endpoint == "citizen":
        return body["valid"], body["is_over_18"], body["name"]
    if answer.endpoint == "sanctions":
        return body["listed"], body["source"]
    return body["status"], body["reason"], body["evidence"]["sanctions_listed"], body["evidence"]["is_pep"]


def fell_back(server: ServerProcess, traffic: Load, outage: Callable[[], None]) -> None:
    """Run `outage`; answers meanwhile must come from the registries: each lookup answered
    after it is a registry call."""
    calls_before = registry_calls(server)
    outage()
    after = time.monotonic() + 0.05  # a request sent before may still have been answered by Redis
    for endpoint in ENDPOINTS:
        traffic.wait_for(endpoint, 10, timeout=60, sent_after=after)
    before = time.monotonic()
    calls = registry_calls(server) - calls_before
    answered = sum(len([a for a in traffic.of(e, sent_after=after) if a.received <= before]) for e in ENDPOINTS)
    assert calls >= answered > 0, (calls, answered)


def test_redis_stopped_under_load(
    private_redis: PrivateRedis, policy_dir: Path, tmp_path: Path, load: Callable[[str], Load]
) -> None:
    # Registries taking 0.3 s: a frozen Redis must not push a decision's evidence past
    # its deadline (the registry timeout, 2 s, plus 0.25 s).
    server = ServerProcess(policy_dir, tmp_path, IDGW_REDIS_URL=private_redis.url, IDGW_POLICY_RELOAD="false",
                           IDGW_REGISTRY_LATENCY_MS="300")
    try:
        server.wait_ready()
        headers = login(server.client, "ada@example.test", "registry_check")
        traffic = load(server.base_url)
        start_load(traffic, headers)
        for endpoint in ENDPOINTS:
            traffic.wait_for(endpoint, 2 * len(NATIONAL_IDS), timeout=30)
        cache_used_again(server, private_redis.url)

        # Killed: refused at once.
        fell_back(server, traffic, private_redis.stop)
        private_redis.start()  # empty: nothing was persisted
        cache_used_again(server, private_redis.url)

        # Frozen: a cache call waits for its timeout, those of the next second skip Redis.
        fell_back(server, traffic, private_redis.freeze)
        private_redis.thaw()
        cache_used_again(server, private_redis.url)
        answers = traffic.stop()
        output = server.output()
        assert server.stop() == 0
    except BaseException:
        print(server.output()[-20_000:])
        server.stop()
        raise

    assert sorted({a.status for a in answers}) == [200], sorted({(a.endpoint, a.status) for a in answers})
    first: dict[tuple[str, str], tuple[Any, ...]] = {}
    for answer in answers:  # the same id, the same answer, from the cache or a registry
        national_id = NATIONAL_IDS[answer.n % len(NATIONAL_IDS)]
        assert first.setdefault((answer.endpoint, national_id), outcome(answer)) == outcome(answer)
    assert "registry_cache_unavailable" in output
    assert "unhandled_error" not in output
