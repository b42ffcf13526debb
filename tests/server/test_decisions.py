"""server.decisions.service: the decision JSON (the server's shape, not the engine's),
the context checked once per request with the prefix of its place in the body, and the
`explain` parameter documented alike on both decision endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import engine
from dsl import refuses_every_mistyped
from engine import Purpose
from server.audit import RecentEvents
from server.decisions.models import DecisionBody
from server.decisions.service import check_evidence, decide, decision_json, may_hide_mistyped_facts
from server.errors import ApiError
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


TYPED_PURPOSE = """purposes:
  typed_facts:
    evidence:
      - flag: true
      - amount: 0
      - name: "x"
      - extra: {}
      - nothing: null
      - tags: ["a"]
      - scores: [1]
      - nested: [[1]]
      - consent.registry_check: true
      - anything
    rules:
      - if: flag AND anything
        then: pass
        reason: fine
      - else: fail
        reason: refused
"""
WELL_TYPED: dict[str, object] = {
    "flag": True, "amount": 1, "name": "n", "extra": {"a": 1}, "nothing": None, "tags": ["t"], "scores": [2.5],
    "nested": [[1]], "consent": {"registry_check": True}, "anything": "x",
}
VALUES: list[object] = [True, 1, 1.5, "s", None, {}, {"registry_check": "yes"}, [], ["a"], [1], ["a", 1], [[1]], [["a"]]]
#: Each declared fact (and `consent`) given each value, the others well typed.
TYPED_CASES = [{**WELL_TYPED, name: value} for name in WELL_TYPED for value in VALUES]
TYPED_CASES += [{k: v for k, v in WELL_TYPED.items() if k != "flag"} | {"amount": "1"}]  # missing and mistyped


def _evidence_problem(purpose: Purpose, facts: dict[str, object]) -> str | None:
    try:
        check_evidence(purpose, facts)
    except ApiError as err:
        return err.description
    return None


def test_the_engine_fails_closed_wherever_check_evidence_finds_a_mistyped_fact(tmp_path: Path) -> None:
    """Why the data API may skip `check_evidence` for a decision that is no evidence
    failure: the engine's own check refuses the same facts, for every type it covers."""
    (tmp_path / "typed.yaml").write_text(TYPED_PURPOSE)
    policies = engine.load(tmp_path)
    purpose = policies.purpose("typed_facts")
    uncovered = {spec.name for spec in purpose.evidence if not refuses_every_mistyped(spec.type)}
    assert uncovered == {"scores", "nested"}  # lists of numbers, lists of lists: items unchecked
    for facts in TYPED_CASES:
        problem = _evidence_problem(purpose, facts)
        decision = policies.decide("typed_facts", facts)
        hidden = may_hide_mistyped_facts(purpose, decision)
        if problem is not None and not any(f"input.{name}:" in problem for name in uncovered):
            assert decision.reason in ("missing_evidence", "invalid_evidence"), (facts, problem)
        assert hidden or problem is None, (facts, problem)
    assert may_hide_mistyped_facts(purpose, policies.decide("typed_facts", WELL_TYPED))  # `scores` is unchecked
    shipped = engine.load(SHIPPED_POLICIES)
    age = shipped.purpose("age_verification")
    assert not may_hide_mistyped_facts(age, shipped.decide("age_verification", FACTS))
    assert may_hide_mistyped_facts(age, shipped.decide("age_verification", {**FACTS, "is_over_18": "yes"}))


async def test_the_data_api_refuses_exactly_what_check_evidence_refuses(  # type: ignore[no-untyped-def]
    make_settings, log_stream, policy_dir
) -> None:
    from server.app import create_app

    (policy_dir / "typed.yaml").write_text(TYPED_PURPOSE)
    events = RecentEvents()
    app = create_app(make_settings(), log_stream=log_stream, events=events)
    purpose = app.state.policies.current.purpose("typed_facts")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for facts in TYPED_CASES:
            problem = _evidence_problem(purpose, facts)
            emitted = len(events.events)
            response = await client.post("/v1/data/typed_facts", json={"input": facts})
            if problem is None:
                assert response.status_code == 200, (facts, response.text)
                assert len(events.events) == emitted + 1
            else:
                body = assert_error_shape(response, 400, "invalid_input")
                assert body["error_description"] == problem, facts
                assert len(events.events) == emitted  # refused before the decision was logged
