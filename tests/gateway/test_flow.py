"""The complete V1 flow through the app, step by step with the V1 response shapes:
authorize -> token -> consent -> registry -> credential -> decision -> export -> delete,
in normal and regulated mode, on SQLite and PostgreSQL, with the real audit publisher
storing every event (and the hash chain still verifying after the erasure)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from server.audit import verify_trail
from server.registry.clients import VALID_ADULT
from server.settings import Settings
from stores import AuditEvent, NotFound
from tests.auth.conftest import CLIENT_ID, FakeClock, bearer
from tests.gateway.conftest import GatewayClient, start_audited_gateway, stored_events
from tests.stores.conftest import _url_for as url_for

CONSENTS = ["registry_check", "vc_issuance", "decision_evaluation"]


@pytest.fixture(params=["sqlite", "postgresql"])
def flow_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


@pytest.fixture(params=[False, True], ids=["normal", "regulated"])
async def flow_gateway(
    request: pytest.FixtureRequest, gateway_settings: Callable[..., Settings], flow_database_url: str,
    clock: FakeClock,
) -> AsyncIterator[GatewayClient]:
    settings = gateway_settings(database_url=flow_database_url, regulated_mode=request.param)
    async with start_audited_gateway(settings, clock) as gw:
        yield gw


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


async def test_the_complete_v1_flow(flow_gateway: GatewayClient) -> None:
    gateway, client = flow_gateway, flow_gateway.client
    regulated = gateway.app.state.settings.regulated_mode
    email = "ada.lovelace@example.com"

    # authorize -> token
    session = ok(await client.post("/auth/authorize", json={"email": email, "client_id": CLIENT_ID}))
    assert session["status"] == "pending_consent"
    user_id = session["user_id"]
    tokens = ok(await client.post("/auth/token", json={"grant_type": "session", "session_id": session["session_id"]}))
    assert (tokens["token_type"], tokens["expires_in"]) == ("Bearer", 3600)
    auth = bearer(tokens["access_token"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user_id and (("email" in claims) is not regulated)

    # consent
    granted = ok(await client.post("/auth/consent", json={"purposes": CONSENTS}, headers=auth))
    assert sorted(c["purpose"] for c in granted["granted"]) == sorted(CONSENTS) and granted["message"]
    listed = ok(await client.get("/auth/consent", headers=auth))["consents"]
    assert sorted((c["purpose"], c["status"]) for c in listed) == sorted((p, "active") for p in CONSENTS)

    # registry
    citizen = ok(await client.post("/registry/citizen", json={"national_id": VALID_ADULT}, headers=auth))
    assert citizen["valid"] is True
    if regulated:
        assert set(citizen) == {"national_id", "valid", "checked_at"}
    else:
        assert citizen["name"] and citizen["date_of_birth"] and citizen["address"]
    sanctions = ok(await client.post("/registry/sanctions", json={"national_id": VALID_ADULT}, headers=auth))
    assert set(sanctions) == {"national_id", "listed", "source", "checked_at"} and sanctions["listed"] is False

    # credential
    credential = ok(await client.post("/vc/issue", json={"type": "AgeOver18", "national_id": VALID_ADULT},
                                      headers=auth))
    assert {"credential_id", "type", "subject", "issuer", "issued_at", "claims", "jwt"} <= set(credential)
    assert credential["subject"] == user_id and credential["claims"]["is_over_18"] is True
    assert ("national_id" in credential["claims"]) is not regulated
    keys = jwt.PyJWKSet.from_dict(ok(await client.get("/.well-known/jwks.json")))
    header = jwt.get_unverified_header(credential["jwt"])
    vc = jwt.decode(credential["jwt"], keys[header["kid"]].key, algorithms=[header["alg"]],
                    options={"verify_aud": False})
    assert vc["vc"]["credentialSubject"]["id"] == user_id
    verified = ok(await client.post("/vc/verify", json={"credential_id": credential["credential_id"]}, headers=auth))
    assert verified["valid"] is True

    # decision
    decision = ok(await client.post("/decision/evaluate?explain=true", headers=auth, json={
        "purpose": "age_verification", "context": {"national_id": VALID_ADULT}}))
    assert (decision["status"], decision["reason"], decision["conditions"]) == ("pass", "all_checks_passed", [])
    assert decision["evidence"] == {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True,
                                    "has_credential": True}
    assert decision["policy_revision"] == gateway.app.state.policies.current.revision
    assert [e["reason"] for e in decision["explanation"] if e["kind"] == "rule"][-1] == "all_checks_passed"
    screening = ok(await client.post("/decision/evaluate", headers=auth, json={
        "purpose": "sanctions_screening", "context": {"national_id": VALID_ADULT}}))
    assert (screening["status"], screening["reason"]) == ("pass", "not_listed")

    # export
    assert await gateway.app.state.events.wait_delivered(10)
    exported = ok(await client.get("/me/data-export", headers=auth))
    assert (exported["user_id"], exported["total"]) == (user_id, len(exported["events"]))
    assert exported["profile"]["email"] == email
    assert [c["credential_id"] for c in exported["credentials"]] == [credential["credential_id"]]
    assert sorted(c["purpose"] for c in exported["consents"]) == sorted(CONSENTS)
    actions = [e["action"] for e in exported["events"]]
    for action in ("user_created", "tokens_issued", "consent_granted", "registry_citizen_checked",
                   "registry_sanctions_checked", "vc_issued", "vc_verified", "decision_made"):
        assert action in actions, actions
    logged = {e["decision_id"]: e for e in exported["events"] if e["action"] == "decision_made"}
    assert set(logged) == {decision["decision_id"], screening["decision_id"]}
    assert logged[decision["decision_id"]]["policy_revision"] == decision["policy_revision"]
    only = ok(await client.get("/me/data-export", params={"action": "decision_made"}, headers=auth))
    assert {e["decision_id"] for e in only["events"]} == set(logged)

    # delete
    erased = ok(await client.delete("/me", headers=auth))
    assert {"message", "deleted_at", "deleted", "retained"} <= set(erased)
    assert "audit_events" in erased["retained"] and "users" in erased["deleted"]
    second = await client.delete("/me", headers=auth)
    assert second.status_code == 401 and second.json()["error"] == "invalid_token"
    with pytest.raises(NotFound):
        await gateway.app.state.stores.users.get(user_id)

    # the trail: kept, chained, and holding nothing that names the person
    events = await stored_events(gateway)
    ref = gateway.app.state.events.subject_refs.ref(user_id)
    assert {e.action for e in events if e.subject_ref == ref} >= {"decision_made", "data_exported", "data_deleted"}
    assert (await verify_trail(gateway.app.state.stores.audit_events)).intact
    for value in (user_id, email, VALID_ADULT):
        assert not any(value in str(getattr(e, f.name)) for e in events for f in fields(AuditEvent)), value
