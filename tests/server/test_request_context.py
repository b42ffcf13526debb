"""X-Request-ID handling and the structured access log."""

from __future__ import annotations

import io
import re

import httpx

from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, log_records


async def test_a_sane_incoming_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "abc-123.DEF:7"})
    assert response.headers["x-request-id"] == "abc-123.DEF:7"


async def test_an_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health/live")).headers["x-request-id"]
    second = (await client.get("/health/live")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


async def test_a_malformed_incoming_id_is_replaced(client: httpx.AsyncClient) -> None:
    for bad in ("x" * 200, "has space", "<script>", "-leading-dash"):
        response = await client.get("/health/live", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_error_responses_carry_the_id_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/missing", headers={"X-Request-ID": "trace-9"})
    assert response.headers.get_list("x-request-id") == ["trace-9"]
    assert response.json()["request_id"] == "trace-9"


async def test_access_line_is_json_with_the_request_id(client: httpx.AsyncClient, log_stream: io.StringIO) -> None:
    response = await client.post(
        "/v1/data/age_verification",
        json={"input": ADULT_WITHOUT_CREDENTIAL},
        headers={"X-Request-ID": "log-me-1"},
    )
    assert response.status_code == 200
    lines = [r for r in log_records(log_stream) if r.get("request_id") == "log-me-1"]
    access = [r for r in lines if r["event"] == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "POST"
    assert line["endpoint"] == "/v1/data/{purpose}"  # the template, never the raw path
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "info"
    assert "timestamp" in line


async def test_logs_carry_no_bodies_or_tokens(client: httpx.AsyncClient, log_stream: io.StringIO) -> None:
    facts = {**ADULT_WITHOUT_CREDENTIAL, "context": {"national_id": "SECRETID99"}}
    await client.post(
        "/v1/data/age_verification?explain=true", json={"input": facts},
        headers={"Authorization": "Bearer tok-SECRET-tok"},
    )
    await client.post("/v1/data/age_verification", content=b"{SECRETID99", headers={"content-type": "application/json"})
    text = log_stream.getvalue()
    assert "SECRETID99" not in text
    assert "tok-SECRET-tok" not in text
    assert "explain" not in text  # no query strings either


async def test_request_id_does_not_leak_between_requests(client: httpx.AsyncClient, log_stream: io.StringIO) -> None:
    await client.get("/health/live", headers={"X-Request-ID": "first-1"})
    await client.get("/health/live")
    records = [r for r in log_records(log_stream) if r["event"] == "request"]
    assert records[-1]["request_id"] != "first-1"
