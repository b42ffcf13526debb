"""Data rights through the app, with the real audit publisher storing events:
`GET /me/data-export` (profile, consents, credentials, the caller's events by
subject_ref, filters) and `DELETE /me` (revoke, erase in one transaction, evict cached
registry answers, keep the audit trail pseudonymously), and that neither ever reaches
another user's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest

from server.registry.clients import SANCTIONED, VALID_ADULT
from stores import NotFound
from tests.gateway.conftest import Caller, GatewayClient, stored_events

EXPORT = "/me/data-export"


async def export(gateway: GatewayClient, caller: Caller, **params: str) -> dict[str, Any]:
    assert await gateway.app.state.events.wait_delivered(10)
    response = await gateway.client.get(EXPORT, params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["total"] == len(body["events"])
    return body


async def decide(gateway: GatewayClient, caller: Caller, national_id: str = VALID_ADULT) -> str:
    response = await gateway.client.post("/decision/evaluate", headers=caller.headers, json={
        "purpose": "age_verification", "context": {"national_id": national_id}})
    assert response.status_code == 200, response.text
    return str(response.json()["decision_id"])


def assert_error(response: httpx.Response, status: int, error: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["error"], body["status_code"]) == (error, status)
    for word in words:
        assert word in body["error_description"], body


@pytest.fixture
async def ada(audited_gateway: GatewayClient) -> Caller:
    """Ada with consents, a credential and one decision."""
    gateway = audited_gateway
    caller = await gateway.caller("ada@example.com")
    await gateway.grant(caller, "decision_evaluation", "vc_issuance")
    issued = await gateway.client.post("/vc/issue", json={"type": "AgeOver18", "national_id": VALID_ADULT},
                                       headers=caller.headers)
    assert issued.status_code == 200, issued.text
    await decide(gateway, caller)
    return caller


@pytest.fixture
async def bob(audited_gateway: GatewayClient) -> Caller:
    caller = await audited_gateway.caller("bob@example.com")
    await audited_gateway.grant(caller, "decision_evaluation")
    await decide(audited_gateway, caller, SANCTIONED)
    return caller


# -- export ---------------------------------------------------------------------------------


async def test_export_holds_the_decision_records_with_the_national_id_hashed(
    audited_gateway: GatewayClient, ada: Caller, bob: Caller
) -> None:
    await stored_events(audited_gateway)
    body = await export(audited_gateway, ada)
    refs = audited_gateway.app.state.events.subject_refs
    [decision] = [e for e in body["events"] if e["action"] == "decision_made"]
    [record] = body["decision_records"]
    assert (record["decision_id"], record["purpose"], record["status"], record["reason"]) == (
        decision["decision_id"], "age_verification", decision["decision"], decision["reason"])
    assert record["context"] == {"national_id": refs.value_ref(VALID_ADULT)}
    assert VALID_ADULT not in str(record) and ada.user_id not in str(record)
    assert record["facts"]["subject"]["sub"] == refs.ref(ada.user_id)
    assert record["hashed"] == ["context.national_id", "subject.sub"]
    # filtered like the events: no decision record is a `consent_granted`
    assert (await export(audited_gateway, ada, action="consent_granted"))["decision_records"] == []


async def test_export_holds_profile_consents_credentials_and_events(
    audited_gateway: GatewayClient, ada: Caller
) -> None:
    body = await export(audited_gateway, ada)
    assert body["user_id"] == ada.user_id
    assert body["export_date"].endswith("Z")
    assert body["filters"] == {"from": None, "to": None, "action": None}
    assert body["profile"]["id"] == ada.user_id and body["profile"]["email"] == ada.email
    assert sorted((c["purpose"], c["status"]) for c in body["consents"]) == [
        ("decision_evaluation", "active"), ("vc_issuance", "active")]
    [credential] = body["credentials"]
    assert (credential["type"], credential["subject"], credential["revoked_at"]) == ("AgeOver18", ada.user_id, None)
    actions = [e["action"] for e in body["events"]]
    for expected in ("user_created", "tokens_issued", "consent_granted", "vc_issued", "decision_made"):
        assert expected in actions, actions
    [decision] = [e for e in body["events"] if e["action"] == "decision_made"]
    assert decision["purpose"] == "age_verification" and decision["decision"] == "pass"
    assert decision["decision_id"].startswith("dec_") and decision["policy_revision"].startswith("sha256:")
    assert set(decision) == {"id", "timestamp", "action", "purpose", "decision", "reason", "decision_id",
                             "policy_revision", "request_id"}  # no chain fields, no subject_ref


async def test_export_matches_its_documented_models(audited_gateway: GatewayClient, ada: Caller) -> None:
    await stored_events(audited_gateway)
    body = await export(audited_gateway, ada)
    assert body["decision_records"] and body["credentials"] and body["events"] and body["consents"]
    document = (await audited_gateway.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    validator = jsonschema.Draft202012Validator(
        {**schemas["ExportResponse"], "components": document["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    assert not list(validator.iter_errors(body))
    # every item field is documented, and every time is a date-time
    for field, model in (("consents", "ConsentModel"), ("credentials", "HeldCredential"),
                         ("events", "ExportedEvent"), ("decision_records", "ExportedDecisionRecord")):
        properties = schemas[model]["properties"]
        for item in body[field]:
            assert set(item) <= set(properties), (field, set(item) - set(properties))
            assert set(schemas[model]["required"]) <= set(item), field
    assert set(body["profile"]) == set(schemas["ExportedProfile"]["properties"])
    assert schemas["ExportedEvent"]["properties"]["timestamp"]["format"] == "date-time"
    assert schemas["ExportedDecisionRecord"]["properties"]["recorded_at"]["format"] == "date-time"
    assert schemas["ExportedProfile"]["properties"]["created_at"]["format"] == "date-time"
    assert schemas["ExportResponse"]["properties"]["decision_records"]["items"] == {
        "$ref": "#/components/schemas/ExportedDecisionRecord"}


async def test_export_is_audited(audited_gateway: GatewayClient, ada: Caller) -> None:
    await export(audited_gateway, ada)
    body = await export(audited_gateway, ada, action="data_exported")
    [event] = body["events"]
    assert (event["action"], event["decision"]) == ("data_exported", "exported")


async def test_export_filters_by_action_and_time(audited_gateway: GatewayClient, ada: Caller) -> None:
    gateway = audited_gateway
    start = gateway.clock.now
    gateway.clock.advance(days=3)
    ada = await gateway.caller(ada.email)  # the first token has expired
    await gateway.grant(ada, "registry_check")  # audited at start + 3 days (the service clock)
    decisions = await export(gateway, ada, action="decision_made")
    assert [e["action"] for e in decisions["events"]] == ["decision_made"]
    assert decisions["filters"]["action"] == "decision_made"

    day = (start + timedelta(days=2)).date().isoformat()
    recent = await export(gateway, ada, **{"from": day, "action": "consent_granted"})
    assert [e["purpose"] for e in recent["events"]] == ["registry_check"]
    assert recent["filters"]["from"] == f"{day}T00:00:00Z"
    older = await export(gateway, ada, to=(start + timedelta(days=1)).isoformat(), action="consent_granted")
    assert sorted(e["purpose"] for e in older["events"]) == ["decision_evaluation", "vc_issuance"]
    # a date as `to` includes that whole day
    same_day = await export(gateway, ada, to=start.date().isoformat(), action="consent_granted")
    assert len(same_day["events"]) == 2
    window = await export(gateway, ada, **{"from": (start + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                           "to": (start + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert {e["action"] for e in window["events"]} == {"tokens_issued", "consent_granted", "data_exported"}
    assert (await export(gateway, ada, action="no_such_action"))["events"] == []


@pytest.mark.parametrize(("params", "words"), [
    ({"from": "yesterday"}, ("from", "RFC 3339")),
    ({"to": "2026-13-01"}, ("to",)),
    ({"from": "2026-01-01T10:00:00"}, ("from", "RFC 3339")),  # no offset: not RFC 3339, as the document says
    ({"from": "2026-01-01T10"}, ("from",)),  # ISO 8601, not RFC 3339
    ({"to": "20260101"}, ("to",)),
    ({"from": "2026-02-01", "to": "2026-01-01"}, ("earlier",)),
    ({"from": "2026-01-01T10:00:00Z", "to": "2026-01-01T10:00:00Z"}, ("earlier",)),
    ({"action": "Decision Made"}, ("action",)),
    ({"actions": "decision_made"}, ("actions", "unknown")),
])
async def test_export_refuses_bad_filters(audited_gateway: GatewayClient, ada: Caller, params: dict[str, str],
                                          words: tuple[str, ...]) -> None:
    response = await audited_gateway.client.get(EXPORT, params=params, headers=ada.headers)
    assert_error(response, 400, "invalid_request", *words)


async def test_export_and_erasure_need_a_token(audited_gateway: GatewayClient) -> None:
    assert_error(await audited_gateway.client.get(EXPORT), 401, "unauthorized")
    assert_error(await audited_gateway.client.delete("/me"), 401, "unauthorized")
    forged = {"Authorization": "Bearer not.a.token"}
    assert_error(await audited_gateway.client.get(EXPORT, headers=forged), 401, "invalid_token")
    assert_error(await audited_gateway.client.delete("/me", headers=forged), 401, "invalid_token")


async def test_an_export_never_holds_another_users_data(
    audited_gateway: GatewayClient, ada: Caller, bob: Caller
) -> None:
    gateway = audited_gateway
    adas, bobs = await export(gateway, ada), await export(gateway, bob)
    refs = gateway.app.state.events.subject_refs
    stored = await stored_events(gateway)
    by_id = {e.id: e for e in stored}
    assert {by_id[e["id"]].subject_ref for e in adas["events"]} == {refs.ref(ada.user_id)}
    assert {by_id[e["id"]].subject_ref for e in bobs["events"]} == {refs.ref(bob.user_id)}
    assert [e["decision"] for e in bobs["events"] if e["action"] == "decision_made"] == ["fail"]
    assert bobs["credentials"] == [] and bobs["profile"]["email"] == "bob@example.com"
    assert [c["purpose"] for c in bobs["consents"]] == ["decision_evaluation"]
    # every one of Ada's stored events is in her export, and none of Bob's
    adas_stored = [e.id for e in stored if e.subject_ref == refs.ref(ada.user_id)]
    assert [e["id"] for e in adas["events"]] == adas_stored[:len(adas["events"])]
    # the query has no parameter that could name someone else
    response = await gateway.client.get(EXPORT, params={"user_id": bob.user_id}, headers=ada.headers)
    assert_error(response, 400, "invalid_request", "user_id")


# -- erasure --------------------------------------------------------------------------------


async def test_delete_me_erases_everything_and_keeps_the_trail_pseudonymous(
    audited_gateway: GatewayClient, ada: Caller, bob: Caller
) -> None:
    gateway = audited_gateway
    state = gateway.app.state
    ref = state.events.subject_refs.ref(ada.user_id)
    before = [e for e in await stored_events(gateway) if e.subject_ref == ref]
    records = state.stores.decision_records
    [adas_record] = await records.query(subject_ref=ref)
    [bobs_record] = await records.query(subject_ref=state.events.subject_refs.ref(bob.user_id))

    response = await gateway.client.delete("/me", headers=ada.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == ada.user_id
    assert datetime.fromisoformat(body["deleted_at"]) <= datetime.now(UTC) + timedelta(seconds=5)
    assert set(body["deleted"]) == {"users", "sessions", "refresh_tokens", "consent_records",
                                    "verifiable_credentials", "decision_records", "registry_cache"}
    assert body["retained"] == ["audit_events", "token_revocations"]
    assert set(body["retention"]) == set(body["retained"])
    assert body["counts"]["users"] == 1 and body["counts"]["consent_records"] == 2
    assert body["counts"]["verifiable_credentials"] == 1 and body["counts"]["sessions"] == 1
    assert body["counts"]["registry_cache"] == 2  # citizen and sanctions answers looked up for Ada
    assert body["counts"]["decision_records"] == 1
    assert await records.query(subject_ref=ref) == [] and await records.query() == [bobs_record]
    assert adas_record.decision_id in {e.decision_id for e in before}
    assert body["sessions_revoked"] == 1

    # a second call, and any other use of her tokens, is a clean 401
    again = await gateway.client.delete("/me", headers=ada.headers)
    assert_error(again, 401, "invalid_token", "revoked")
    assert_error(await gateway.client.get(EXPORT, headers=ada.headers), 401, "invalid_token")
    refresh = await gateway.client.post("/auth/refresh", json={"refresh_token": ada.tokens["refresh_token"]})
    assert_error(refresh, 400, "invalid_grant")

    stores = state.stores
    with pytest.raises(NotFound):
        await stores.users.get(ada.user_id)
    assert await stores.consents.list_for_user(ada.user_id) == []
    assert await stores.credentials.list_for_user(ada.user_id) == []
    assert await stores.sessions.list_for_user(ada.user_id) == []

    # the trail keeps every event, under the reference only; erasure itself is one more
    after = [e for e in await stored_events(gateway) if e.subject_ref == ref]
    assert [e.id for e in after[:len(before)]] == [e.id for e in before]
    assert [e.action for e in after[len(before):]] == ["sessions_revoked", "data_deleted"]
    assert after[-1].decision == "deleted"

    # Bob is untouched
    bobs = await export(gateway, bob)
    assert bobs["profile"]["id"] == bob.user_id and bobs["total"] > 0


async def test_delete_me_evicts_the_cached_registry_answers(audited_gateway: GatewayClient, ada: Caller) -> None:
    gateway = audited_gateway
    registry = gateway.app.state.registry
    calls = dict(registry.calls)
    response = await gateway.client.delete("/me", headers=ada.headers)
    assert response.status_code == 200, response.text
    carol = await gateway.caller("carol@example.com")
    await gateway.grant(carol, "decision_evaluation")
    await decide(gateway, carol)  # the same national id: looked up again, not served from the cache
    assert registry.calls == {"citizen": calls["citizen"] + 1, "sanctions": calls["sanctions"] + 1}


async def test_a_user_can_only_erase_themselves(audited_gateway: GatewayClient, ada: Caller, bob: Caller) -> None:
    gateway = audited_gateway
    # a parameter naming someone is refused, rather than ignored (which would erase the caller)
    response = await gateway.client.delete("/me", params={"user_id": ada.user_id}, headers=bob.headers)
    assert_error(response, 400, "invalid_request", "user_id")
    response = await gateway.client.delete("/me", headers=bob.headers)
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == bob.user_id
    assert (await gateway.app.state.stores.users.get(ada.user_id)).email == ada.email
    adas = await export(gateway, ada)
    assert len(adas["credentials"]) == 1 and len(adas["consents"]) == 2


async def test_signing_up_again_after_erasure_starts_from_nothing(
    audited_gateway: GatewayClient, ada: Caller
) -> None:
    gateway = audited_gateway
    assert (await gateway.client.delete("/me", headers=ada.headers)).status_code == 200
    again = await gateway.caller(ada.email)
    assert again.user_id != ada.user_id
    body = await export(gateway, again)
    assert body["consents"] == [] and body["credentials"] == []
    assert {e["action"] for e in body["events"]} <= {"user_created", "tokens_issued"}
