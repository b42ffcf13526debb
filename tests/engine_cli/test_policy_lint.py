"""`idgw policy lint`: every problem in one run, exact codes and positions, output formats."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pexpect
import pytest

from dsl import Diagnostic
from engine.lint import github_annotation
from tests.engine_cli.policy_cli_helpers import IDGW, ROOT, fixture, idgw

Found = list[tuple[str, str, int, int]]  # (file name, code, line, col)


def lint_json(*paths: str, strict: bool = False) -> tuple[int, Found]:
    args = ["policy", "lint", "--format", "json", *(["--strict"] if strict else []), *paths]
    result = idgw(*args)
    found = [(Path(d["file"]).name, d["code"], d["line"], d["col"]) for d in json.loads(result.stdout)]
    return result.exit_code, found


def test_every_expression_and_rule_error_in_one_run() -> None:
    code, found = lint_json(fixture("errors"))
    assert code == 1
    assert found == [
        ("policy.yaml", "E101", 6, 24),  # is_pep AND AND is_pep
        ("policy.yaml", "E102", 12, 23),  # is_peep
        ("policy.yaml", "E103", 18, 13),  # lenght(...)
        ("policy.yaml", "E104", 24, 13),  # len(credentials, 1)
        ("policy.yaml", "E105", 31, 13),  # number > "10000"
        ("policy.yaml", "E201", 38, 15),  # then: deny
        ("policy.yaml", "E202", 43, 9),  # no reason
        ("policy.yaml", "E203", 50, 9),  # after else
        ("policy.yaml", "W301", 56, 13),  # 1 < 2
        ("policy.yaml", "E203", 59, 9),  # after an always-true rule
    ]


def test_structure_errors_do_not_hide_the_other_purposes() -> None:
    code, found = lint_json(fixture("structure"))
    assert code == 1
    assert found == [
        ("bad_json.json", "E208", 1, 21),
        ("policy.yaml", "E002", 6, 9),  # thn:
        ("policy.yaml", "E205", 11, 9),  # if + else
        ("policy.yaml", "E206", 17, 9),  # is_pep twice
        ("policy.yaml", "E207", 24, 22),  # type: numbr
        ("policy.yaml", "E106", 30, 46),  # 34 nested brackets
        ("policy.yaml", "E107", 37, 33),  # "[a-"
        ("policy.yaml", "E108", 44, 30),  # / 0
    ]


def test_yaml_errors_in_two_files_are_both_reported() -> None:
    code, found = lint_json(fixture("yaml_error"))
    assert code == 1
    assert found == [("bad_indent.yaml", "E001", 6, 8), ("duplicate_key.yaml", "E003", 8, 9)]


def test_duplicate_purpose_across_files() -> None:
    code, found = lint_json(fixture("duplicate_purpose"))
    assert (code, found) == (1, [("b.yaml", "E204", 3, 3)])


def test_warnings_pass_unless_strict() -> None:
    expected = [
        ("unused_list.yaml", "W305", 1, 1),
        ("policy.yaml", "W302", 6, 9),  # citizen_valid never used
        ("policy.yaml", "W306", 7, 9),  # risk_score is not a gateway fact
        ("policy.yaml", "W301", 9, 13),  # 1 > 2
        ("policy.yaml", "W303", 12, 13),  # sanctions_listed not declared
        ("policy.yaml", "W304", 15, 9),  # conditions on a fail rule
    ]
    assert lint_json(fixture("warnings")) == (0, expected)
    assert lint_json(fixture("warnings"), strict=True) == (1, expected)


def test_test_files_are_linted_against_the_policies() -> None:
    code, found = lint_json(fixture("test_errors"))
    assert code == 1
    assert found == [
        ("invalid_test.yaml", "E401", 3, 5),
        ("invalid_test.yaml", "E401", 7, 22),
        ("unknown_fact_test.yaml", "E403", 4, 38),
        ("unknown_fact_test.yaml", "E403", 10, 17),
        ("unknown_purpose_test.yaml", "E402", 1, 10),
    ]


def test_text_output_shows_source_line_caret_and_hint() -> None:
    result = idgw("policy", "lint", fixture("errors"))
    assert result.exit_code == 1
    block = (
        "tests/fixtures/broken/errors/policy.yaml:12:23: error: E102 unknown name `is_peep`\n"
        "          - if: is_pep OR is_peep\n"
        "                          ^^^^^^^\n"
        "    hint: did you mean `is_pep`?\n"
    )
    assert block in result.stdout
    assert result.stdout.splitlines()[-1] == "9 errors, 1 warning"
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal


def test_json_objects_have_the_documented_fields() -> None:
    result = idgw("policy", "lint", "--format", "json", fixture("duplicate_purpose"))
    [item] = json.loads(result.stdout)
    assert {"file", "line", "col", "severity", "code", "message"} <= set(item)
    assert item["severity"] == "error"
    assert item["message"].startswith("purpose `screening` is already defined at ")


def test_github_format_is_a_workflow_command_per_problem() -> None:
    result = idgw("policy", "lint", "--format", "github", fixture("warnings"), fixture("duplicate_purpose"))
    lines = result.stdout.splitlines()
    assert result.exit_code == 1
    assert len(lines) == 7
    assert lines[0] == (
        "::error file=tests/fixtures/broken/duplicate_purpose/b.yaml,line=3,col=3::E204 purpose `screening` "
        "is already defined at tests/fixtures/broken/duplicate_purpose/a.yaml:2"
    )
    assert lines[-1].startswith(
        "::warning file=tests/fixtures/broken/warnings/policy.yaml,line=15,col=9::W304 "
    )


def test_github_annotations_escape_what_github_would_misread() -> None:
    diagnostic = Diagnostic(code="E101", message="50% of\nit", file="a,b:c.yaml", line=2, col=3)
    assert github_annotation(diagnostic) == "::error file=a%2Cb%3Ac.yaml,line=2,col=3::E101 50%25 of%0Ait"


def test_shipped_policies_are_clean() -> None:
    result = idgw("policy", "lint", "--strict", "policies")
    assert (result.exit_code, result.stdout) == (0, "no problems found\n")


def test_default_path_comes_from_the_environment() -> None:
    result = idgw("policy", "lint", "--format", "json", env={"IDGW_POLICY_DIR": fixture("duplicate_purpose")})
    assert [d["code"] for d in json.loads(result.stdout)] == ["E204"]


@pytest.mark.parametrize(
    "args",
    [["policy", "lint", "no/such/dir"], ["policy", "lint", "--format", "xml", "policies"]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert idgw(*args).exit_code == 2


def test_real_console_script_in_a_subprocess() -> None:
    completed = subprocess.run(
        [str(IDGW), "policy", "lint", "--format", "github", "tests/fixtures/broken/errors"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 1
    first = completed.stdout.splitlines()[0]
    assert first == (
        "::error file=tests/fixtures/broken/errors/policy.yaml,line=6,col=24::"
        "E101 unexpected 'AND', expected an operand"
    )
    assert re.search(r"^::error .*line=59,col=9::E203 ", completed.stdout, re.MULTILINE)


def test_colour_on_a_terminal_only() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    output = pexpect.run(
        f"{IDGW} policy lint {fixture('duplicate_purpose')}", cwd=str(ROOT), env=env, encoding="utf-8", timeout=60
    )
    assert "\x1b[1;31merror\x1b[0m: E204 purpose `screening`" in output
    piped = subprocess.run(
        [str(IDGW), "policy", "lint", fixture("duplicate_purpose")], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert ": error: E204 purpose `screening`" in piped.stdout
    assert "\x1b[" not in piped.stdout


def large_purpose(tmp_path: Path, rules: int) -> str:
    """`rules` rules: two of every three compare a path with a constant (indexed), the
    third adds to the path first (not indexable); each rule is 3 lines from line 6."""
    lines = ["purposes:", "  big:", "    context:", "      n: {type: number}", "    rules:"]
    for i in range(rules):
        condition = f"context.n + {i} > 100" if i % 3 == 1 else f"context.n == {i}"
        lines += [f"      - if: {condition}", "        then: pass", f"        reason: r{i}"]
    (tmp_path / "big.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(tmp_path)


def test_large_purposes_get_notes_on_their_index(tmp_path: Path) -> None:
    result = idgw("policy", "lint", "--format", "json", large_purpose(tmp_path, 90))
    assert result.exit_code == 0
    notes = json.loads(result.stdout)
    assert {n["severity"] for n in notes} == {"info"}
    summary = notes[0]
    assert (summary["code"], summary["line"]) == ("I501", 2)
    assert summary["message"] == (
        "purpose `big`: 60 of 90 rules are indexed, on context.n (equality); 30 are tried for every input"
    )
    # the first 20 scan rules one by one, at their own line, then one note for the rest
    rest = [n for n in notes if n["code"] == "I502" and n["line"] == 2]
    scans = [n for n in notes if n["code"] == "I502" and n["line"] != 2]
    assert [(n["line"], n["col"]) for n in scans] == [(6 + 3 * i, 9) for i in range(1, 60, 3)]
    assert scans[0]["message"] == "rule 2 is tried for every input: none of its tests can be looked up"
    assert [n["message"] for n in rest] == ["and 10 more rules of `big` are tried for every input"]


def test_notes_never_fail_a_lint_and_show_as_github_notices(tmp_path: Path) -> None:
    directory = large_purpose(tmp_path, 60)
    assert idgw("policy", "lint", "--strict", directory).exit_code == 0
    text = idgw("policy", "lint", directory).stdout
    assert "info: I501 purpose `big`" in text and text.rstrip().endswith("no problems found (21 notes)")
    github = idgw("policy", "lint", "--format", "github", directory).stdout.splitlines()
    assert github[0].startswith("::notice file=") and "I501" in github[0]


def test_purposes_of_fifty_rules_or_fewer_get_no_notes(tmp_path: Path) -> None:
    result = idgw("policy", "lint", "--format", "json", large_purpose(tmp_path, 50))
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
