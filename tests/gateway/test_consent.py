"""Consent: grant (renews for a year), revoke (idempotent), list with filters, the
`require` check with its three refusals, audit events, and one user never reaching
another's consents. On memory and SQLite; the persistence cases also on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from server.consent import ConsentService
from server.errors import ApiError
from server.settings import Settings
from tests.gateway.conftest import FakeClock, GatewayClient, start_gateway

pytestmark = pytest.mark.asyncio


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_grant_answers_the_v1_shape_and_lasts_a_year(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    response = await gateway.grant(ada, "registry_check", "vc_issuance", "registry_check")
    body = response.json()
    assert body["message"] == "consent granted for 2 purposes"
    assert [c["purpose"] for c in body["granted"]] == ["registry_check", "vc_issuance"]
    for consent in body["granted"]:
        assert set(consent) == {"id", "purpose", "granted_at", "expires_at", "revoked_at", "status"}
        assert consent["id"].startswith("consent_")
        assert consent["status"] == "active" and consent["revoked_at"] is None
        assert parse(consent["granted_at"]) == gateway.clock.now
        assert parse(consent["expires_at"]) - parse(consent["granted_at"]) == timedelta(days=365)


async def test_granting_again_renews_the_same_record(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    first = (await gateway.grant(ada, "login")).json()["granted"][0]
    ada = await gateway.later(ada, days=200)
    renewed = (await gateway.grant(ada, "login")).json()["granted"][0]
    assert renewed["id"] == first["id"]
    assert parse(renewed["expires_at"]) == gateway.clock.now + timedelta(days=365)


async def test_revoke_is_idempotent_and_audited_once(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "registry_check", "vc_issuance")
    first = await gateway.client.post("/auth/consent/revoke", json={"purposes": ["registry_check"]},
                                      headers=ada.headers)
    assert first.status_code == 200
    assert first.json() == {"revoked": ["registry_check"], "message": "consent revoked for 1 purpose"}
    again = await gateway.client.post("/auth/consent/revoke", json={"purposes": ["registry_check", "login"]},
                                      headers=ada.headers)
    assert again.status_code == 200
    assert again.json() == {"revoked": [], "message": "nothing to revoke"}
    revoked = [e for e in gateway.events if e.action == "consent_revoked"]
    assert [(e.subject, e.purpose, e.outcome) for e in revoked] == [(ada.user_id, "registry_check", "revoked")]
    listing = (await gateway.client.get("/auth/consent", headers=ada.headers)).json()["consents"]
    assert {c["purpose"]: c["status"] for c in listing} == {"registry_check": "revoked", "vc_issuance": "active"}


async def test_granting_after_a_revocation_makes_it_active_again(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "vc_issuance")
    await gateway.client.post("/auth/consent/revoke", json={"purposes": ["vc_issuance"]}, headers=ada.headers)
    regranted = (await gateway.grant(ada, "vc_issuance")).json()["granted"][0]
    assert regranted["status"] == "active" and regranted["revoked_at"] is None


async def test_grants_are_audited_per_purpose(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    response = await gateway.grant(ada, "login", "decision_evaluation")
    granted = [e for e in gateway.events if e.action == "consent_granted"]
    assert [(e.subject, e.purpose, e.outcome) for e in granted] == [
        (ada.user_id, "login", "granted"), (ada.user_id, "decision_evaluation", "granted"),
    ]
    assert {e.request_id for e in granted} == {response.headers["x-request-id"]}


async def test_list_filters_by_status_and_purpose(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    await gateway.grant(ada, "login")
    ada = await gateway.later(ada, days=300)
    await gateway.grant(ada, "registry_check", "vc_issuance")
    await gateway.client.post("/auth/consent/revoke", json={"purposes": ["vc_issuance"]}, headers=ada.headers)
    ada = await gateway.later(ada, days=100)  # login: 400 days old, expired

    async def purposes(query: str) -> list[tuple[str, str]]:
        response = await gateway.client.get(f"/auth/consent{query}", headers=ada.headers)
        assert response.status_code == 200, response.text
        return [(c["purpose"], c["status"]) for c in response.json()["consents"]]

    assert await purposes("") == [("login", "expired"), ("registry_check", "active"), ("vc_issuance", "revoked")]
    assert await purposes("?status=active") == [("registry_check", "active")]
    assert await purposes("?status=expired") == [("login", "expired")]
    assert await purposes("?status=revoked") == [("vc_issuance", "revoked")]
    assert await purposes("?purpose=login") == [("login", "expired")]
    assert await purposes("?purpose=login&status=active") == []
    assert await purposes("?purpose=decision_evaluation") == []


@pytest.mark.parametrize("query", ["?status=pending", "?purpose=marketing", "?status="])
async def test_list_refuses_unknown_filter_values(gateway: GatewayClient, query: str) -> None:
    ada = await gateway.caller()
    response = await gateway.client.get(f"/auth/consent{query}", headers=ada.headers)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"purposes": ["marketing"]}, "unknown purpose 'marketing'"),
        ({"purposes": []}, "purposes"),
        ({"purposes": "login"}, "purposes"),
        ({}, "purposes"),
        ({"purposes": ["login"], "user_id": "usr_x"}, "unknown field"),
    ],
)
async def test_bad_bodies_are_400(gateway: GatewayClient, body: dict[str, object], words: str) -> None:
    ada = await gateway.caller()
    for path in ("/auth/consent", "/auth/consent/revoke"):
        response = await gateway.client.post(path, json=body, headers=ada.headers)
        assert response.status_code == 400, response.text
        assert words in response.json()["error_description"]


async def test_unknown_purposes_list_the_known_ones(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    response = await gateway.client.post("/auth/consent", json={"purposes": ["login", "ads"]}, headers=ada.headers)
    assert response.json()["error"] == "invalid_purpose"
    assert "login, registry_check, vc_issuance, decision_evaluation" in response.json()["error_description"]
    listing = await gateway.client.get("/auth/consent", headers=ada.headers)
    assert listing.json() == {"consents": []}  # nothing granted when one purpose is refused


@pytest.mark.parametrize(("method", "path"), [("POST", "/auth/consent"), ("POST", "/auth/consent/revoke"),
                                               ("GET", "/auth/consent")])
async def test_every_route_needs_a_bearer_token(gateway: GatewayClient, method: str, path: str) -> None:
    response = await gateway.client.request(method, path, json={"purposes": ["login"]})
    assert response.status_code == 401
    bad = await gateway.client.request(method, path, json={"purposes": ["login"]},
                                       headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"


async def test_require_says_why_consent_is_missing(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    service: ConsentService = gateway.app.state.consent

    async def refusal() -> str:
        with pytest.raises(ApiError) as caught:
            await service.require(ada.user_id, "vc_issuance")
        assert caught.value.status_code == 403
        assert caught.value.extra == {"purpose": "vc_issuance"}
        return caught.value.error

    assert await refusal() == "missing_consent"
    await gateway.grant(ada, "vc_issuance")
    await service.require(ada.user_id, "vc_issuance")
    assert await service.active_purposes(ada.user_id) == {"vc_issuance"}
    ada = await gateway.later(ada, days=365)
    assert await refusal() == "consent_expired"
    assert await service.active_purposes(ada.user_id) == set()
    await gateway.grant(ada, "vc_issuance")
    await gateway.client.post("/auth/consent/revoke", json={"purposes": ["vc_issuance"]}, headers=ada.headers)
    assert await refusal() == "consent_revoked"


@pytest.mark.parametrize(
    ("path", "body", "purpose"),
    [
        ("/registry/citizen", {"national_id": "123456789"}, "registry_check"),
        ("/registry/sanctions", {"national_id": "123456789"}, "registry_check"),
        ("/vc/issue", {"type": "AgeOver18", "national_id": "123456789"}, "vc_issuance"),
    ],
)
async def test_personal_data_routes_answer_the_three_refusals(
    gateway: GatewayClient, path: str, body: dict[str, str], purpose: str
) -> None:
    ada = await gateway.caller()

    async def error() -> str:
        response = await gateway.client.post(path, json=body, headers=ada.headers)
        assert response.status_code == 403, response.text
        assert response.json()["purpose"] == purpose
        return str(response.json()["error"])

    assert await error() == "missing_consent"
    await gateway.grant(ada, purpose)
    ada = await gateway.later(ada, days=366)
    assert await error() == "consent_expired"
    await gateway.grant(ada, purpose)
    await gateway.client.post("/auth/consent/revoke", json={"purposes": [purpose]}, headers=ada.headers)
    assert await error() == "consent_revoked"
    denied = [e for e in gateway.events if e.outcome == "denied"]
    assert [e.reason for e in denied] == ["missing_consent", "consent_expired", "consent_revoked"]
    assert {(e.subject, e.purpose) for e in denied} == {(ada.user_id, purpose)}
    assert gateway.app.state.registry.calls == {"citizen": 0, "sanctions": 0}


async def test_a_user_never_reads_or_changes_another_users_consents(gateway: GatewayClient) -> None:
    ada = await gateway.caller("ada@example.com")
    bob = await gateway.caller("bob@example.com")
    await gateway.grant(ada, "registry_check", "vc_issuance")
    # Bob sees only his own (none), whatever the filters.
    for query in ("", "?status=active", "?purpose=registry_check"):
        response = await gateway.client.get(f"/auth/consent{query}", headers=bob.headers)
        assert response.json() == {"consents": []}
    # Bob revoking "the same" purposes revokes nothing of Ada's.
    revoked = await gateway.client.post("/auth/consent/revoke", json={"purposes": ["registry_check"]},
                                        headers=bob.headers)
    assert revoked.json()["revoked"] == []
    # Bob granting creates his own records, leaving Ada's untouched.
    ada_before = (await gateway.client.get("/auth/consent", headers=ada.headers)).json()
    granted = (await gateway.grant(bob, "registry_check")).json()["granted"][0]
    ada_after = (await gateway.client.get("/auth/consent", headers=ada.headers)).json()
    assert ada_after == ada_before
    assert granted["id"] not in {c["id"] for c in ada_after["consents"]}
    await gateway.app.state.consent.require(ada.user_id, "registry_check")


async def test_consents_on_every_backend(any_gateway: GatewayClient) -> None:
    ada = await any_gateway.caller()
    await any_gateway.grant(ada, "registry_check", "decision_evaluation")
    await any_gateway.client.post("/auth/consent/revoke", json={"purposes": ["decision_evaluation"]},
                                  headers=ada.headers)
    listing = (await any_gateway.client.get("/auth/consent", headers=ada.headers)).json()["consents"]
    assert {c["purpose"]: c["status"] for c in listing} == {
        "decision_evaluation": "revoked", "registry_check": "active",
    }
    service: ConsentService = any_gateway.app.state.consent
    assert await service.active_purposes(ada.user_id) == {"registry_check"}


async def test_consents_survive_a_restart(
    gateway_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    settings = gateway_settings(database_url=durable_database_url)
    async with start_gateway(settings, clock) as first:
        ada = await first.caller()
        granted = (await first.grant(ada, "vc_issuance")).json()["granted"]
    async with start_gateway(settings, clock) as second:
        again = await second.caller()
        assert again.user_id == ada.user_id
        listing = (await second.client.get("/auth/consent", headers=again.headers)).json()["consents"]
        assert listing == granted
