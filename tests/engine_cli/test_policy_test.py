"""`idgw policy test` and the `engine.testing` API the hot-reload gate calls."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

import engine
from engine.testing import run_tests
from server.facts import CATALOGUE
from tests.engine_cli.policy_cli_helpers import BROKEN, fixture, idgw

SCREENING = BROKEN / "test_errors"


def screening() -> engine.PolicySet:
    return engine.load(SCREENING, catalogue=CATALOGUE)


# -- the library API -------------------------------------------------------------------
def test_report_of_the_broken_test_directory() -> None:
    report = run_tests(screening())
    assert (report.passed, report.failed, report.ok) == (2, 1, False)
    assert [(Path(d.file).name, d.code, d.line, d.col) for d in report.errors] == [
        ("invalid_test.yaml", "E401", 3, 5),
        ("invalid_test.yaml", "E401", 7, 22),
        ("unknown_fact_test.yaml", "E403", 4, 38),
        ("unknown_fact_test.yaml", "E403", 10, 17),
        ("unknown_purpose_test.yaml", "E402", 1, 10),
    ]
    [failure] = report.failures
    assert (Path(failure.file).name, failure.line, failure.purpose) == ("failing_test.yaml", 6, "screening")
    assert failure.name == "listed subject is wrongly expected to pass"
    assert (failure.expected.status, failure.expected.reason) == ("pass", "not_listed")
    assert (failure.actual.status, failure.actual.reason, failure.actual.line) == ("fail", "sanctioned", 10)
    assert failure.actual.explanation is not None  # failures carry their explanation
    assert failure.mismatches == ("status: expected pass, got fail", "reason: expected not_listed, got sanctioned")


def test_coverage_counts_the_rules_that_decided_a_case() -> None:
    coverage = run_tests(screening()).coverage["screening"]
    assert coverage.reached == {0, 2}
    assert [rule.line for rule in coverage.missed] == [13]
    assert round(coverage.percent, 1) == 66.7


def test_a_clean_set_is_ok_and_files_default_to_its_own_tests() -> None:
    policies = screening()
    report = run_tests(policies, files=[SCREENING / "failing_test.yaml", SCREENING / "tests" / "extra.yaml"])
    assert (report.passed, report.failed, report.errors) == (2, 1, [])
    good = run_tests(policies, files=[SCREENING / "tests" / "extra.yaml"])
    assert good.ok and good.passed == 1
    assert [Path(f).name for f in policies.test_files] == [
        "failing_test.yaml", "invalid_test.yaml", "extra.yaml", "unknown_fact_test.yaml", "unknown_purpose_test.yaml",
    ]


def test_pattern_selects_cases_by_name() -> None:
    report = run_tests(screening(), pattern="WRONGLY")
    assert [r.name for r in report.results] == ["listed subject is wrongly expected to pass"]
    assert [r.name for r in run_tests(screening(), pattern="clear*passes").results] == ["clear subject passes"]


def test_conditions_are_compared_exactly(tmp_path: Path) -> None:
    case = (
        "purpose: screening\ncases:\n  - name: pep\n    input: {sanctions_listed: false, is_pep: true}\n"
        "    expect: {status: pass_with_conditions, conditions: [other]}\n"
    )
    (tmp_path / "c_test.yaml").write_text(case)
    [result] = run_tests(screening(), files=[tmp_path / "c_test.yaml"]).results
    assert result.mismatches == ("conditions: expected ['other'], got ['enhanced_due_diligence']",)


@pytest.mark.parametrize(
    ("text", "code", "line", "col"),
    [
        ("", "E401", 1, 1),
        ("- just a list\n", "E401", 1, 1),
        ("purpose: screening\ncases: []\n", "E401", 2, 8),
        ("purpose: screening\ncases:\n  - name: x\n    inptu: {}\n    expect: {status: pass}\n", "E401", 4, 5),
        ("purpose: screening\ncases:\n  - name: x\n    input: [1]\n    expect: {status: pass}\n", "E401", 4, 12),
        ("purpose: screening\ncases:\n  - name: x\n    input: {subject: {sbu: a}}\n    expect: {status: pass}\n",
         "E403", 4, 23),
        ("cases:\n  - name: x\n    purpose: nope\n    expect: {status: pass}\n", "E402", 3, 14),
        ("purpose: screening\ncases: [\n", "E001", 3, 1),
    ],
)
def test_invalid_test_files(tmp_path: Path, text: str, code: str, line: int, col: int) -> None:
    path = tmp_path / "x_test.yaml"
    path.write_text(text)
    report = run_tests(screening(), files=[path])
    assert [(d.code, d.line, d.col) for d in report.errors] == [(code, line, col)]
    assert not report.ok and report.results == []


def test_consent_and_context_inputs_reach_the_rules(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "purposes:\n  p:\n    context:\n      amount: {type: number}\n    evidence: [consent.marketing]\n"
        "    rules:\n      - if: consent.marketing AND context.amount > 5\n        then: pass\n        reason: ok\n"
        "      - else: fail\n        reason: denied\n"
    )
    (tmp_path / "p_test.yaml").write_text(
        "purpose: p\ncases:\n  - name: with consent\n    input: {consent: {marketing: true}, context: {amount: 6}}\n"
        "    expect: {status: pass, reason: ok}\n  - name: without amount\n    input: {consent: {marketing: true}}\n"
        "    expect: {status: fail, reason: denied}\n"
    )
    report = run_tests(engine.load(tmp_path))
    assert (report.passed, report.failed, report.errors) == (2, 0, [])


# -- the command -----------------------------------------------------------------------
def test_text_output_ends_with_the_counts_and_shows_the_failure() -> None:
    result = idgw("policy", "test", fixture("test_errors"))
    assert result.exit_code == 1
    out = result.stdout
    assert out.splitlines()[-1] == "2 passed, 1 failed"
    assert (
        "FAILED tests/fixtures/broken/test_errors/failing_test.yaml:6 screening: "
        "listed subject is wrongly expected to pass\n"
        "  status: expected pass, got fail\n"
    ) in out
    assert '  actual:   {"status": "fail", "reason": "sanctioned", "conditions": []} (rule 1, line 10)\n' in out
    assert "    rule 1 (line 10) `sanctions_listed`: matched -> fail (sanctioned); read sanctions_listed=true\n" in out
    assert "unknown_purpose_test.yaml:1:10: error: E402 unknown purpose `screenin`" in out
    assert "5 errors in test files" in out


def test_shipped_policies_pass() -> None:
    result = idgw("policy", "test", "policies")
    assert result.exit_code == 0
    passed, failed = result.stdout.splitlines()[-1].split(", ")
    assert failed == "0 failed" and int(passed.split()[0]) > 0


def test_k_selects_and_a_test_file_path_runs_only_that_file() -> None:
    result = idgw("policy", "test", "-k", "clear subject", fixture("test_errors"))
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (1, "1 passed, 0 failed")  # errors still fail
    single = idgw("policy", "test", "-v", f"{fixture('test_errors')}/tests/extra.yaml")
    assert single.exit_code == 0
    assert single.stdout.splitlines() == [
        "PASSED tests/fixtures/broken/test_errors/tests/extra.yaml:4 screening: evidence of the wrong type fails closed",
        "1 passed, 0 failed",
    ]


def test_coverage_and_fail_under() -> None:
    result = idgw("policy", "test", "--coverage", f"{fixture('test_errors')}/failing_test.yaml")
    assert "  screening                         66.7%  2/3 rules  not reached: line 13\n" in result.stdout
    ok = idgw("policy", "test", "--fail-under", "60", f"{fixture('test_errors')}/failing_test.yaml", "-k", "clear")
    assert ok.exit_code == 1  # only 1 of 3 rules reached: 33.3% < 60
    assert "coverage 33.3% is below --fail-under 60%" in ok.stdout
    assert ok.stdout.splitlines()[-1] == "1 passed, 0 failed"
    full = idgw("policy", "test", "--fail-under", "100", "policies")
    assert full.exit_code == 0


def test_json_format() -> None:
    data = json.loads(idgw("policy", "test", "--format", "json", fixture("test_errors")).stdout)
    assert (data["passed"], data["failed"], data["ok"]) == (2, 1, False)
    assert [e["code"] for e in data["errors"]] == ["E401", "E401", "E403", "E403", "E402"]
    failed = [r for r in data["results"] if not r["passed"]]
    assert failed[0]["actual"]["reason"] == "sanctioned"
    assert data["coverage"]["purposes"]["screening"]["missed"] == [
        {"index": 1, "line": 13, "reason": "politically_exposed"}
    ]


def test_junit_format() -> None:
    result = idgw("policy", "test", "--format", "junit", fixture("test_errors"))
    assert result.exit_code == 1
    root = ElementTree.fromstring(result.stdout.split("\n", 1)[1])
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("8", "1", "5")
    failures = root.findall(".//testcase/failure")
    assert [f.get("message") for f in failures] == [
        "status: expected pass, got fail; reason: expected not_listed, got sanctioned"
    ]
    errors = [e.get("message") for e in root.findall(".//testcase/error")]
    assert "E402 unknown purpose `screenin`" in errors


def test_a_broken_policy_set_is_reported_and_fails() -> None:
    result = idgw("policy", "test", fixture("duplicate_purpose"))
    assert result.exit_code == 1
    assert "b.yaml:3:3: error: E204 " in result.stdout
    assert result.stdout.splitlines()[-1] == "0 passed, 0 failed"

