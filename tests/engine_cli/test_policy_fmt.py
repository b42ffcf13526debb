"""`idgw policy fmt`: canonical layout that keeps comments; idempotent; --check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.fmt import format_text, normalize_expression
from tests.engine_cli.policy_cli_helpers import BROKEN, idgw

FORMATTED = """\
# Screening policy, written by hand.
# Owner: risk team
purposes:
  screening:      # the only purpose
    # what this purpose is for
    description: Clear of sanctions, with politically exposed persons reviewed.
    context:
      amount: {type: number}
    evidence:
      - sanctions_listed
      - is_pep
      - credentials
    rules:
      # sanctions come first
      - if: sanctions_listed OR (is_pep AND context.amount > 10000)
        then: fail
        reason: sanctioned
      # then the politically exposed
      - if: "is_pep and len(credentials) == 0"
        then: pass_with_conditions
        reason: politically_exposed       # needs a human
        conditions: [enhanced_due_diligence]
      - else: pass
        reason: not_listed
"""


def comments(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


def test_fmt_rewrites_to_the_canonical_layout(copy_fixture: Callable[[str], Path]) -> None:
    directory = copy_fixture("unformatted")
    original = (directory / "policy.yaml").read_text()
    result = idgw("policy", "fmt", str(directory))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"reformatted {directory / 'policy.yaml'}", "1 file reformatted, 0 unchanged"]
    formatted = (directory / "policy.yaml").read_text()
    assert formatted == FORMATTED
    assert sorted(comments(formatted)) == sorted(comments(original))  # every comment kept


def test_fmt_is_idempotent_and_check_passes_afterwards(copy_fixture: Callable[[str], Path]) -> None:
    directory = copy_fixture("unformatted")
    idgw("policy", "fmt", str(directory))
    again = idgw("policy", "fmt", "--check", str(directory))
    assert (again.exit_code, again.stdout) == (0, "0 files would be reformatted, 1 unchanged\n")
    assert format_text(FORMATTED) == FORMATTED


def test_check_lists_files_and_changes_nothing() -> None:
    path = BROKEN / "unformatted" / "policy.yaml"
    before = path.read_text()
    result = idgw("policy", "fmt", "--check", "tests/fixtures/broken/unformatted")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "would reformat tests/fixtures/broken/unformatted/policy.yaml",
        "1 file would be reformatted, 0 unchanged",
    ]
    assert path.read_text() == before


def test_diff_shows_the_change() -> None:
    result = idgw("policy", "fmt", "--diff", "tests/fixtures/broken/unformatted/policy.yaml")
    assert result.exit_code == 1
    assert "-            if: sanctions_listed   OR   (is_pep AND context.amount>10000)\n" in result.stdout
    assert "+      - if: sanctions_listed OR (is_pep AND context.amount > 10000)\n" in result.stdout


def test_formatted_policy_decides_the_same(copy_fixture: Callable[[str], Path]) -> None:
    import engine

    directory = copy_fixture("unformatted")
    facts = {"sanctions_listed": False, "is_pep": True, "credentials": [], "context": {"amount": 5}}
    before = engine.load(directory).decide("screening", facts)
    idgw("policy", "fmt", str(directory))
    after = engine.load(directory).decide("screening", facts)
    assert (before.status, before.reason, before.rule) == (after.status, after.reason, after.rule)
    assert after.reason == "politically_exposed"


def test_shipped_policies_are_already_canonical() -> None:
    result = idgw("policy", "fmt", "--check", "policies")
    assert result.exit_code == 0, result.stdout


def test_test_files_get_their_own_key_order(tmp_path: Path) -> None:
    path = tmp_path / "a_test.yaml"
    path.write_text("cases:\n- expect: {reason: x, status: pass}\n  input: {is_pep: true}\n  name: n\npurpose: p\n")
    idgw("policy", "fmt", str(path))
    assert path.read_text() == (
        "purpose: p\ncases:\n  - name: n\n    input: {is_pep: true}\n    expect: {status: pass, reason: x}\n"
    )


FLOW_POLICY = (
    '{purposes: {screening: {rules: [{if: "sanctions_listed OR is_pep", then: fail, reason: listed},'
    ' {else: pass, reason: clear}], evidence: [sanctions_listed, is_pep],'
    ' context: {amount: {type: number}}, description: "Screening in flow style"}}}\n'
)
BLOCK_POLICY = """\
purposes:
  screening:
    description: "Screening in flow style"
    context:
      amount: {type: number}
    evidence: [sanctions_listed, is_pep]
    rules:
      - if: "sanctions_listed OR is_pep"
        then: fail
        reason: listed
      - else: pass
        reason: clear
"""


def test_a_flow_style_file_is_not_canonical_and_becomes_block_style(tmp_path: Path) -> None:
    import engine

    path = tmp_path / "screening.yaml"
    path.write_text(FLOW_POLICY)
    inputs = [{"sanctions_listed": s, "is_pep": p} for s in (False, True) for p in (False, True)]
    before = [engine.load(tmp_path).decide("screening", facts) for facts in inputs]
    check = idgw("policy", "fmt", "--check", str(tmp_path))
    assert check.exit_code == 1 and "screening.yaml" in check.stdout
    assert path.read_text() == FLOW_POLICY  # --check writes nothing
    assert idgw("policy", "fmt", str(tmp_path)).exit_code == 0
    assert path.read_text() == BLOCK_POLICY
    assert idgw("policy", "fmt", "--check", str(tmp_path)).exit_code == 0
    after = [engine.load(tmp_path).decide("screening", facts) for facts in inputs]
    assert [(d.status, d.reason, d.rule) for d in after] == [(d.status, d.reason, d.rule) for d in before]


def test_a_flow_style_test_file_gets_block_style_cases(tmp_path: Path) -> None:
    path = tmp_path / "a_test.yaml"
    path.write_text("{purpose: p, cases: [{name: n, input: {is_pep: true}, expect: {status: pass}}]}\n")
    idgw("policy", "fmt", str(path))
    assert path.read_text() == "purpose: p\ncases:\n  - name: n\n    input: {is_pep: true}\n    expect: {status: pass}\n"


def test_invalid_yaml_is_reported_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text((BROKEN / "yaml_error" / "bad_indent.yaml").read_text())
    result = idgw("policy", "fmt", str(path))
    assert result.exit_code == 1
    assert f"{path}:6:8: error: E001 " in result.stderr
    assert path.read_text() == (BROKEN / "yaml_error" / "bad_indent.yaml").read_text()


def test_block_scalars_keep_their_style_and_line_breaks() -> None:
    text = (
        "purposes:\n  p:\n    evidence: [is_pep]\n    rules:\n"
        "      - if: |\n          is_pep   AND\n            (context.amount>5)\n        then: fail\n        reason: r\n"
    )
    assert format_text(text) == text.replace("is_pep   AND", "is_pep AND").replace("amount>5", "amount > 5")


def test_document_start_and_the_comments_above_it_are_kept() -> None:
    text = "# header\n---\npurposes:\n  p:\n    rules:\n      - else: pass\n        reason: ok\n# the end\n"
    assert format_text(text) == text


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("context.amount>10000", "context.amount > 10000"),
        ("is_pep  and(  context.a==1 )", "is_pep and (context.a == 1)"),
        ("len( credentials )>=2", "len(credentials) >= 2"),
        ("x in[1,2 ,3]", "x in [1, 2, 3]"),
        ("context.items [ 0 ] . amount", "context.items[0].amount"),
        ("context.a - -1 > 2*-3", "context.a - -1 > 2 * -3"),
        ("NOT(is_pep)", "NOT (is_pep)"),
        ("context.s  not  in  ['a b',  \"c  d\"]", "context.s not in ['a b', \"c  d\"]"),
        ("any(x in context.items,x.amount>100)", "any(x in context.items, x.amount > 100)"),
        ("is_pep AND AND", "is_pep AND AND"),  # does not parse: left alone
    ],
)
def test_expression_spacing(before: str, after: str) -> None:
    assert normalize_expression(before) == after
    assert normalize_expression(after) == after
