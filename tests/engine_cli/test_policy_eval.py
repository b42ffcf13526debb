"""`idgw policy eval`: one decision as JSON; one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine_cli.policy_cli_helpers import fixture, idgw

SCREENING = fixture("test_errors")


def test_decision_from_stdin() -> None:
    result = idgw(
        "policy", "eval", "--purpose", "screening", "--dir", SCREENING,
        input='{"sanctions_listed": false, "is_pep": true, "context": {"amount": 3}}',
    )
    assert result.exit_code == 0
    decision = json.loads(result.stdout)
    assert decision["purpose"] == "screening"
    assert (decision["status"], decision["reason"]) == ("pass_with_conditions", "politically_exposed")
    assert decision["conditions"] == ["enhanced_due_diligence"]
    assert decision["evidence"] == {"sanctions_listed": False, "is_pep": True}
    assert decision["policy_revision"].startswith("sha256:")
    assert decision["decision_id"].startswith("dec_") and len(decision["decision_id"]) > 20
    assert "explanation" not in decision


def test_explain_from_a_file(tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text('{"sanctions_listed": true, "is_pep": false}')
    result = idgw("policy", "eval", "-p", "screening", "--input", str(facts), "--explain", "--dir", SCREENING)
    decision = json.loads(result.stdout)
    assert decision["reason"] == "sanctioned"
    rules = [e for e in decision["explanation"] if e["kind"] == "rule"]
    assert rules == [
        {
            "kind": "rule", "index": 0, "line": 10, "condition": "sanctions_listed", "matched": True,
            "reads": {"sanctions_listed": True}, "outcome": "fail", "reason": "sanctioned",
        }
    ]


def test_missing_evidence_fails_closed() -> None:
    result = idgw("policy", "eval", "-p", "screening", "--input", "-", "--dir", SCREENING, input="{}")
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (0, "missing_evidence")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["-p", "screening"], "{not json", "error: invalid JSON input: Expecting property name enclosed in double "
         "quotes (line 1, column 2)"),
        (["-p", "screening"], "[1, 2]", "error: the input must be a JSON object of facts"),
        (["-p", "screenin"], "{}", "error: unknown purpose 'screenin'; known purposes: screening"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], stdin: str, message: str) -> None:
    result = idgw("policy", "eval", *args, "--dir", SCREENING, input=stdin)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message]


def test_a_broken_policy_set_prints_its_diagnostics_and_exits_1() -> None:
    result = idgw("policy", "eval", "-p", "screening", "--dir", fixture("duplicate_purpose"), input="{}")
    assert result.exit_code == 1
    assert "b.yaml:3:3: error: E204 " in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: the policy set in tests/fixtures/broken/duplicate_purpose has 1 error(s)"
    )


def test_purpose_is_required() -> None:
    result = idgw("policy", "eval", "--dir", SCREENING, input="{}")
    assert result.exit_code == 2
    assert "Missing option '--purpose'" in result.stderr
