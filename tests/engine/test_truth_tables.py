"""The shipped policies against their rules, for every combination of their facts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import engine

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policies() -> engine.PolicySet:
    return engine.load(POLICIES)


def expected_age(sanctioned: bool, citizen: bool, adult: bool, credential: bool) -> tuple[str, str, tuple[str, ...]]:
    if sanctioned:
        return "fail", "sanctioned", ()
    if not citizen:
        return "fail", "invalid_citizen", ()
    if not adult:
        return "fail", "underage", ()
    if credential:
        return "pass", "all_checks_passed", ()
    return "pass_with_conditions", "missing_credential", ("obtain_age_credential",)


@pytest.mark.parametrize("combo", list(itertools.product([False, True], repeat=4)))
def test_age_verification_truth_table(policies: engine.PolicySet, combo: tuple[bool, bool, bool, bool]) -> None:
    sanctioned, citizen, adult, credential = combo
    facts = {
        "sanctions_listed": sanctioned,
        "citizen_valid": citizen,
        "is_over_18": adult,
        "has_credential": credential,
    }
    decision = policies.decide("age_verification", facts)
    assert (decision.status, decision.reason, decision.conditions) == expected_age(*combo)
    explained = policies.decide("age_verification", facts, explain=True)
    assert (explained.status, explained.reason) == (decision.status, decision.reason)


def expected_transfer(sanctioned: bool, citizen: bool, pep: bool, amount: object) -> tuple[str, str]:
    if sanctioned:
        return "fail", "sanctioned"
    if not citizen:
        return "fail", "invalid_citizen"
    if pep and isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount > 10000:
        return "pass_with_conditions", "manual_review_required"
    return "pass", "approved"


AMOUNTS = [0, 9999.99, 10000, 10000.01, 10001, 1_000_000, "12000", None, True]


@pytest.mark.parametrize("amount", AMOUNTS)
@pytest.mark.parametrize("combo", list(itertools.product([False, True], repeat=3)))
def test_high_value_transfer_truth_table(
    policies: engine.PolicySet, combo: tuple[bool, bool, bool], amount: object
) -> None:
    sanctioned, citizen, pep = combo
    facts = {
        "sanctions_listed": sanctioned,
        "citizen_valid": citizen,
        "is_pep": pep,
        "context": {"amount": amount},
    }
    decision = policies.decide("high_value_transfer", facts)
    assert (decision.status, decision.reason) == expected_transfer(sanctioned, citizen, pep, amount)
    if decision.reason == "manual_review_required":
        assert decision.conditions == ("compliance_review",)


def test_transfer_without_amount_is_not_a_manual_review(policies: engine.PolicySet) -> None:
    facts = {"sanctions_listed": False, "citizen_valid": True, "is_pep": True}
    assert policies.decide("high_value_transfer", facts).reason == "approved"
    explained = policies.decide("high_value_transfer", facts, explain=True)
    rule = next(e for e in explained.explanation or [] if e.get("kind") == "rule" and e["index"] == 2)
    assert rule["reads"] == {"is_pep": True, "context.amount": "undefined"}
    assert rule["matched"] is False


@pytest.mark.parametrize("combo", list(itertools.product([False, True], repeat=2)))
def test_sanctions_screening_truth_table(policies: engine.PolicySet, combo: tuple[bool, bool]) -> None:
    listed, pep = combo
    decision = policies.decide("sanctions_screening", {"sanctions_listed": listed, "is_pep": pep})
    if listed:
        assert (decision.status, decision.reason) == ("fail", "sanctioned")
    elif pep:
        assert (decision.status, decision.reason) == ("pass_with_conditions", "politically_exposed")
        assert decision.conditions == ("enhanced_due_diligence",)
    else:
        assert (decision.status, decision.reason) == ("pass", "not_listed")
