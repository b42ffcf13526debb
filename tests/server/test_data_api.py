"""`POST /v1/data/{purpose}` and `GET /v1/policies` through the ASGI transport, and the
data API's shortcut for reading its body."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.decisions.models import DataRequest, DataResponse, PoliciesResponse, parse_data_request
from server.errors import ApiError
from server.parsing import parse_json
from server.security import Principal
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, assert_error_shape

DATA = "/v1/data/age_verification"


async def decide(client: httpx.AsyncClient, facts: dict[str, Any], url: str = DATA) -> dict[str, Any]:
    response = await client.post(url, json={"input": facts})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    DataResponse.model_validate(body)  # the documented shape is the real one
    return body


async def test_decision_json_follows_the_spec(client: httpx.AsyncClient, app: Starlette) -> None:
    body = await decide(client, ADULT_WITHOUT_CREDENTIAL)
    result = body["result"]
    assert body["decision_id"] == result["decision_id"]
    assert re.fullmatch(r"dec_[A-Za-z0-9_-]{16,}", result["decision_id"])
    assert result["purpose"] == "age_verification"
    assert result["status"] == "pass_with_conditions"
    assert result["reason"] == "missing_credential"
    assert result["conditions"] == ["obtain_age_credential"]
    assert result["evidence"] == {
        "sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False,
    }
    assert result["policy_revision"] == app.state.policies.current.revision
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["evaluated_at"])
    assert "explanation" not in result


async def test_decision_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {(await decide(client, ADULT_WITHOUT_CREDENTIAL))["decision_id"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"sanctions_listed": True}, "fail", "sanctioned"),
        ({"is_over_18": False}, "fail", "underage"),
        ({"has_credential": True}, "pass", "all_checks_passed"),
    ],
)
async def test_outcomes_follow_the_policy(
    client: httpx.AsyncClient, change: dict[str, Any], status: str, reason: str
) -> None:
    result = (await decide(client, {**ADULT_WITHOUT_CREDENTIAL, **change}))["result"]
    assert (result["status"], result["reason"]) == (status, reason)


async def test_missing_evidence_fails_closed(client: httpx.AsyncClient) -> None:
    result = (await decide(client, {"sanctions_listed": False, "context": {"national_id": "AB123456"}}))["result"]
    assert (result["status"], result["reason"]) == ("fail", "missing_evidence")
    assert result["evidence"] == {"sanctions_listed": False}


async def test_a_mistyped_declared_fact_is_400_invalid_input(client: httpx.AsyncClient) -> None:
    facts = {**ADULT_WITHOUT_CREDENTIAL, "sanctions_listed": "no", "is_over_18": None}
    body = assert_error_shape(await client.post(DATA, json={"input": facts}), 400, "invalid_input")
    assert body["error_description"] == (
        "input.sanctions_listed: expected bool, got string; input.is_over_18: expected bool, got null"
    )
    assert "decision_id" not in body


async def test_undeclared_facts_pass_whatever_their_type(client: httpx.AsyncClient) -> None:
    facts = {**ADULT_WITHOUT_CREDENTIAL, "is_pep": "yes", "credentials": 7, "risk": {"score": [1, None]}}
    result = (await decide(client, facts))["result"]
    assert (result["status"], result["reason"]) == ("pass_with_conditions", "missing_credential")


async def test_a_null_context_is_400_invalid_context(client: httpx.AsyncClient) -> None:
    facts = {**ADULT_WITHOUT_CREDENTIAL, "context": None}
    body = assert_error_shape(await client.post(DATA, json={"input": facts}), 400, "invalid_context")
    assert body["error_description"] == "input.context: expected an object, got null"


NESTED_PURPOSE = """purposes:
  nested_facts:
    evidence:
      - consent.registry_check: true
      - credentials
      - score: 0
    rules:
      - if: consent.registry_check AND "AgeOver18" in credentials AND score < 5
        then: pass
        reason: fine
      - else: fail
        reason: refused
"""


@pytest.mark.parametrize(
    ("facts", "status", "problem"),
    [
        ({"consent": {"registry_check": True}, "credentials": ["AgeOver18"], "score": 1}, 200, None),
        ({"consent": {"registry_check": "true"}, "credentials": [], "score": 1}, 400,
         "input.consent.registry_check: expected bool, got string"),
        ({"consent": [], "credentials": [], "score": 1}, 400, "input.consent: expected an object, got list"),
        ({"consent": {}, "credentials": ["AgeOver18", 18], "score": 1}, 400,
         "input.credentials: expected list[string], got list"),
        ({"credentials": [], "score": "1"}, 400, "input.score: expected number, got string"),
        ({"consent": {"other": 1}}, 200, None),  # missing facts: a decision (missing_evidence)
    ],
)
async def test_nested_and_list_facts_are_typed_too(  # type: ignore[no-untyped-def]
    make_settings, log_stream, policy_dir, facts: dict[str, Any], status: int, problem: str | None
) -> None:
    from server.app import create_app

    (policy_dir / "nested_facts.yaml").write_text(NESTED_PURPOSE)
    app = create_app(make_settings(), log_stream=log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/v1/data/nested_facts", json={"input": facts})
    if problem is None:
        assert response.status_code == status, response.text
    else:
        assert assert_error_shape(response, status, "invalid_input")["error_description"] == problem


async def test_explain_adds_the_rules_tried(client: httpx.AsyncClient) -> None:
    response = await client.post(DATA + "?explain=true", json={"input": ADULT_WITHOUT_CREDENTIAL})
    assert response.status_code == 200
    explanation = response.json()["result"]["explanation"]
    rules = [entry for entry in explanation if entry["kind"] == "rule"]
    assert [r["matched"] for r in rules] == [False, False, False, False, True]
    assert rules[0]["reads"] == {"sanctions_listed": False}
    assert all(isinstance(r["line"], int) for r in rules)


async def test_unknown_purpose_is_404_listing_known_ones(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/data/age_verfication", json={"input": {}})
    body = assert_error_shape(response, 404, "unknown_purpose")
    assert body["known_purposes"] == ["age_verification", "high_value_transfer", "sanctions_screening"]
    assert "age_verification" in body["error_description"]


async def test_no_policy_set_loaded_is_503_not_ready(client: httpx.AsyncClient, app: Starlette) -> None:
    """A server whose first load failed answers in the error shape, not with a 500."""
    app.state.policies.current = None
    body = assert_error_shape(await client.post(DATA, json={"input": ADULT_WITHOUT_CREDENTIAL}), 503, "not_ready")
    assert "no policy set" in body["error_description"] and body["request_id"]


async def test_each_decision_is_emitted_for_the_audit(client: httpx.AsyncClient, app: Starlette) -> None:
    response = await client.post(DATA, json={"input": ADULT_WITHOUT_CREDENTIAL}, headers={"X-Request-ID": "r-42"})
    body = response.json()
    event = app.state.events.events[-1]
    assert event.action == "decision_made"
    assert event.decision_id == body["decision_id"]
    assert event.policy_revision == body["result"]["policy_revision"]
    assert (event.purpose, event.decision, event.reason) == ("age_verification", "pass_with_conditions",
                                                             "missing_credential")
    assert event.request_id == "r-42"
    assert event.subject is None


async def test_bearer_mode_rejects_until_tokens_exist(make_settings, log_stream) -> None:  # type: ignore[no-untyped-def]
    from server.app import create_app

    app = create_app(make_settings(data_api_auth="bearer"), log_stream=log_stream)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(DATA, json={"input": ADULT_WITHOUT_CREDENTIAL})
        assert_error_shape(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
        response = await client.post(
            DATA, json={"input": ADULT_WITHOUT_CREDENTIAL}, headers={"Authorization": "Bearer abc"}
        )
        assert_error_shape(response, 401, "invalid_token")
        assert_error_shape(await client.get("/v1/policies"), 401)
        # Probes stay open.
        assert (await client.get("/health/live")).status_code == 200


async def test_the_authenticator_is_pluggable(make_settings, log_stream) -> None:  # type: ignore[no-untyped-def]
    from server.app import create_app
    from server.audit import RecentEvents

    app = create_app(make_settings(data_api_auth="bearer"), log_stream=log_stream, events=RecentEvents())

    async def accept(request):  # type: ignore[no-untyped-def]
        return Principal(sub="user-7")

    app.state.data_api_auth = accept
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(DATA, json={"input": ADULT_WITHOUT_CREDENTIAL})
    assert response.status_code == 200
    assert app.state.events.events[-1].subject == "user-7"


async def test_policies_listing(client: httpx.AsyncClient, app: Starlette) -> None:
    response = await client.get("/v1/policies")
    assert response.status_code == 200
    body = response.json()
    PoliciesResponse.model_validate(body)
    assert body["revision"] == app.state.policies.current.revision
    names = [p["name"] for p in body["purposes"]]
    assert set(names) == {"age_verification", "high_value_transfer", "sanctions_screening"}
    age = next(p for p in body["purposes"] if p["name"] == "age_verification")
    assert age["evidence"] == ["sanctions_listed", "citizen_valid", "is_over_18", "has_credential"]
    assert age["consent"] == ["decision_evaluation"]
    assert body["last_reload"] is None


def test_evaluated_at_is_the_current_utc_second() -> None:
    from datetime import UTC, datetime, timedelta

    from server.decisions.service import evaluated_at_now

    before = datetime.now(UTC).replace(microsecond=0)
    text = evaluated_at_now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert before <= datetime.fromisoformat(text) <= after
    assert evaluated_at_now() in (text, (datetime.fromisoformat(text) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))


# The body: read by hand when it has the usual shape, otherwise by the pydantic model,
# with the same facts and the same errors either way.
BODIES = [
    b'{"input": {"a": 1, "context": {"national_id": "AB123456"}}}', b'{"input": {}}', b' {"input": {"b": [1, 2]}} ',
    b'{"input": {"n": 123456789012345678901234567890, "f": 1.5e3, "z": -0.0, "s": "\\u00e9"}}',
    b'{"input":{"a":1},"input":{"b":2}}', b'{"input": {"a": NaN}}', b'{"input": {"a": {"b": [Infinity]}}}',
    b'{"input": {"a": 1e999}}', b'{"input": {"a": "1e999"}}', b'{"input": [1]}', b'{"input": null}', b'{"input": 1}',
    b'{}', b'[]', b'"x"', b'null', b'{"input": {}, "extra": 1}', b'{"extra": 1}', b'{"input": {"a": 1}',
    b'{"input": {"a": "\\ud800"}}', b'{"input": {"a": "\xff"}}', b'{"input": {"a": 1}} x', b"{'input': {}}",
    b'{"input": {"a": 1,}}', b'{"Input": {}}',
    # what orjson reads differently from pydantic-core, or refuses where it does not
    b'{"input": {"n": 9223372036854775807, "m": -9223372036854775809, "u": 18446744073709551616}}',
    b'{"input": {"f": 0.1234567890123456789, "g": 1e308, "h": 1.7976931348623159e308, "i": -1e-999}}',
    b'{"input": {"a": 1E+400}}', b'{"input": {"a": -1e400}}', b'{"input": {"a": "\\u0001", "b": "\\u0000"}}',
    b'{"input": {"a": "\x01"}}', b'\xef\xbb\xbf{"input": {}}', b'{"input": {"a": "\\udc00\\ud800"}}',
    b'{"input": {"a": [1234567890, 1234567890, 123456789012345678], "b": -123456789012345678}}',
    b'{"input": {"d": ' + b"[" * 100 + b"]" * 100 + b'}}',
    b'{"input": {"d": ' + b"[" * 300 + b"]" * 300 + b'}}',
    b'{"input": {"d": ' + b"[" * 1100 + b"]" * 1100 + b'}}',
    b'{"input": {"d": ' + b'{"a": ' * 150 + b"1" + b"}" * 150 + b'}}',
]


def _outcome(parse: Any, body: bytes) -> object:
    try:
        return ("ok", repr(parse(body)))
    except ApiError as err:
        return ("error", err.status_code, err.error, err.description)


@pytest.mark.parametrize("body", BODIES)
def test_data_request_shortcut_agrees_with_the_model(body: bytes) -> None:
    assert _outcome(parse_data_request, body) == _outcome(lambda b: parse_json(b, DataRequest).input, body)
