"""engine.replay: recorded decisions decided again by a candidate, compared, streamed."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.replay import ApprovalError, Record, approved_changes, replay, unapproved

RECORDED = """\
purposes:
  transfer:
    context:
      amount: {type: number}
      national_id: {type: string, sensitive: true}
    evidence: [is_pep]
    rules:
      - if: is_pep AND context.amount > 1000
        then: pass_with_conditions
        reason: review
        conditions: [manual]
      - if: context.amount > 5000
        then: fail
        reason: too_high
      - else: pass
        reason: ok
"""


def policies(policy_dir: Callable[..., Path], text: str) -> engine.PolicySet:
    return engine.load(policy_dir({"p.yaml": text}))


def record_of(policy_set: engine.PolicySet, number: int, facts: dict[str, Any], hashed: bool = True) -> Record:
    """What the gateway records for one decision (the national id as a hash)."""
    decision = policy_set.decide("transfer", facts)
    context = dict(facts.get("context", {}))
    if hashed and "national_id" in context:
        context["national_id"] = "hmac:" + str(hash(context["national_id"]))
    purpose = policy_set.purposes["transfer"]
    return Record(
        decision_id=f"dec_{number}", purpose="transfer",
        facts={k: v for k, v in facts.items() if k != "context"}, context=context,
        status=decision.status, reason=decision.reason,
        hashed=frozenset({"context.national_id"}) if hashed else frozenset(),
        declared=frozenset(purpose.facts), fields=frozenset(f.name for f in purpose.context),
    )


def inputs() -> Iterator[dict[str, Any]]:
    for pep, amount in itertools.product((False, True), (0, 999, 1000, 1001, 3000, 5000, 5001, 9000)):
        yield {"is_pep": pep, "context": {"amount": amount, "national_id": "AB123456"}}


def test_a_moved_threshold_changes_exactly_the_decisions_it_should(policy_dir: Callable[..., Path]) -> None:
    recorded = policies(policy_dir, RECORDED)
    candidate = policies(policy_dir, RECORDED.replace("context.amount > 5000", "context.amount > 2000"))
    facts = list(inputs())
    records = [record_of(recorded, i, f) for i, f in enumerate(facts)]
    report = replay(iter(records), candidate)
    # computed independently: the candidate's answer for each input, directly
    expected: dict[tuple[tuple[str, str], tuple[str, str]], list[str]] = {}
    for i, f in enumerate(facts):
        before, after = recorded.decide("transfer", f), candidate.decide("transfer", f)
        expected.setdefault(((before.status, before.reason), (after.status, after.reason)), []).append(f"dec_{i}")
    purpose = report.purposes["transfer"]
    assert purpose.replayed == len(facts) and report.not_replayable == 0
    assert {k: (t.count, t.examples) for k, t in purpose.transitions.items()} == {
        k: (len(v), v[:5]) for k, v in expected.items()
    }
    changed = {k: v for k, v in expected.items() if k[0] != k[1]}
    assert changed == {(("pass", "ok"), ("fail", "too_high")): ["dec_4", "dec_5"]}  # 3000 and 5000, not a PEP
    assert report.changed == purpose.changed == 2
    body = report.to_json()
    assert json.loads(json.dumps(body)) == body
    assert body["purposes"]["transfer"]["transitions"][0]["count"] >= 1  # type: ignore[index]
    assert "| pass/ok | fail/too_high | 2 | `dec_4`, `dec_5` |" in report.to_markdown()
    assert "pass/ok -> fail/too_high: 2 (e.g. dec_4, dec_5)" in report.to_text()


def test_what_the_record_cannot_supply_is_counted_by_name(policy_dir: Callable[..., Path]) -> None:
    recorded = policies(policy_dir, RECORDED)
    records = [record_of(recorded, i, f) for i, f in enumerate(inputs())]
    # a fact the recorded purpose did not declare
    new_fact = policies(policy_dir, RECORDED.replace("evidence: [is_pep]", "evidence: [is_pep, sanctions_listed]"))
    assert replay(records, new_fact).purposes["transfer"].not_replayable == {"sanctions_listed": 16}
    # a sensitive field, stored only as a hash
    by_id = RECORDED.replace("      - else: pass", '      - if: startswith(context.national_id, "AB")\n'
                             "        then: fail\n        reason: ab\n      - else: pass")
    report = replay(records, policies(policy_dir, by_id)).purposes["transfer"]
    # rules before it decide most inputs without reading the id: only the others are refused
    assert report.not_replayable == {"context.national_id": report.not_replayable["context.national_id"]}
    assert report.replayed + report.not_replayable["context.national_id"] == 16
    assert report.not_replayable["context.national_id"] == sum(
        1 for f in inputs() if recorded.decide("transfer", f).reason == "ok"
    )
    # a context field the recorded purpose's schema did not have
    channel = RECORDED.replace("      amount: {type: number}", "      amount: {type: number}\n      channel: {type: string}")
    channel = channel.replace("is_pep AND context.amount > 1000", 'is_pep AND context.channel == "web"')
    assert replay(records, policies(policy_dir, channel)).purposes["transfer"].not_replayable == {
        "context.channel": 8  # read by the first rule only when is_pep is true
    }
    # a purpose the candidate does not have
    other = policies(policy_dir, RECORDED.replace("  transfer:", "  payment:"))
    assert replay(records, other).to_json()["purposes"] == {  # type: ignore[comparison-overlap]
        "transfer": {"replayed": 0, "changed": 0, "transitions": [], "not_replayable": {"count": 16, "why": {"purpose": 16}}}
    }


def test_a_pseudonymised_subject_and_a_refusal_are_not_replayable(policy_dir: Callable[..., Path]) -> None:
    recorded = policies(policy_dir, RECORDED)
    facts = {"is_pep": False, "subject": {"sub": "ref-of-ada", "client_id": "web"},
             "context": {"amount": 10, "national_id": "AB123456"}}
    record = dataclasses.replace(record_of(recorded, 1, facts), hashed=frozenset({"context.national_id", "subject.sub"}))
    refused = dataclasses.replace(record, decision_id="dec_2", status="fail", reason="missing_consent", refused=True)
    by_client = RECORDED.replace("      - else: pass", '      - if: subject.client_id == "web"\n'
                                 "        then: fail\n        reason: web\n      - else: pass")
    report = replay([record, refused], policies(policy_dir, by_client)).purposes["transfer"]
    # the client is recorded as it was; only the refusal is left out
    assert (report.replayed, report.changed, dict(report.not_replayable)) == (1, 1, {"refused:missing_consent": 1})
    by_sub = by_client.replace("subject.client_id", "subject.sub")
    report = replay([record, refused], policies(policy_dir, by_sub)).purposes["transfer"]
    assert (report.replayed, dict(report.not_replayable)) == (0, {"subject.sub": 1, "refused:missing_consent": 1})


def test_an_absent_field_the_recorded_schema_had_is_replayed_as_absent(policy_dir: Callable[..., Path]) -> None:
    recorded = policies(policy_dir, RECORDED)
    record = record_of(recorded, 1, {"is_pep": True, "context": {}})
    report = replay([record], recorded)
    assert (report.replayed, report.changed, report.not_replayable) == (1, 0, 0)


def test_replay_streams_its_records(policy_dir: Callable[..., Path]) -> None:
    recorded = policies(policy_dir, RECORDED)
    template = record_of(recorded, 0, {"is_pep": False, "context": {"amount": 10, "national_id": "AB123456"}})
    consumed = 0

    def records() -> Iterator[Record]:
        nonlocal consumed
        for i in range(50_000):
            consumed += 1
            yield Record(f"dec_{i}", "transfer", template.facts, template.context, "pass", "ok",
                         template.hashed, template.declared, template.fields)

    report = replay(records(), recorded)
    assert consumed == 50_000 and report.replayed == 50_000
    transition = next(iter(report.purposes["transfer"].transitions.values()))
    assert transition.examples == [f"dec_{i}" for i in range(5)]  # five kept, not fifty thousand


def test_an_approved_report_lets_its_changes_through_and_names_the_others(policy_dir: Callable[..., Path]) -> None:
    recorded = policies(policy_dir, RECORDED)
    to_2000 = policies(policy_dir, RECORDED.replace("context.amount > 5000", "context.amount > 2000"))
    to_500 = policies(policy_dir, RECORDED.replace("context.amount > 5000", "context.amount > 500"))
    records = [record_of(recorded, i, f) for i, f in enumerate(inputs())]
    approval = json.loads(json.dumps(replay(iter(records), to_2000).to_json()))
    approved = approved_changes(approval)
    assert approved == {("transfer", ("pass", "ok"), ("fail", "too_high"))}
    assert unapproved(replay(iter(records), to_2000), approved) == []
    # a stricter candidate fails more decisions, but with the same transition: approved
    assert unapproved(replay(iter(records), to_500), approved) == []
    # a candidate that moves the review threshold changes something else: named
    moved = policies(policy_dir, RECORDED.replace("context.amount > 1000", "context.amount > 4000"))
    [(purpose, transition)] = unapproved(replay(iter(records), moved), approved)
    assert (purpose, transition.before, transition.after) == (
        "transfer", ("pass_with_conditions", "review"), ("pass", "ok"))
    assert transition.count == 2 and transition.examples == ["dec_11", "dec_12"]  # PEP, 1001 and 3000


def test_an_approval_that_is_not_a_report_is_refused_with_where() -> None:
    with pytest.raises(ApprovalError, match="expected a replay report"):
        approved_changes(["dec_1"])
    with pytest.raises(ApprovalError, match=r"purposes\.transfer\.transitions\[0\]\.to"):
        approved_changes({"purposes": {"transfer": {"transitions": [{"from": {"status": "pass", "reason": "ok"}}]}}})
