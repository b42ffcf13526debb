"""Indexed purposes through the engine: decisions, conditions and explanations.

The property test writes random rule lists as policy files and loads them as a server
does, so the engine decides itself whether and how to index them; every decision must be
the first rule the reference interpreter finds, with its status, reason and conditions,
with and without `explain`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

import engine
from dsl import Shapes, SourceText
from tests.dsl.helpers import fixed_clock
from tests.dsl.test_index_properties import DATA, FIXED_INPUTS, INPUTS, SCOPE, instance, rule_lists
from tests.reference_interpreter import holds

HEADER = """purposes:
  p:
    evidence: [is_pep, {level: 0}, {tags: [x]}]
    rules:
"""
STATUSES = ("pass", "fail", "pass_with_conditions")


def policy_text(rules: list[str | None]) -> str:
    lines = [HEADER.rstrip("\n")]
    for i, condition in enumerate(rules):
        status = STATUSES[i % 3]
        if condition is None:
            lines.append(f"      - else: {status}")
        else:
            lines.append(f"      - if: '{condition.replace(chr(39), chr(39) * 2)}'")
            lines.append(f"        then: {status}")
        lines.append(f"        reason: r{i}")
        if status == "pass_with_conditions":
            lines.append(f"        conditions: [c{i}, review]")
        if condition is None:
            break
    return "\n".join(lines) + "\n"


def well_typed(rules: list[str | None]) -> list[str | None]:
    """The rules the checker accepts in the purpose's scope (the others would fail the load)."""
    shapes = Shapes(SCOPE)
    return [r for r in rules if r is None or shapes.prepare(SourceText(r)).checked.ok]


def write(directory: Path, rules: list[str | None]) -> Path:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for name, value in DATA.items():
        (directory / "data" / f"{name}.json").write_text(json.dumps(value), encoding="utf-8")
    (directory / "p.yaml").write_text(policy_text(rules), encoding="utf-8")
    return directory


def expected(policies: engine.PolicySet, facts: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    purpose = policies.purposes["p"]
    for rule, condition in zip(purpose.rules, purpose.program.conditions, strict=True):
        if condition is None or holds(instance(condition), facts, DATA, fixed_clock):
            return rule.status, rule.reason, rule.conditions
    return "fail", "no_rule_matched", ()




@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                HealthCheck.function_scoped_fixture])
@given(rules=rule_lists(sizes=(12, 120, 500), spreads=(50,), anchored=True).map(well_typed), inputs=INPUTS)
def test_engine_decisions_equal_the_reference_with_and_without_explain(
    tmp_path_factory: Any, rules: list[str | None], inputs: list[dict[str, Any]]
) -> None:
    if not rules:
        return
    directory = write(tmp_path_factory.mktemp("policy"), rules)
    result = engine.build(directory)
    if result.policy_set is None:  # a generated rule the checker refuses (a type mismatch)
        return
    policies = result.policy_set
    for facts in [*inputs, *FIXED_INPUTS]:
        want = expected(policies, facts)
        decision = policies.decide("p", facts)
        assert (decision.status, decision.reason, decision.conditions) == want, facts
        explained = policies.decide("p", facts, explain=True)
        assert (explained.status, explained.reason, explained.conditions) == want, facts
        tried = [e["index"] for e in explained.explanation or [] if e["kind"] == "rule"]
        last = decision.rule if decision.rule is not None else len(policies.purposes["p"].rules) - 1
        assert tried == list(range(last + 1))


def test_explanations_show_the_rules_the_index_excluded(policy_dir: Callable[..., Path]) -> None:
    rules = "".join(
        f"      - if: context.country == \"C{i}\" AND context.amount > {i * 10}\n"
        f"        then: fail\n        reason: r{i}\n"
        for i in range(100)
    )
    text = "purposes:\n  p:\n    rules:\n" + rules
    policies = engine.load(policy_dir({"p.yaml": text}))
    assert policies.purposes["p"].program.plan is not None
    facts = {"context": {"country": "C7", "amount": 5000}}
    decision = policies.decide("p", facts, explain=True)
    assert (decision.reason, decision.rule) == ("r7", 7)
    assert policies.decide("p", facts).reason == "r7"
    entries = [e for e in decision.explanation or [] if e["kind"] == "rule"]
    assert [e["index"] for e in entries] == list(range(8))
    for entry in entries[:7]:
        assert entry["matched"] is False
        assert entry["reads"] == {"context.country": "C7"}
        assert entry["notes"] == [f'context.country is "C7", rule needs "C{entry["index"]}"']
    assert entries[7]["matched"] is True
    assert entries[7]["reads"] == {"context.country": "C7", "context.amount": 5000}
    assert "notes" not in entries[7]


def test_an_excluded_rule_of_an_or_names_each_of_its_tests(policy_dir: Callable[..., Path]) -> None:
    rules = "".join(
        f"      - if: context.a == \"A{i}\" OR context.b == \"B{i}\"\n        then: pass\n        reason: r{i}\n"
        for i in range(60)
    )
    policies = engine.load(policy_dir({"p.yaml": "purposes:\n  p:\n    rules:\n" + rules}))
    decision = policies.decide("p", {"context": {"a": "A2", "b": 3}}, explain=True)
    assert decision.reason == "r2"
    first = next(e for e in decision.explanation or [] if e["kind"] == "rule")
    assert first["notes"] == ['context.a is "A2", rule needs "A0"', 'context.b is 3, rule needs "B0"']
    missing = policies.decide("p", {}, explain=True)
    first = next(e for e in missing.explanation or [] if e["kind"] == "rule")
    assert first["notes"] == ['context.a is undefined, rule needs "A0"', 'context.b is undefined, rule needs "B0"']
