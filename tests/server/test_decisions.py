"""server.decisions.service: the decision JSON (the server's shape, not the engine's),
the context checked once per request with the prefix of its place in the body, and the
`explain` parameter documented alike on both decision endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import engine
from engine import Purpose
from server.decisions.models import DecisionBody
from server.decisions.service import decide, decision_json
from server.events import AuditedEvent
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, SHIPPED_POLICIES, assert_error_shape

DATA = "/v1/data/age_verification"
FACTS = {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False}


def test_decision_json_is_the_documented_shape() -> None:
    policies = engine.load(SHIPPED_POLICIES)
    decision = policies.decide("age_verification", FACTS)
    body = decision_json(decision, "dec_1", "2026-01-01T10:00:00Z", dict(FACTS))
    assert body == {
        "decision_id": "dec_1",
        "purpose": "age_verification",
        "status": "pass_with_conditions",
        "reason": "missing_credential",
        "conditions": ["obtain_age_credential"],
        "evidence": FACTS,
        "policy_revision": policies.revision,
        "evaluated_at": "2026-01-01T10:00:00Z",
    }
    DecisionBody.model_validate({**body, "decision_id": "dec_abc"})  # what the OpenAPI document promises

    explained = policies.decide("age_verification", FACTS, explain=True)
    body = decision_json(explained, "dec_2", "2026-01-01T10:00:00Z", {})
    assert explained.explanation and body["explanation"] == explained.explanation
    assert list(body)[-1] == "explanation"


class Emitted(list[AuditedEvent]):
    def emit(self, event: AuditedEvent) -> None:
        self.append(event)


def test_deciding_takes_the_context_as_checked() -> None:
    # Each endpoint checks the context once, before deciding: the data API under `input.`,
    # `/decision/evaluate` before it gathers evidence. Deciding does not check it again.
    policies = engine.load(SHIPPED_POLICIES)
    facts = {**FACTS, "context": {"national_id": "lower-case!"}}
    emitted = Emitted()
    body = decide(policies, policies.purpose("age_verification"), facts, False, emitted, "req-1", "usr_1")
    assert (body["status"], body["reason"]) == ("pass_with_conditions", "missing_credential")
    [event] = emitted
    assert (event.decision_id, event.request_id, event.subject) == (body["decision_id"], "req-1", "usr_1")


@pytest.fixture
def context_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The purposes whose `validate_context` ran, in order (the real check still runs)."""
    checks: list[str] = []
    check = Purpose.validate_context

    def counted(self: Purpose, context: object) -> list[str]:
        checks.append(self.name)
        return check(self, context)

    monkeypatch.setattr(Purpose, "validate_context", counted)
    yield checks


async def test_the_data_api_checks_the_context_once_under_input(
    client: httpx.AsyncClient, context_checks: list[str]
) -> None:
    assert (await client.post(DATA, json={"input": ADULT_WITHOUT_CREDENTIAL})).status_code == 200
    assert context_checks == ["age_verification"]

    context_checks.clear()
    facts = {**ADULT_WITHOUT_CREDENTIAL, "context": {"national_id": "lower-case!", "channel": "web"}}
    body = assert_error_shape(await client.post(DATA, json={"input": facts}), 400, "invalid_context")
    assert body["error_description"] == (
        "input.context.channel: unknown field (expected one of: national_id); "
        "input.context.national_id: does not match ^[A-Z0-9]{6,20}$"
    )
    assert context_checks == ["age_verification"]


async def test_both_decision_endpoints_document_one_explain_parameter(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    data, evaluate = (
        next(p for p in paths[path]["post"]["parameters"] if p["name"] == "explain")
        for path in ("/v1/data/age_verification", "/decision/evaluate")
    )
    assert data == evaluate
    assert data["in"] == "query" and data["schema"] == {"type": "boolean", "default": False}
