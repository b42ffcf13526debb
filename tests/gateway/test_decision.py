"""`POST /decision/evaluate` through the app, on the shipped policies and the real consent,
registry (mock clients) and credential services: the decision flow
(server/decisions/evaluate.py) and each of its error answers, the decision log, the metric, data minimisation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from engine import Purpose
from server.events import DecisionMade
from server.metrics import REGISTRY as METRICS
from server.registry.clients import INVALID_CITIZEN, PEP, SANCTIONED, UNDERAGE, VALID_ADULT
from server.settings import Settings
from tests.auth.conftest import FakeClock
from tests.gateway.conftest import Caller, GatewayClient, start_gateway

EVALUATE = "/decision/evaluate"
AGE = "age_verification"


async def evaluate(gateway: GatewayClient, caller: Caller, purpose: str = AGE, *, explain: str | None = None,
                   **context: Any) -> httpx.Response:
    url = EVALUATE if explain is None else f"{EVALUATE}?explain={explain}"
    return await gateway.client.post(url, json={"purpose": purpose, "context": context}, headers=caller.headers)


def decisions(gateway: GatewayClient) -> list[DecisionMade]:
    return [e for e in gateway.events if isinstance(e, DecisionMade)]


def assert_error(response: httpx.Response, status: int, error: str, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body["status_code"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    for word in words:
        assert word in body["error_description"], body
    return body


@pytest.fixture
async def ada(gateway: GatewayClient) -> Caller:
    """A caller holding the consents every shipped purpose needs."""
    caller = await gateway.caller("ada@example.com")
    await gateway.grant(caller, "decision_evaluation", "registry_check", "vc_issuance")
    return caller


# -- the decision ---------------------------------------------------------------------------


async def test_an_adult_without_credential_must_obtain_one(gateway: GatewayClient, ada: Caller) -> None:
    response = await evaluate(gateway, ada, national_id=VALID_ADULT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision_id"].startswith("dec_")
    assert body["policy_revision"] == gateway.app.state.policies.current.revision
    assert {k: body[k] for k in ("purpose", "status", "reason", "conditions", "evidence")} == {
        "purpose": AGE, "status": "pass_with_conditions", "reason": "missing_credential",
        "conditions": ["obtain_age_credential"],
        "evidence": {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False},
    }
    assert "explanation" not in body
    assert body["evaluated_at"].endswith("Z")


async def test_holding_the_credential_passes_and_revoking_it_counts(gateway: GatewayClient, ada: Caller) -> None:
    issued = await gateway.client.post("/vc/issue", json={"type": "AgeOver18", "national_id": VALID_ADULT},
                                       headers=ada.headers)
    assert issued.status_code == 200, issued.text
    passed = (await evaluate(gateway, ada, national_id=VALID_ADULT)).json()
    assert (passed["status"], passed["reason"], passed["evidence"]["has_credential"]) == (
        "pass", "all_checks_passed", True)
    revoked = await gateway.client.post("/vc/revoke", json={"credential_id": issued.json()["credential_id"]},
                                        headers=ada.headers)
    assert revoked.status_code == 200, revoked.text
    again = (await evaluate(gateway, ada, national_id=VALID_ADULT)).json()
    assert (again["reason"], again["evidence"]["has_credential"]) == ("missing_credential", False)


@pytest.mark.parametrize(("national_id", "reason"), [
    (SANCTIONED, "sanctioned"), (INVALID_CITIZEN, "invalid_citizen"), (UNDERAGE, "underage"),
])
async def test_registry_answers_decide(gateway: GatewayClient, ada: Caller, national_id: str, reason: str) -> None:
    body = (await evaluate(gateway, ada, national_id=national_id)).json()
    assert (body["status"], body["reason"]) == ("fail", reason)


async def test_context_reaches_the_rules(gateway: GatewayClient, ada: Caller) -> None:
    large = (await evaluate(gateway, ada, "high_value_transfer", national_id=PEP, amount=12000)).json()
    small = (await evaluate(gateway, ada, "high_value_transfer", national_id=PEP, amount=500)).json()
    assert (large["status"], large["reason"], large["conditions"]) == (
        "pass_with_conditions", "manual_review_required", ["compliance_review"])
    assert (small["status"], small["reason"]) == ("pass", "approved")
    assert large["evidence"] == {"citizen_valid": True, "sanctions_listed": False, "is_pep": True}


async def test_explain_shows_each_rule_and_the_facts_read(gateway: GatewayClient, ada: Caller) -> None:
    body = (await evaluate(gateway, ada, explain="true", national_id=UNDERAGE)).json()
    entries = body["explanation"]
    evidence = {e["fact"]: e for e in entries if e["kind"] == "evidence"}
    assert evidence["is_over_18"]["expected"] is True and evidence["is_over_18"]["actual"] is False
    assert evidence["is_over_18"]["status"] == "unexpected"
    rules = [e for e in entries if e["kind"] == "rule"]
    assert [(r["reason"], r["matched"]) for r in rules] == [
        ("sanctioned", False), ("invalid_citizen", False), ("underage", True)]
    assert all(isinstance(r["line"], int) for r in rules)
    bad = await evaluate(gateway, ada, explain="perhaps", national_id=VALID_ADULT)
    assert_error(bad, 400, "invalid_request", "explain")


async def test_each_decision_is_audited_and_counted(gateway: GatewayClient, ada: Caller) -> None:
    def counted(status: str) -> float:
        return METRICS.get_sample_value("decisions_total", {"purpose": AGE, "status": status}) or 0.0

    before = counted("fail")
    response = await evaluate(gateway, ada, national_id=SANCTIONED)
    body = response.json()
    assert counted("fail") == before + 1
    [event] = decisions(gateway)
    assert event == DecisionMade(
        decision_id=body["decision_id"], purpose=AGE, decision="fail", reason="sanctioned",
        policy_revision=body["policy_revision"], timestamp=body["evaluated_at"],
        request_id=response.headers["x-request-id"], subject=ada.user_id,
    )


# -- data minimisation ------------------------------------------------------------------------


async def test_a_purpose_without_citizen_facts_makes_no_citizen_call(gateway: GatewayClient, ada: Caller) -> None:
    registry = gateway.app.state.registry
    before = dict(registry.calls)
    body = (await evaluate(gateway, ada, "sanctions_screening", national_id=PEP)).json()
    assert (body["status"], body["reason"]) == ("pass_with_conditions", "politically_exposed")
    assert body["evidence"] == {"sanctions_listed": False, "is_pep": True}
    assert registry.calls == {"citizen": before["citizen"], "sanctions": before["sanctions"] + 1}


async def test_each_registry_is_called_once_per_decision_then_cached(gateway: GatewayClient, ada: Caller) -> None:
    registry = gateway.app.state.registry
    before = dict(registry.calls)
    await evaluate(gateway, ada, national_id="AB123456")
    await evaluate(gateway, ada, national_id="AB123456")
    assert registry.calls == {"citizen": before["citizen"] + 1, "sanctions": before["sanctions"] + 1}


async def test_regulated_mode_decides_on_derived_facts_only(regulated_gateway: GatewayClient) -> None:
    gateway = regulated_gateway
    ada = await gateway.caller()
    await gateway.grant(ada, "decision_evaluation")
    body = (await evaluate(gateway, ada, national_id=VALID_ADULT)).json()
    assert (body["status"], body["reason"]) == ("pass_with_conditions", "missing_credential")
    assert set(body["evidence"]) == {"sanctions_listed", "citizen_valid", "is_over_18", "has_credential"}


# -- errors of the decision flow, in its order -------------------------------------------------


async def test_authentication_comes_first(gateway: GatewayClient) -> None:
    missing = await gateway.client.post(EVALUATE, json={"purpose": "nope"})
    assert_error(missing, 401, "unauthorized", "Bearer")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    forged = await gateway.client.post(EVALUATE, json={"purpose": AGE}, headers={"Authorization": "Bearer x.y.z"})
    assert_error(forged, 401, "invalid_token")
    assert decisions(gateway) == []


@pytest.mark.parametrize(("content", "headers", "status", "error", "word"), [
    (b"", {"Content-Type": "application/json"}, 400, "invalid_json", "empty"),
    (b"{", {"Content-Type": "application/json"}, 400, "invalid_json", "malformed"),
    (b'{"purpose": "x"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "application/json"),
    (b'{"context": {}}', {"Content-Type": "application/json"}, 400, "invalid_request", "purpose"),
    (b'{"purpose": 7}', {"Content-Type": "application/json"}, 400, "invalid_request", "purpose"),
    (b'{"purpose": "age_verification", "context": []}', {"Content-Type": "application/json"}, 400,
     "invalid_request", "context"),
    (b'{"purpose": "age_verification", "contxt": {}}', {"Content-Type": "application/json"}, 400,
     "invalid_request", "contxt"),
    (b'{"purpose": "age_verification", "context": {"n": NaN}}', {"Content-Type": "application/json"}, 400,
     "invalid_request", "finite"),
])
async def test_malformed_bodies(gateway: GatewayClient, ada: Caller, content: bytes, headers: dict[str, str],
                                status: int, error: str, word: str) -> None:
    response = await gateway.client.post(EVALUATE, content=content, headers={**ada.headers, **headers})
    assert_error(response, status, error, word)


async def test_unknown_purpose_is_a_400_listing_the_known_ones(gateway: GatewayClient, ada: Caller) -> None:
    body = assert_error(await evaluate(gateway, ada, "age_verfication"), 400, "unknown_purpose", "age_verfication")
    assert body["known_purposes"] == ["age_verification", "high_value_transfer", "sanctions_screening"]
    assert decisions(gateway) == []


async def test_missing_consent_is_a_403_before_anything_is_gathered(gateway: GatewayClient) -> None:
    bob = await gateway.caller("bob@example.com")
    await gateway.grant(bob, "decision_evaluation")  # high_value_transfer also needs registry_check
    before = dict(gateway.app.state.registry.calls)
    response = await evaluate(gateway, bob, "high_value_transfer", national_id="B0B12345", amount=1)
    body = assert_error(response, 403, "missing_consent", "registry_check")
    assert body["purpose"] == "registry_check"
    # consents come before the context: even an invalid one answers 403
    assert_error(await evaluate(gateway, bob, "sanctions_screening", national_id="bad id"), 403, "missing_consent")
    assert gateway.app.state.registry.calls == before
    # the refusals are in the decision log, as fails with the refusal as reason
    first, second = decisions(gateway)
    assert (first.decision_id, first.purpose, first.decision, first.reason, first.subject, first.request_id) == (
        body["decision_id"], "high_value_transfer", "fail", "missing_consent", bob.user_id,
        response.headers["x-request-id"])
    assert (second.purpose, second.reason) == ("sanctions_screening", "missing_consent")


async def test_revoked_and_expired_consents_are_403(gateway: GatewayClient, ada: Caller) -> None:
    revoke = await gateway.client.post("/auth/consent/revoke", json={"purposes": ["registry_check"]},
                                       headers=ada.headers)
    assert revoke.status_code == 200, revoke.text
    assert_error(await evaluate(gateway, ada, "sanctions_screening", national_id=PEP), 403, "consent_revoked")
    gateway.clock.advance(days=366)
    later = await gateway.caller(ada.email)  # the first access token has long expired
    assert_error(await evaluate(gateway, later, national_id=VALID_ADULT), 403, "consent_expired", "expired")
    assert [e.reason for e in decisions(gateway)] == ["consent_revoked", "consent_expired"]


@pytest.mark.parametrize(("context", "words"), [
    ({}, ("context.national_id", "required")),
    ({"national_id": "not valid!"}, ("context.national_id",)),
    ({"national_id": 123456789}, ("context.national_id",)),
    ({"national_id": VALID_ADULT, "extra": 1}, ("context.extra",)),
])
async def test_context_outside_the_schema_is_a_400(gateway: GatewayClient, ada: Caller, context: dict[str, Any],
                                                   words: tuple[str, ...]) -> None:
    before = dict(gateway.app.state.registry.calls)
    assert_error(await evaluate(gateway, ada, **context), 400, "invalid_context", *words)
    assert gateway.app.state.registry.calls == before
    assert decisions(gateway) == []


async def test_the_context_is_checked_once_as_documented(
    gateway: GatewayClient, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    check = Purpose.validate_context

    def counted(self: Purpose, context: object) -> list[str]:
        checks.append(self.name)
        return check(self, context)

    monkeypatch.setattr(Purpose, "validate_context", counted)
    assert (await evaluate(gateway, ada, national_id=VALID_ADULT)).status_code == 200
    assert checks == [AGE]  # not again when deciding on the gathered facts

    checks.clear()
    body = assert_error(await evaluate(gateway, ada, national_id="not valid!", channel="web"), 400, "invalid_context")
    assert body["error_description"] == (  # each problem once, named as docs/api.md names them
        "context.channel: unknown field (expected one of: national_id); "
        "context.national_id: does not match ^[A-Z0-9]{6,20}$"
    )
    assert checks == [AGE]


async def test_no_policy_set_loaded_is_a_503_not_ready(gateway: GatewayClient, ada: Caller) -> None:
    gateway.app.state.policies.current = None
    body = assert_error(await evaluate(gateway, ada, national_id=VALID_ADULT), 503, "not_ready")
    assert body["error_description"] == "no policy set is loaded"
    assert decisions(gateway) == []


@pytest.fixture
async def slow_registry(
    gateway_settings: Callable[..., Settings], database_url: str, clock: FakeClock
) -> AsyncIterator[GatewayClient]:
    """Registries that take 2 s against a 50 ms timeout."""
    settings = gateway_settings(database_url=database_url, registry_latency_ms=2000, registry_timeout_ms=50)
    async with start_gateway(settings, clock) as gw:
        yield gw


async def test_registry_timeout_is_a_504_and_still_audited(slow_registry: GatewayClient) -> None:
    gateway = slow_registry
    ada = await gateway.caller()
    await gateway.grant(ada, "decision_evaluation")
    response = await evaluate(gateway, ada, national_id=VALID_ADULT)
    body = assert_error(response, 504, "registry_unavailable", "did not answer")
    assert body["decision_id"].startswith("dec_")
    [event] = decisions(gateway)
    assert (event.decision_id, event.purpose, event.decision, event.reason, event.subject) == (
        body["decision_id"], AGE, "fail", "registry_unavailable", ada.user_id)
    assert event.policy_revision == gateway.app.state.policies.current.revision
    assert event.request_id == response.headers["x-request-id"]


# -- boundaries between users ---------------------------------------------------------------


async def test_a_decision_is_always_about_the_caller(gateway: GatewayClient, ada: Caller) -> None:
    issued = await gateway.client.post("/vc/issue", json={"type": "AgeOver18", "national_id": VALID_ADULT},
                                       headers=ada.headers)
    assert issued.status_code == 200, issued.text
    bob = await gateway.caller("bob@example.com")
    await gateway.grant(bob, "decision_evaluation")
    # Bob presents Ada's national id: the registry answers about the id, but Ada's
    # credential and consents stay hers.
    bobs = (await evaluate(gateway, bob, national_id=VALID_ADULT)).json()
    adas = (await evaluate(gateway, ada, national_id=VALID_ADULT)).json()
    assert (bobs["reason"], adas["reason"]) == ("missing_credential", "all_checks_passed")
    # the body cannot name anyone else
    other = await gateway.client.post(EVALUATE, json={"purpose": AGE, "context": {"national_id": VALID_ADULT},
                                                      "user_id": ada.user_id}, headers=bob.headers)
    assert_error(other, 400, "invalid_request", "user_id")
    assert [e.subject for e in decisions(gateway)] == [bob.user_id, ada.user_id]


READER = """\
purposes:
  reader:
    description: Its rules read the caller's token and a consent; its evidence is one fact.
    consent: [decision_evaluation]
    evidence: [has_credential]
    rules:
      - if: consent.vc_issuance AND subject.client_id == "demo-client" AND exists(subject.sub)
        then: pass
        reason: may_issue
      - else: fail
        reason: may_not
"""


async def test_rules_see_the_consents_and_token_fields_they_read_undeclared(
    gateway_settings: Callable[..., Settings], policy_dir: Any, clock: FakeClock
) -> None:
    (policy_dir / "reader.yaml").write_text(READER)
    async with start_gateway(gateway_settings(), clock) as gateway:
        caller = await gateway.caller("reader@example.com")
        await gateway.grant(caller, "decision_evaluation")
        refused = (await evaluate(gateway, caller, "reader")).json()
        assert (refused["status"], refused["reason"]) == ("fail", "may_not")
        await gateway.grant(caller, "vc_issuance")
        explained = await evaluate(gateway, caller, "reader", explain="true")
        body = explained.json()
        assert (body["status"], body["reason"]) == ("pass", "may_issue"), body
        reads = next(e for e in body["explanation"] if e["kind"] == "rule")["reads"]
        assert reads["consent.vc_issuance"] is True and reads["subject.client_id"] == "demo-client"
        assert reads["subject.sub"] == caller.user_id
