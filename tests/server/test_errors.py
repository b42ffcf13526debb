"""Every error answer has one JSON shape (`error`, `error_description`, `status_code`,
`request_id`: docs/api.md), and none is a 500."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.auth.external import JwksUnavailable
from server.auth.revocation import RevocationsUnavailable
from stores import NotFound, Unavailable
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, assert_error_shape, log_records

DATA = "/v1/data/age_verification"


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    body = assert_error_shape(await client.get("/no/such/thing"), 404, "not_found")
    assert "/no/such/thing" in body["error_description"]


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.get(DATA)
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_body_over_the_limit_is_413(make_settings, log_stream) -> None:  # type: ignore[no-untyped-def]
    from server.app import create_app

    app = create_app(make_settings(max_body_bytes=64), log_stream=log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        big = {"input": {**ADULT_WITHOUT_CREDENTIAL, "padding": "x" * 100}}
        body = assert_error_shape(await client.post(DATA, json=big), 413, "payload_too_large")
        assert "64 bytes" in body["error_description"]


async def test_streamed_body_over_the_limit_is_413(make_settings, log_stream) -> None:  # type: ignore[no-untyped-def]
    from server.app import create_app

    app = create_app(make_settings(max_body_bytes=64), log_stream=log_stream)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b'{"input": {"padding": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}'

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(DATA, content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert_error_shape(response, 413, "payload_too_large")


async def test_non_json_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(DATA, content=b"input=1", headers={"content-type": "text/plain"})
    body = assert_error_shape(response, 415, "unsupported_media_type")
    assert "application/json" in body["error_description"]


async def test_missing_content_type_is_415(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.post(DATA, content=b'{"input": {}}'), 415)


async def test_json_with_charset_and_suffix_types_are_accepted(client: httpx.AsyncClient) -> None:
    body = b'{"input": {"context": {"national_id": "AB123456"}}}'
    for content_type in ("application/json; charset=utf-8", "application/vnd.idgw+json"):
        response = await client.post(DATA, content=body, headers={"content-type": content_type})
        assert response.status_code == 200, response.text


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    for raw in (b"{", b'{"input": }', b'{"input": {}} trailing', b"\xff\xfe"):
        response = await client.post(DATA, content=raw, headers={"content-type": "application/json"})
        body = assert_error_shape(response, 400, "invalid_json")
        assert body["error_description"].startswith("malformed JSON")


async def test_empty_body_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(DATA, content=b"", headers={"content-type": "application/json"})
    assert_error_shape(response, 400, "invalid_json")


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    body = assert_error_shape(await client.post(DATA, json={"input": 3}), 400, "invalid_request")
    assert body["error_description"].startswith("input:")

    body = assert_error_shape(await client.post(DATA, json={"inputs": {}}), 400, "invalid_request")
    assert "input: Field required" in body["error_description"]
    assert "inputs: unknown field" in body["error_description"]

    body = assert_error_shape(await client.post(DATA, json=[1, 2]), 400, "invalid_request")


async def test_context_against_the_schema_names_the_field(client: httpx.AsyncClient) -> None:
    facts = {**ADULT_WITHOUT_CREDENTIAL, "context": {"national_id": "lower-case!"}}
    body = assert_error_shape(await client.post(DATA, json={"input": facts}), 400, "invalid_context")
    assert "input.context.national_id" in body["error_description"]

    facts = {**ADULT_WITHOUT_CREDENTIAL, "context": "not an object"}
    body = assert_error_shape(await client.post(DATA, json={"input": facts}), 400, "invalid_context")
    assert "context must be an object" in body["error_description"]


async def test_bad_explain_flag_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post(DATA + "?explain=perhaps", json={"input": ADULT_WITHOUT_CREDENTIAL})
    body = assert_error_shape(response, 400, "invalid_request")
    assert body["error_description"].startswith("explain:")


async def test_unhandled_exception_is_a_json_500_without_trace(app: Starlette, log_stream) -> None:  # type: ignore[no-untyped-def]
    async def explode(request: Request) -> Response:
        raise RuntimeError("secret internal detail")

    app.router.routes.append(Route("/explode", explode))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/explode", headers={"X-Request-ID": "boom-1"})
    body = assert_error_shape(response, 500, "internal_error")
    assert body["request_id"] == "boom-1"
    assert "secret internal detail" not in response.text
    # The trace goes to the log, with the request id, not to the client.
    errors = [r for r in log_records(log_stream) if r["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "boom-1"
    assert errors[0]["level"] == "error"
    assert "secret internal detail" in errors[0]["exception"]


async def test_non_finite_numbers_are_400_naming_the_field(client: httpx.AsyncClient) -> None:
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = b'{"input": {"sanctions_listed": false, "context": {"national_id": "AB123456", "amount": %s}}}' % (
            literal.encode()
        )
        response = await client.post(
            "/v1/data/sanctions_screening", content=raw, headers={"content-type": "application/json"}
        )
        body = assert_error_shape(response, 400, "invalid_request")
        assert body["error_description"] == "input.context.amount: numbers must be finite"


async def test_deeply_nested_input_is_400(client: httpx.AsyncClient) -> None:
    raw = b'{"input": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = await client.post(DATA, content=raw, headers={"content-type": "application/json"})
    body = assert_error_shape(response, 400, "invalid_json")
    assert "recursion limit" in body["error_description"]


async def test_odd_but_valid_json_values_never_500(client: httpx.AsyncClient) -> None:
    facts = {
        **ADULT_WITHOUT_CREDENTIAL,
        "big": 10**40,
        "unicode \u2603": "\u00e9\U0001f600",
        "nested": {"list": [None, 1.5e-300, -0.0, ""]},
    }
    response = await client.post(DATA + "?explain=true", json={"input": facts})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert (result["status"], result["reason"]) == ("pass_with_conditions", "missing_credential")
    # The same number as a declared boolean is refused, named, not echoed in full.
    response = await client.post(DATA, json={"input": {**facts, "sanctions_listed": 10**40}})
    body = assert_error_shape(response, 400, "invalid_input")
    assert body["error_description"] == "input.sanctions_listed: expected bool, got number"


def failing_routes(exc: Exception) -> list[Route]:
    """`exc` raised by a `Request -> Response` endpoint and by a plain ASGI one (as the
    data API is), which skips Starlette's per-route exception wrapper."""

    async def function(request: Request) -> Response:
        raise exc

    class PlainAsgi:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            raise exc

    return [Route("/fails/function", function), Route("/fails/asgi", PlainAsgi())]


@pytest.mark.parametrize(("exc", "description"), [
    (Unavailable("connection refused by 10.0.0.5"), "the database is unavailable; retry later"),
    (RevocationsUnavailable("the revocation list could not be read from the database"),
     "token revocations cannot be checked: the database is unavailable"),
    (JwksUnavailable("https://idp.example/jwks: ConnectError"),
     "the identity provider's keys cannot be fetched; retry later"),
])
async def test_what_cannot_answer_now_is_a_503_from_any_endpoint(
    app: Starlette, exc: Exception, description: str
) -> None:
    app.router.routes.extend(failing_routes(exc))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in ("/fails/function", "/fails/asgi"):
            response = await client.get(path, headers={"X-Request-ID": "down-1"})
            assert (response.status_code, response.json()) == (503, {
                "error": "unavailable", "error_description": description, "status_code": 503, "request_id": "down-1",
            }), path
            assert response.headers["x-request-id"] == "down-1"
            assert str(exc) not in response.text  # the detail is for the logs


async def test_other_store_errors_are_a_bug_where_they_escape(app: Starlette) -> None:
    # NotFound, Conflict, ... mean something different at each call site, which answers them.
    app.router.routes.extend(failing_routes(NotFound("users: usr_1")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in ("/fails/function", "/fails/asgi"):
            assert_error_shape(await client.get(path), 500, "internal_error")
