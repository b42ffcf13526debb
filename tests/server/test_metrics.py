"""`GET /metrics`: the names docs/operations.md lists, parsed with prometheus_client's parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL

SPEC_METRICS = {
    "http_request_duration_seconds",
    "http_requests",  # the parser strips `_total` from counter family names
    "registry_call_duration_seconds",
    "registry_call_errors",
    "decisions",
    "policy_evaluation_duration_seconds",
    "policy_reloads",
    "audit_queue_depth",
    "audit_queue_lag_seconds",
    "audit_events_written",
    "audit_events_dead_lettered",
}


async def scrape(client: httpx.AsyncClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_every_spec_metric_is_exposed(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert families >= SPEC_METRICS


async def test_requests_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    key = (("endpoint", "/v1/data/{purpose}"), ("method", "POST"), ("status", "200"))
    before = (await scrape(client)).get("http_requests_total", {}).get(key, 0.0)
    for _ in range(3):
        await client.post("/v1/data/age_verification", json={"input": ADULT_WITHOUT_CREDENTIAL})
    after = await scrape(client)
    assert after["http_requests_total"][key] == before + 3
    assert after["http_request_duration_seconds_count"][key] >= 3
    # Raw paths never become labels.
    endpoints = {dict(labels)["endpoint"] for labels in after["http_requests_total"]}
    assert not any("age_verification" in e for e in endpoints)


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    key = (("endpoint", "unmatched"), ("method", "GET"), ("status", "404"))
    before = (await scrape(client)).get("http_requests_total", {}).get(key, 0.0)
    for path in ("/a", "/b/c", "/d?e=f"):
        await client.get(path)
    samples = await scrape(client)
    assert samples["http_requests_total"][key] == before + 3
    endpoints = {dict(labels)["endpoint"] for labels in samples["http_requests_total"]}
    assert not endpoints & {"/a", "/b/c", "/d"}


async def test_decisions_are_counted_by_purpose_and_status(client: httpx.AsyncClient) -> None:
    failed = (("purpose", "age_verification"), ("status", "fail"))
    passed = (("purpose", "age_verification"), ("status", "pass_with_conditions"))
    timed = (("purpose", "age_verification"),)
    before = await scrape(client)
    for facts in [{**ADULT_WITHOUT_CREDENTIAL, "sanctions_listed": True}, ADULT_WITHOUT_CREDENTIAL, ADULT_WITHOUT_CREDENTIAL]:
        await client.post("/v1/data/age_verification", json={"input": facts})
    await client.post("/v1/data/age_verification", json={"input": {**ADULT_WITHOUT_CREDENTIAL, "is_over_18": 1}})  # 400
    after = await scrape(client)
    counted = before.get("decisions_total", {})
    assert after["decisions_total"][failed] == counted.get(failed, 0.0) + 1
    assert after["decisions_total"][passed] == counted.get(passed, 0.0) + 2
    timings = before.get("policy_evaluation_duration_seconds_count", {}).get(timed, 0.0)
    assert after["policy_evaluation_duration_seconds_count"][timed] == timings + 3
