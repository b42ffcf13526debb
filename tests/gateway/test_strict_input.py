"""Hostile bodies and requests, on every endpoint that reads them (docs/api.md, "Strict
input"): a key named twice is a 400 `invalid_json` naming it, values are never coerced,
an error repeats at most 200 characters of the request, and a 405 lists every method of
the path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.errors import ECHO_LIMIT
from tests.gateway.conftest import GatewayClient
from tests.server.conftest import assert_error_shape

#: Every endpoint with a JSON body, and a body with its first field named twice.
DUPLICATED: list[tuple[str, str]] = [
    ("/auth/authorize", '{"email": "ada@example.com", "email": "bob@example.com", "client_id": "demo"}'),
    ("/auth/token", '{"grant_type": "session", "grant_type": "refresh_token", "refresh_token": "r"}'),
    ("/auth/refresh", '{"refresh_token": "a", "refresh_token": "b"}'),
    ("/auth/revoke", '{"all": true, "all": false}'),
    ("/auth/consent", '{"purposes": ["login"], "purposes": ["vc_issuance"]}'),
    ("/auth/consent/revoke", '{"purposes": ["login"], "purposes": ["vc_issuance"]}'),
    ("/registry/citizen", '{"national_id": "123456789", "national_id": "987654321"}'),
    ("/registry/sanctions", '{"national_id": "123456789", "national_id": "987654321"}'),
    ("/vc/issue", '{"type": "AgeOver18", "type": "AgeOver18", "national_id": "123456789"}'),
    ("/vc/verify", '{"credential_id": "vc_1", "credential_id": "vc_2"}'),
    ("/vc/revoke", '{"credential_id": "vc_1", "credential_id": "vc_2"}'),
    ("/decision/evaluate", '{"purpose": "nope", "purpose": "age_verification"}'),
    ("/v1/data/age_verification", '{"input": {}, "input": {"is_over_18": true}}'),
]


def _first_key(body: str) -> str:
    return body.split('"')[1]


@pytest.mark.parametrize(("path", "body"), DUPLICATED, ids=[p for p, _ in DUPLICATED])
async def test_a_key_named_twice_is_refused_everywhere(gateway: GatewayClient, path: str, body: str) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "registry_check", "vc_issuance", "decision_evaluation")
    response = await gateway.client.post(path, content=body, headers={**ada.headers, "content-type": "application/json"})
    error = assert_error_shape(response, 400, "invalid_json")
    assert f"duplicate key {_first_key(body)!r}" in error["error_description"]


@pytest.mark.parametrize(
    "body",
    [
        # nested, in the context the purpose's schema checks
        '{"input": {"context": {"national_id": "AB123456", "national_id": "../../x"}}}',
        # the same key spelled with an escape
        '{"input": {"is_over_18": false, "is_\\u006fver_18": true}}',
        # colons in strings: the cheap count cannot clear it, the full check finds it
        '{"input": {"context": {"national_id": "AB123456"}, "subject": {"sub": "a:b", "sub": "c"}}}',
    ],
)
async def test_the_data_api_refuses_nested_and_escaped_duplicates(gateway: GatewayClient, body: str) -> None:
    ada = await gateway.caller()
    response = await gateway.client.post(
        "/v1/data/age_verification", content=body, headers={**ada.headers, "content-type": "application/json"}
    )
    assert_error_shape(response, 400, "invalid_json")


async def test_the_same_key_in_different_objects_is_fine(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    body = {"input": {"subject": {"sub": "a:b"}, "consent": {"sub": True}, "context": {"national_id": "AB123456"}}}
    response = await gateway.client.post("/v1/data/age_verification", json=body, headers=ada.headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", [0, 1, "no", "false", "true", None, [], {}])
async def test_revoke_all_takes_only_true_or_false(gateway: GatewayClient, value: Any) -> None:
    ada = await gateway.caller()
    response = await gateway.client.post("/auth/revoke", json={"all": value}, headers=ada.headers)
    error = assert_error_shape(response, 400, "invalid_request")
    assert error["error_description"].startswith("all: ")
    still = await gateway.client.get("/auth/userinfo", headers=ada.headers)
    assert still.status_code == 200, "nothing was revoked"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/registry/citizen", {"national_id": 123456789}, "national_id"),
        ("/vc/issue", {"type": "AgeOver18", "national_id": 123456789}, "national_id"),
        ("/vc/revoke", {"credential_id": 1}, "credential_id"),
        ("/auth/consent", {"purposes": [1]}, "purposes[0]"),
        ("/auth/token", {"grant_type": "session", "session_id": 5}, "session_id"),
        ("/decision/evaluate", {"purpose": 1}, "purpose"),
        ("/auth/authorize", {"email": "ada@example.com", "client_id": 7}, "client_id"),
    ],
)
async def test_numbers_are_not_strings(gateway: GatewayClient, path: str, body: Any, field: str) -> None:
    ada = await gateway.caller()
    response = await gateway.client.post(path, json=body, headers=ada.headers)
    error = assert_error_shape(response, 400, "invalid_request")
    assert error["error_description"].startswith(f"{field}: Input should be a valid string")


def _assert_echo_capped(response: httpx.Response, status: int) -> None:
    error = assert_error_shape(response, status)
    assert len(error["error_description"]) < ECHO_LIMIT + 200
    assert "more characters cut]" in error["error_description"]
    assert len(response.content) < 1000


async def test_a_long_path_is_not_repeated_back(gateway: GatewayClient) -> None:
    _assert_echo_capped(await gateway.client.get("/" + "a" * 60_000), 404)
    _assert_echo_capped(await gateway.client.put("/auth/consent/" + "b" * 60_000), 404)


async def test_long_request_values_are_cut_in_errors(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    long = "x" * 10_000
    _assert_echo_capped(await gateway.client.post(f"/v1/data/{long}", json={"input": {}}, headers=ada.headers), 404)
    _assert_echo_capped(
        await gateway.client.post(f"/v1/data/age_verification?explain={long}", json={"input": {}}, headers=ada.headers),
        400,
    )
    _assert_echo_capped(await gateway.client.get(f"/me/data-export?{long}=1", headers=ada.headers), 400)
    _assert_echo_capped(await gateway.client.get(f"/auth/consent?status={long}", headers=ada.headers), 400)
    _assert_echo_capped(
        await gateway.client.post("/auth/consent", json={"purposes": [long]}, headers=ada.headers), 400
    )
    _assert_echo_capped(
        await gateway.client.post("/v1/data/age_verification", content=b"{}",
                                  headers={**ada.headers, "content-type": "text/" + long}), 415
    )


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH"])
async def test_a_405_lists_every_method_of_the_path(gateway: GatewayClient, method: str) -> None:
    response = await gateway.client.request(method, "/auth/consent")
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD, POST"
    response = await gateway.client.request(method, "/v1/data/age_verification")
    assert response.headers["allow"] == "POST"
    response = await gateway.client.request(method, "/auth/userinfo")
    assert response.headers["allow"] == "GET, HEAD"
