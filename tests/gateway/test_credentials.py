"""Verifiable credentials: `AgeOver18` issued only to valid adult citizens, as JSON and
as a VC-JWT that verifies with the JWKS; verify by id (holder) or JWT (anyone); holder
revocation; regulated-mode claims; audit events; another user's credentials are never
reachable. On memory and SQLite; persistence also on PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from server.auth.keys import LoadedKey, new_signing_key
from server.auth.tokens import sign
from server.credentials import CredentialService
from server.settings import Settings
from tests.gateway.conftest import Caller, FakeClock, GatewayClient, start_gateway

ADULT = "123456789"


async def issue(gw: GatewayClient, caller: Caller, national_id: str = ADULT, **extra: Any) -> dict[str, Any]:
    response = await gw.client.post("/vc/issue", json={"type": "AgeOver18", "national_id": national_id, **extra},
                                    headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def issuer_of(gw: GatewayClient) -> Caller:
    caller = await gw.caller()
    await gw.grant(caller, "vc_issuance")
    return caller


async def test_issue_answers_the_v1_shape(gateway: GatewayClient) -> None:
    ada = await issuer_of(gateway)
    body = await issue(gateway, ada)
    assert set(body) == {"credential_id", "type", "subject", "issuer", "issued_at", "claims", "jwt"}
    assert body["type"] == "AgeOver18" and body["subject"] == ada.user_id
    assert body["issuer"] == gateway.auth.issuer
    assert body["claims"] == {"is_over_18": True, "verified_via": "citizen_registry", "national_id": ADULT}
    event = gateway.events[-1]
    assert (event.action, event.subject, event.outcome, event.purpose) == (
        "vc_issued", ada.user_id, "issued", "vc_issuance",
    )


async def test_the_jwt_is_a_w3c_credential_verifiable_with_the_jwks(gateway: GatewayClient) -> None:
    ada = await issuer_of(gateway)
    body = await issue(gateway, ada)
    jwks = (await gateway.client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(body["jwt"])
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(body["jwt"], key.key, algorithms=[header["alg"]], issuer=gateway.auth.issuer,
                        options={"require": ["iss", "sub", "iat", "jti"]})
    assert header["typ"] == "JWT"
    assert claims["sub"] == ada.user_id and claims["jti"] == body["credential_id"]
    vc = claims["vc"]
    assert vc["@context"] == ["https://www.w3.org/2018/credentials/v1"]
    assert vc["type"] == ["VerifiableCredential", "AgeOver18"]
    assert vc["issuer"] == gateway.auth.issuer and vc["issuanceDate"] == body["issued_at"]
    assert vc["credentialSubject"] == {"id": ada.user_id, **body["claims"]}


@pytest.mark.parametrize(("national_id", "reason"), [("111111111", "underage"), ("000000000", "invalid_citizen")])
async def test_only_valid_adults_get_age_over_18(gateway: GatewayClient, national_id: str, reason: str) -> None:
    ada = await issuer_of(gateway)
    response = await gateway.client.post("/vc/issue", json={"type": "AgeOver18", "national_id": national_id},
                                         headers=ada.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "not_eligible" and response.json()["reason"] == reason
    event = gateway.events[-1]
    assert (event.action, event.outcome, event.reason) == ("vc_issued", "refused", reason)
    service: CredentialService = gateway.app.state.credentials
    assert await service.held_types(ada.user_id) == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"type": "DriverLicence", "national_id": ADULT}, "unsupported_credential_type"),
        ({"type": "AgeOver18", "national_id": "bad id"}, "invalid_national_id"),
        ({"type": "AgeOver18"}, "invalid_request"),
        ({"type": "AgeOver18", "national_id": ADULT, "claims": {"is_over_18": True}}, "invalid_request"),
    ],
)
async def test_bad_issue_requests_are_400(gateway: GatewayClient, body: dict[str, Any], error: str) -> None:
    ada = await issuer_of(gateway)
    response = await gateway.client.post("/vc/issue", json=body, headers=ada.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


async def test_a_registry_timeout_while_issuing_is_a_504(
    gateway_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with start_gateway(gateway_settings(registry_latency_ms=300, registry_timeout_ms=20), clock) as gw:
        ada = await issuer_of(gw)
        response = await gw.client.post("/vc/issue", json={"type": "AgeOver18", "national_id": ADULT},
                                        headers=ada.headers)
        assert response.status_code == 504 and response.json()["error"] == "registry_unavailable"
        assert await gw.app.state.credentials.held_types(ada.user_id) == []


async def test_regulated_mode_minimises_the_claims(regulated_gateway: GatewayClient) -> None:
    ada = await issuer_of(regulated_gateway)
    body = await issue(regulated_gateway, ada)
    assert body["claims"] == {"is_over_18": True, "verified_via": "citizen_registry"}
    payload = body["jwt"].split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert ADULT not in json.dumps(decoded)


async def test_verify_by_id_and_by_jwt(gateway: GatewayClient) -> None:
    ada = await issuer_of(gateway)
    body = await issue(gateway, ada)
    expected = {"valid": True, **{k: body[k] for k in ("credential_id", "type", "subject", "issued_at", "claims")}}
    by_id = await gateway.client.post("/vc/verify", json={"credential_id": body["credential_id"]},
                                      headers=ada.headers)
    assert by_id.status_code == 200 and by_id.json() == expected
    # Anyone presented with the JWT can verify it.
    bob = await gateway.caller("bob@example.com")
    by_jwt = await gateway.client.post("/vc/verify", json={"jwt": body["jwt"]}, headers=bob.headers)
    assert by_jwt.status_code == 200 and by_jwt.json() == expected
    verified = [e for e in gateway.events if e.action == "vc_verified"]
    assert [(e.subject, e.outcome) for e in verified] == [(ada.user_id, "valid"), (bob.user_id, "valid")]


async def test_forged_and_foreign_jwts_are_not_valid(gateway: GatewayClient) -> None:
    ada = await issuer_of(gateway)
    body = await issue(gateway, ada)
    header, payload, signature = body["jwt"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["vc"]["credentialSubject"]["is_over_18"] = True
    claims["sub"] = "usr_mallory"
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    other_key = new_signing_key("RS256", gateway.clock.now)

    foreign = sign(claims, LoadedKey.parse(other_key), "JWT")
    id_token = ada.tokens["id_token"]
    for presented in (f"{header}.{tampered_payload}.{signature}", foreign, id_token, "not-a-jwt"):
        response = await gateway.client.post("/vc/verify", json={"jwt": presented}, headers=ada.headers)
        assert response.status_code == 200, response.text
        assert response.json()["valid"] is False and response.json()["reason"] == "invalid_jwt", response.json()
    assert [e.outcome for e in gateway.events if e.action == "vc_verified"] == ["invalid"] * 4


async def test_unknown_credentials_are_404(gateway: GatewayClient) -> None:
    ada = await gateway.caller()
    response = await gateway.client.post("/vc/verify", json={"credential_id": "vc_nope"}, headers=ada.headers)
    assert response.status_code == 404
    assert response.json()["valid"] is False and response.json()["reason"] == "credential_not_found"


@pytest.mark.parametrize("body", [{}, {"credential_id": "vc_x", "jwt": "a.b.c"}, {"credential_id": ""}])
async def test_verify_needs_exactly_one_of_id_or_jwt(gateway: GatewayClient, body: dict[str, str]) -> None:
    ada = await gateway.caller()
    response = await gateway.client.post("/vc/verify", json=body, headers=ada.headers)
    assert response.status_code == 400, response.text


async def test_the_holder_revokes(gateway: GatewayClient) -> None:
    ada = await issuer_of(gateway)
    body = await issue(gateway, ada)
    service: CredentialService = gateway.app.state.credentials
    assert await service.held_types(ada.user_id) == ["AgeOver18"]
    assert "AgeOver18" in await service.held_types(ada.user_id)
    revoked = await gateway.client.post("/vc/revoke", json={"credential_id": body["credential_id"]},
                                        headers=ada.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True and revoked.json()["credential_id"] == body["credential_id"]
    ada = await gateway.later(ada, minutes=5)
    again = await gateway.client.post("/vc/revoke", json={"credential_id": body["credential_id"]},
                                      headers=ada.headers)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # the first revocation stands
    for presented in ({"credential_id": body["credential_id"]}, {"jwt": body["jwt"]}):
        verified = await gateway.client.post("/vc/verify", json=presented, headers=ada.headers)
        assert verified.status_code == 200
        assert verified.json()["valid"] is False and verified.json()["reason"] == "credential_revoked"
    assert await service.held_types(ada.user_id) == []
    assert "AgeOver18" not in await service.held_types(ada.user_id)
    assert "vc_revoked" in gateway.actions()


async def test_a_user_never_reads_or_revokes_another_users_credentials(gateway: GatewayClient) -> None:
    ada = await issuer_of(gateway)
    body = await issue(gateway, ada)
    bob = await gateway.caller("bob@example.com")
    by_id = await gateway.client.post("/vc/verify", json={"credential_id": body["credential_id"]},
                                      headers=bob.headers)
    unknown = await gateway.client.post("/vc/verify", json={"credential_id": "vc_" + "0" * 32},
                                        headers=bob.headers)
    assert by_id.status_code == unknown.status_code == 404
    assert by_id.json()["error_description"] == unknown.json()["error_description"]
    assert ada.user_id not in by_id.text
    revoke = await gateway.client.post("/vc/revoke", json={"credential_id": body["credential_id"]},
                                       headers=bob.headers)
    assert revoke.status_code == 404 and revoke.json()["reason"] == "credential_not_found"
    assert "AgeOver18" in await gateway.app.state.credentials.held_types(ada.user_id)
    # Bob's issuing gives Bob a credential, never touching Ada's.
    await gateway.grant(bob, "vc_issuance")
    await issue(gateway, bob)
    assert len(await gateway.app.state.credentials.list(ada.user_id)) == 1


@pytest.mark.parametrize("path", ["/vc/issue", "/vc/verify", "/vc/revoke"])
async def test_credential_routes_need_a_bearer_token(gateway: GatewayClient, path: str) -> None:
    response = await gateway.client.post(path, json={"credential_id": "vc_x"})
    assert response.status_code == 401


async def test_credentials_on_every_backend(any_gateway: GatewayClient) -> None:
    ada = await issuer_of(any_gateway)
    body = await issue(any_gateway, ada)
    service: CredentialService = any_gateway.app.state.credentials
    verification = await service.verify(jwt=body["jwt"])
    assert verification.valid and verification.credential is not None
    assert verification.credential.claims == body["claims"]
    await service.revoke(ada.user_id, body["credential_id"])
    assert not (await service.verify(credential_id=body["credential_id"])).valid
    assert await service.held_types(ada.user_id) == []


async def test_credentials_survive_a_restart(
    gateway_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    settings = gateway_settings(database_url=durable_database_url)
    async with start_gateway(settings, clock) as first:
        body = await issue(first, await issuer_of(first))
    async with start_gateway(settings, clock) as second:
        ada = await second.caller()
        response = await second.client.post("/vc/verify", json={"jwt": body["jwt"]}, headers=ada.headers)
        assert response.json()["valid"] is True
        assert await second.app.state.credentials.held_types(ada.user_id) == ["AgeOver18"]
