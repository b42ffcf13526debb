"""Every timestamp the HTTP API answers is written one way: RFC 3339, in UTC, to the
second, with a `Z` (docs/api.md, Conventions). The service clock is set to a moment with
a fraction of a second, which every answer drops."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jwt
import pytest

from server.registry.clients import VALID_ADULT
from tests.auth.conftest import FakeClock
from tests.gateway.conftest import GatewayClient
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL

SECOND = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
#: The fields that hold a time, wherever they are in an answer.
TIME_FIELDS = frozenset({
    "granted_at", "expires_at", "revoked_at", "checked_at", "issued_at", "issuanceDate", "evaluated_at",
    "loaded_at", "at", "export_date", "from", "to", "created_at", "updated_at", "timestamp", "deleted_at",
})


@pytest.fixture
def clock() -> FakeClock:
    clock = FakeClock()
    clock.now = clock.now.replace(microsecond=654_321)
    return clock


def times(value: object, path: str = "") -> dict[str, str]:
    """Every time field of `value` that holds a value, by its path."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in TIME_FIELDS and item is not None:
                assert isinstance(item, str), (where, item)
                found[where] = item
            else:
                found.update(times(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(times(item, f"{path}[{index}]"))
    return found


def stamped(response: httpx.Response, *expected: str) -> dict[str, str]:
    """The answer's times, each checked against the one format; `expected` must be there."""
    assert response.status_code == 200, response.text
    found = times(response.json())
    for where, text in found.items():
        assert SECOND.fullmatch(text), (response.request.url.path, where, text)
    assert set(expected) <= set(found), (response.request.url.path, sorted(found))
    return found


async def test_every_timestamp_of_the_api_is_rfc3339_utc_to_the_second(audited_gateway: GatewayClient) -> None:
    gateway, client = audited_gateway, audited_gateway.client
    now = gateway.clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")  # the service clock, its fraction dropped
    ada = await gateway.caller()
    auth = ada.headers

    granted = stamped(await gateway.grant(ada, "registry_check", "vc_issuance", "decision_evaluation"),
                      "granted[0].granted_at", "granted[0].expires_at")
    assert granted["granted[0].granted_at"] == now
    await client.post("/auth/consent/revoke", json={"purposes": ["registry_check"]}, headers=auth)
    listed = stamped(await client.get("/auth/consent", params={"status": "revoked"}, headers=auth),
                     "consents[0].revoked_at")
    assert listed["consents[0].revoked_at"] == now
    await gateway.grant(ada, "registry_check")

    citizen = stamped(await client.post("/registry/citizen", json={"national_id": VALID_ADULT}, headers=auth),
                      "checked_at")
    assert citizen == {"checked_at": now}
    stamped(await client.post("/registry/sanctions", json={"national_id": VALID_ADULT}, headers=auth), "checked_at")

    issued = await client.post("/vc/issue", json={"type": "AgeOver18", "national_id": VALID_ADULT}, headers=auth)
    assert stamped(issued, "issued_at") == {"issued_at": now}
    vc = jwt.decode(issued.json()["jwt"], options={"verify_signature": False})
    assert vc["vc"]["issuanceDate"] == now
    credential_id = issued.json()["credential_id"]
    stamped(await client.post("/vc/verify", json={"credential_id": credential_id}, headers=auth), "issued_at")

    stamped(await client.post("/decision/evaluate", headers=auth, json={
        "purpose": "age_verification", "context": {"national_id": VALID_ADULT}}), "evaluated_at")
    stamped(await client.post("/v1/data/age_verification", json={"input": ADULT_WITHOUT_CREDENTIAL},
                              headers=auth), "result.evaluated_at")
    gateway.app.state.policies.reload(force=True)
    stamped(await client.get("/v1/policies", headers=auth), "loaded_at", "last_reload.at")

    revoked = stamped(await client.post("/vc/revoke", json={"credential_id": credential_id}, headers=auth),
                      "revoked_at")
    assert revoked == {"revoked_at": now}

    assert await gateway.app.state.events.wait_delivered(10)
    exported = stamped(
        await client.get("/me/data-export", params={"from": "2000-01-01T00:00:00.5Z", "to": "2999-01-01"},
                         headers=auth),
        "export_date", "filters.from", "filters.to", "profile.created_at", "profile.updated_at",
        "consents[0].granted_at", "credentials[0].issued_at", "credentials[0].revoked_at", "events[0].timestamp",
    )
    assert exported["export_date"] == now
    assert (exported["filters.from"], exported["filters.to"]) == ("2000-01-01T00:00:00Z", "2999-01-02T00:00:00Z")  # a date: up to its end
    events: list[dict[str, Any]] = (await client.get("/me/data-export", headers=auth)).json()["events"]
    assert {e["action"] for e in events} >= {"tokens_issued", "consent_granted", "vc_issued", "decision_made"}
    assert all(SECOND.fullmatch(e["timestamp"]) for e in events)  # decisions and token events alike

    assert stamped(await client.delete("/me", headers=auth), "deleted_at") == {"deleted_at": now}
