"""PolicySet.decide: first match, deny by default, fail closed, explanations."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.context import ContextValidator
from server.facts import CATALOGUE

POLICIES = Path(__file__).resolve().parents[2] / "policies"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def policies() -> engine.PolicySet:
    return engine.load(POLICIES, catalogue=CATALOGUE)


def test_unknown_purpose_lists_known_ones(policies: engine.PolicySet) -> None:
    with pytest.raises(engine.UnknownPurpose) as err:
        policies.decide("age_verificaton", {})
    assert err.value.known == ["age_verification", "high_value_transfer", "sanctions_screening"]
    assert "age_verification" in str(err.value)


def test_missing_evidence_fails_closed_and_names_each_fact(policies: engine.PolicySet) -> None:
    decision = policies.decide("age_verification", {"sanctions_listed": False, "is_over_18": "yes"})
    assert (decision.status, decision.reason) == ("fail", "missing_evidence")
    problems = {e["fact"]: e["status"] for e in decision.explanation or []}
    assert problems == {"citizen_valid": "missing", "is_over_18": "invalid", "has_credential": "missing"}


def test_wrong_type_alone_is_invalid_evidence(policies: engine.PolicySet) -> None:
    facts = {"sanctions_listed": 0, "citizen_valid": True, "is_over_18": True, "has_credential": True}
    decision = policies.decide("age_verification", facts)
    assert (decision.status, decision.reason) == ("fail", "invalid_evidence")
    assert decision.explanation == [{"kind": "evidence", "fact": "sanctions_listed", "type": "bool", "status": "invalid"}]
    assert policies.decide("age_verification", {**facts, "sanctions_listed": 1}) is decision
    explained = policies.decide("age_verification", facts, explain=True)
    assert explained.explanation is not None
    assert explained.explanation[0] == {
        "kind": "evidence", "fact": "sanctions_listed", "type": "bool", "actual": 0,
        "status": "invalid", "detail": "expected a bool, got number",
    }


@pytest.mark.parametrize("count", [1, 6, 7, 9])
def test_every_pattern_of_missing_and_invalid_evidence_fails_closed(
    policy_dir: Callable[..., Path], count: int
) -> None:
    # up to six declared facts the decisions are prepared at load time; above, made on use
    names = [f"f{i}" for i in range(count)]
    evidence = "".join(f"      - {name}: true\n" for name in names)
    text = f"purposes:\n  p:\n    evidence:\n{evidence}    rules:\n      - if: {' AND '.join(names)}\n" \
           "        then: pass\n        reason: all\n      - else: fail\n        reason: some\n"
    policies = engine.load(policy_dir({"p.yaml": text}))
    for pattern in itertools.islice(itertools.product((True, None, 1), repeat=count), 0, None, max(1, 3**count // 50)):
        facts = {name: value for name, value in zip(names, pattern, strict=True) if value is not None}
        decision = policies.decide("p", facts)
        problems = {e["fact"]: e["status"] for e in decision.explanation or []}
        expected = {n: "missing" if v is None else "invalid" for n, v in zip(names, pattern, strict=True) if v is not True}
        if not expected:
            assert (decision.status, decision.reason) == ("pass", "all")
            continue
        assert decision.status == "fail" and problems == expected
        assert decision.reason == ("missing_evidence" if "missing" in expected.values() else "invalid_evidence")
        assert policies.decide("p", dict(facts)) is decision  # the same prepared decision


@settings(max_examples=200, deadline=None)
@given(facts=st.dictionaries(st.sampled_from(["sanctions_listed", "citizen_valid", "is_over_18", "has_credential",
                                               "is_pep", "context", "x"]), json_values))
def test_decide_never_raises_on_any_json_input(facts: dict[str, Any]) -> None:
    policies = engine.load(POLICIES, catalogue=CATALOGUE)
    for purpose in policies.purposes:
        fast = policies.decide(purpose, facts)
        explained = policies.decide(purpose, facts, explain=True)
        assert (fast.status, fast.reason, fast.conditions) == (explained.status, explained.reason, explained.conditions)
        json.dumps(explained.as_json())


def test_non_dict_facts_are_treated_as_empty(policies: engine.PolicySet) -> None:
    assert policies.decide("sanctions_screening", [1, 2]).reason == "missing_evidence"  # type: ignore[arg-type]


def test_explanation_lists_rules_in_order_with_lines(policies: engine.PolicySet) -> None:
    facts = {"sanctions_listed": False, "citizen_valid": True, "is_over_18": False, "has_credential": True}
    decision = policies.decide("age_verification", facts, explain=True)
    rules = [e for e in decision.explanation or [] if e["kind"] == "rule"]
    assert [(r["index"], r["line"], r["matched"]) for r in rules] == [(0, 13, False), (1, 16, False), (2, 19, True)]
    assert rules[2]["reads"] == {"is_over_18": False}
    evidence = {e["fact"]: (e.get("expected"), e["actual"], e["status"]) for e in decision.explanation or []
                if e["kind"] == "evidence"}
    assert evidence["is_over_18"] == (True, False, "unexpected")
    assert evidence["citizen_valid"] == (True, True, "ok")
    assert decision.line == 19 and decision.rule == 2


def test_type_mismatch_is_recorded_in_explanation(policies: engine.PolicySet) -> None:
    facts = {"sanctions_listed": False, "citizen_valid": True, "is_pep": True, "context": {"amount": "lots"}}
    decision = policies.decide("high_value_transfer", facts, explain=True)
    rule = [e for e in decision.explanation or [] if e["kind"] == "rule"][2]
    assert rule["notes"] == ["type mismatch: string > number"]
    assert decision.reason == "approved"


def test_no_rule_matched_denies(policy_dir: Callable[..., Path]) -> None:
    text = "purposes:\n  p:\n    rules:\n      - if: context.ok == true\n        then: pass\n        reason: ok\n"
    policies = engine.load(policy_dir({"p.yaml": text}))
    assert (policies.decide("p", {}).status, policies.decide("p", {}).reason) == ("fail", "no_rule_matched")
    explained = policies.decide("p", {"context": {"ok": False}}, explain=True)
    assert explained.explanation is not None
    assert explained.explanation[-1] == {"kind": "default", "outcome": "fail", "reason": "no_rule_matched"}
    assert policies.decide("p", {"context": {"ok": True}}).status == "pass"


def test_negation_as_failure_and_consent_and_subject(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    evidence: [consent.registry_check]
    rules:
      - if: NOT consent.registry_check
        then: fail
        reason: no_consent
      - if: NOT context.flagged AND "admin" in subject.scope
        then: pass
        reason: admin
      - else: pass_with_conditions
        reason: other
        conditions: [review]
"""
    policies = engine.load(policy_dir({"p.yaml": text}))
    assert policies.decide("p", {}).reason == "missing_evidence"
    assert policies.decide("p", {"consent": {"registry_check": False}}).reason == "no_consent"
    granted = {"consent": {"registry_check": True}}
    assert policies.decide("p", {**granted, "subject": {"scope": ["admin"]}}).reason == "admin"
    flagged = {**granted, "subject": {"scope": ["admin"]}, "context": {"flagged": True}}
    assert policies.decide("p", flagged).reason == "other"
    assert policies.decide("p", flagged).conditions == ("review",)


def test_time_functions_use_the_injected_clock(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    rules:
      - if: years_since(context.born) >= 18 AND days_since(context.checked) <= 30
        then: pass
        reason: adult_recently_checked
"""
    fixed = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    policies = engine.load(policy_dir({"p.yaml": text}), clock=lambda: fixed)
    assert policies.decide("p", {"context": {"born": "2008-06-15", "checked": "2026-06-01T00:00:00Z"}}).status == "pass"
    assert policies.decide("p", {"context": {"born": "2008-06-16", "checked": "2026-06-01"}}).status == "fail"
    assert policies.decide("p", {"context": {"born": "2000-01-01", "checked": "2026-05-01"}}).status == "fail"
    assert policies.decide("p", {"context": {"born": "not a date", "checked": "2026-06-01"}}).status == "fail"


def test_a_decision_as_json_is_its_own_fields(policies: engine.PolicySet) -> None:
    facts = {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False}
    decision = policies.decide("age_verification", facts)
    assert decision.as_json() == {
        "purpose": "age_verification",
        "status": "pass_with_conditions",
        "reason": "missing_credential",
        "conditions": ["obtain_age_credential"],
        "policy_revision": policies.revision,
    }
    explained = policies.decide("age_verification", facts, explain=True).as_json()
    assert explained["explanation"] == policies.decide("age_verification", facts, explain=True).explanation


def test_generated_code_is_the_hand_written_form(policies: engine.PolicySet) -> None:
    source = policies.purposes["age_verification"].program.source
    assert "    if f_sanctions_listed:\n        return _o0\n" in source
    assert "    if (not f_citizen_valid):\n        return _o1\n" in source


def test_context_validation_against_the_schema(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    context:
      national_id: {type: string, pattern: "^[A-Z0-9]{6,20}$", required: true}
      count: {type: integer, minimum: 1}
      tier: {type: string, enum: [gold, silver]}
    rules:
      - else: pass
        reason: ok
"""
    purpose = engine.load(policy_dir({"p.yaml": text})).purposes["p"]
    assert purpose.validate_context({"national_id": "AB123456", "count": 2, "tier": "gold"}) == []
    assert purpose.validate_context({}) == ["context.national_id: required"]
    assert purpose.validate_context({"national_id": "ab", "count": 1.5, "tier": "bronze", "x": 1}) == [
        "context.x: unknown field (expected one of: count, national_id, tier)",
        "context.national_id: does not match ^[A-Z0-9]{6,20}$",
        "context.count: expected an integer, got 1.5",
        "context.tier: must be one of ['gold', 'silver']",
    ]
    assert purpose.validate_context([1]) == ["context must be an object, got list"]
    # compiled at load time and held by the purpose
    assert isinstance(purpose.context_check, ContextValidator)
    assert purpose.context_check.known == {"national_id", "count", "tier"}


