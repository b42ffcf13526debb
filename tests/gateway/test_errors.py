"""Answers every subsystem shares, given once by the app (server.errors, server.security):
a database that cannot answer is a 503 `unavailable` on every route that needs it, a
revocation list too old to trust a 503 on every protected route (the plain-ASGI data
API included), and a token whose user was erased meanwhile a 401 `invalid_token`."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import httpx
import pytest

from server.errors import ApiError
from server.events import DecisionMade
from server.registry.clients import VALID_ADULT
from server.security import user_gone
from stores import Stores, Unavailable
from tests.gateway.conftest import Caller, GatewayClient

DATABASE_DOWN = "the database is unavailable; retry later"
REVOCATIONS_DOWN = "token revocations cannot be checked: the database is unavailable"
USER_GONE = "the token's user no longer exists"


def take_database_down(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call of every store fails from now on, as with a database that cannot be reached."""
    for field in dataclasses.fields(stores):
        store = getattr(stores, field.name)
        if field.name.startswith("_") or isinstance(store, str):
            continue
        for name, _ in inspect.getmembers(type(store), inspect.iscoroutinefunction):
            if not name.startswith("_"):
                monkeypatch.setattr(store, name, _unreachable(f"{field.name}.{name}"))


def _unreachable(what: str) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        raise Unavailable(f"{what}: connection refused")

    return call


def assert_answer(response: httpx.Response, status: int, error: str, description: str) -> dict[str, Any]:
    """The whole error body, exactly: nothing else (no trace, no driver message) in it."""
    body: dict[str, Any] = response.json()
    extra = {k: v for k, v in body.items() if k not in ("error", "error_description", "status_code", "request_id")}
    assert (response.status_code, body) == (status, {
        "error": error, "error_description": description, "status_code": status,
        "request_id": response.headers["x-request-id"], **extra,
    })
    assert "connection refused" not in response.text
    return extra


@pytest.fixture
async def ada(gateway: GatewayClient) -> Caller:
    caller = await gateway.caller("ada@example.com")
    await gateway.grant(caller, "decision_evaluation", "registry_check", "vc_issuance")
    return caller


# -- the database cannot answer --------------------------------------------------------------

#: Every route that reads or writes the database: (method, path, body, with the caller's token).
DATABASE_ROUTES: list[tuple[str, str, dict[str, Any] | None, bool]] = [
    ("POST", "/auth/authorize", {"email": "bob@example.com", "client_id": "demo-client"}, False),
    ("POST", "/auth/token", {"grant_type": "session", "session_id": "ses_unknown"}, False),
    ("POST", "/auth/token", {"grant_type": "refresh_token", "refresh_token": "unknown"}, False),
    ("POST", "/auth/refresh", {"refresh_token": "unknown"}, False),
    ("POST", "/auth/revoke", {"token": "unknown"}, False),
    ("POST", "/auth/revoke", {"all": True}, True),
    ("GET", "/auth/userinfo", None, True),
    ("POST", "/auth/consent", {"purposes": ["registry_check"]}, True),
    ("GET", "/auth/consent", None, True),
    ("POST", "/auth/consent/revoke", {"purposes": ["registry_check"]}, True),
    ("POST", "/registry/citizen", {"national_id": VALID_ADULT}, True),
    ("POST", "/registry/sanctions", {"national_id": VALID_ADULT}, True),
    ("POST", "/vc/issue", {"type": "AgeOver18", "national_id": VALID_ADULT}, True),
    ("POST", "/vc/verify", {"credential_id": "vc_unknown"}, True),
    ("POST", "/vc/revoke", {"credential_id": "vc_unknown"}, True),
    ("GET", "/me/data-export", None, True),
    ("DELETE", "/me", None, True),
]


@pytest.mark.parametrize(("method", "path", "body", "authenticated"), DATABASE_ROUTES)
async def test_a_database_that_cannot_answer_is_a_503_on_every_route(
    gateway: GatewayClient, ada: Caller, monkeypatch: pytest.MonkeyPatch,
    method: str, path: str, body: dict[str, Any] | None, authenticated: bool,
) -> None:
    take_database_down(gateway.app.state.stores, monkeypatch)
    response = await gateway.client.request(method, path, json=body, headers=ada.headers if authenticated else {})
    assert assert_answer(response, 503, "unavailable", DATABASE_DOWN) == {}


async def test_the_jwks_answers_with_the_keys_it_has_while_the_database_is_down(
    gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (await gateway.client.get("/.well-known/jwks.json")).json()
    monkeypatch.setattr(gateway.auth.keys, "refresh_seconds", 0.0)  # every call would re-read the key table
    take_database_down(gateway.app.state.stores, monkeypatch)
    response = await gateway.client.get("/.well-known/jwks.json")
    assert (response.status_code, response.json()) == (200, before)
    assert before["keys"]


async def test_evaluate_logs_a_refusal_for_want_of_the_database(
    gateway: GatewayClient, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_database_down(gateway.app.state.stores, monkeypatch)
    response = await gateway.client.post(
        "/decision/evaluate", json={"purpose": "age_verification", "context": {"national_id": VALID_ADULT}},
        headers=ada.headers,
    )
    extra = assert_answer(response, 503, "unavailable", DATABASE_DOWN)
    [event] = [e for e in gateway.events if isinstance(e, DecisionMade)]
    assert extra == {"decision_id": event.decision_id}
    assert (event.purpose, event.decision, event.reason, event.subject) == (
        "age_verification", "fail", "unavailable", ada.user_id)


async def test_the_data_api_needs_no_database(
    gateway: GatewayClient, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_database_down(gateway.app.state.stores, monkeypatch)
    response = await gateway.client.post(
        "/v1/data/sanctions_screening",
        json={"input": {"sanctions_listed": False, "is_pep": False, "context": {"national_id": VALID_ADULT}}},
        headers=ada.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["reason"] == "not_listed"


async def test_a_revocation_list_too_old_to_trust_is_a_503_on_every_protected_route(
    gateway: GatewayClient, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_database_down(gateway.app.state.stores, monkeypatch)
    revocations = gateway.auth.revocations
    monkeypatch.setattr(revocations, "max_age", 0.0)
    monkeypatch.setattr(revocations, "stale_limit", 0.0)
    evaluate = {"purpose": "age_verification", "context": {"national_id": VALID_ADULT}}
    for method, path, body in [
        ("GET", "/auth/userinfo", None),
        ("POST", "/v1/data/sanctions_screening", {"input": {"sanctions_listed": False}}),  # a plain ASGI endpoint
        ("POST", "/decision/evaluate", evaluate),
    ]:
        response = await gateway.client.request(method, path, json=body, headers=ada.headers)
        assert assert_answer(response, 503, "unavailable", REVOCATIONS_DOWN) == {}, path
    # refused before anyone's data is reached: not in the decision log
    assert [e for e in gateway.events if isinstance(e, DecisionMade)] == []


# -- the token's user no longer exists --------------------------------------------------------


async def test_a_token_whose_user_was_erased_is_a_401_everywhere(gateway: GatewayClient, ada: Caller) -> None:
    # Erased behind the gateway's back: the token itself was never revoked and still verifies.
    await gateway.app.state.stores.users.erase(ada.user_id)
    for method, path, body in [
        ("GET", "/auth/userinfo", None),
        ("POST", "/auth/consent", {"purposes": ["registry_check"]}),
        ("GET", "/me/data-export", None),
        ("DELETE", "/me", None),
    ]:
        response = await gateway.client.request(method, path, json=body, headers=ada.headers)
        assert assert_answer(response, 401, "invalid_token", USER_GONE) == {}, path
        assert response.headers["www-authenticate"] == (
            f'Bearer realm="idgw", error="invalid_token", error_description="{USER_GONE}"'), path
    # the credential service stores the credential last, after the registry said yes
    with pytest.raises(ApiError) as caught:
        await gateway.app.state.credentials.issue(ada.user_id, "AgeOver18", VALID_ADULT)
    assert (caught.value.status_code, caught.value.error, caught.value.description) == (
        401, "invalid_token", USER_GONE)
    assert caught.value.headers["WWW-Authenticate"].endswith(f'error_description="{USER_GONE}"')


@pytest.mark.parametrize(("holder", "status", "error"), [
    ("token", 401, "invalid_token"),
    ("session", 400, "invalid_grant"),
    ("refresh token", 400, "invalid_grant"),
])
def test_user_gone_names_what_held_the_user(holder: Any, status: int, error: str) -> None:
    answer = user_gone(holder)
    assert (answer.status_code, answer.error, answer.description) == (
        status, error, f"the {holder}'s user no longer exists")
    assert ("WWW-Authenticate" in answer.headers) == (holder == "token")
