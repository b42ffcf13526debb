"""engine.load / engine.build: diagnostics with exact positions in the YAML file."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import engine
from dsl import Diagnostic
from server.facts import CATALOGUE

HEADER = """purposes:
  p:
    evidence: [is_pep]
    rules:
"""


def diagnostics(policy_dir: Callable[..., Path], files: dict[str, str]) -> list[Diagnostic]:
    """Every diagnostic of these files, checked as the gateway checks them (its facts)."""
    return engine.build(policy_dir(files), catalogue=CATALOGUE).diagnostics


def only(found: list[Diagnostic], code: str) -> Diagnostic:
    matching = [d for d in found if d.code == code]
    assert len(matching) == 1, [d.render() for d in found]
    return matching[0]


def test_syntax_error_in_plain_scalar_points_into_the_file(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: is_pep AND AND is_pep\n        then: fail\n        reason: r\n"
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E101")
    assert (d.line, d.col) == (5, 24)
    assert d.file.endswith("p.yaml")
    rendered = d.render()
    assert "      - if: is_pep AND AND is_pep" in rendered
    assert rendered.splitlines()[2] == "    " + " " * 23 + "^^^"


def test_error_in_double_quoted_scalar(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + '      - if: "is_pep AND \\"x\\" > lenn(1)"\n        then: fail\n        reason: r\n'
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E103")
    # `lenn` sits at column 33 of the file line, after the two escaped quotes
    assert (d.line, d.col) == (5, 33)


def test_error_in_single_quoted_scalar(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: 'is_pep == ''yes'''\n        then: fail\n        reason: r\n"
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E105")
    assert (d.line, d.col) == (5, 14)


def test_error_on_second_line_of_block_scalar(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: |\n          is_pep AND\n            is_ppe\n        then: fail\n        reason: r\n"
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E102")
    assert (d.line, d.col) == (7, 13)
    assert d.hint == "did you mean `is_pep`?"


def test_error_in_folded_scalar(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: >\n          is_pep AND\n          context.x ==\n        then: fail\n        reason: r\n"
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E101")
    assert d.line == 7


def test_yaml_syntax_error(policy_dir: Callable[..., Path]) -> None:
    d = only(diagnostics(policy_dir, {"p.yaml": "purposes:\n  p: [unclosed\n"}), "E001")
    assert d.line == 3


def test_structure_error_points_at_the_unknown_key(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: is_pep\n        then: fail\n        reasn: r\n"
    found = diagnostics(policy_dir, {"p.yaml": text})
    d = only(found, "E002")
    assert (d.line, d.col) == (7, 9)
    assert d.hint == "did you mean `reason`?"


def test_every_problem_is_reported_in_one_run(policy_dir: Callable[..., Path]) -> None:
    text = (
        HEADER
        + "      - if: is_pep\n        then: deny\n        reason: r\n"
        + "      - if: is_pep\n        then: fail\n"
        + "      - if: lenn(1)\n        then: fail\n        reason: r\n"
    )
    found = diagnostics(policy_dir, {"p.yaml": text})
    codes = [(d.code, d.line) for d in found]
    assert ("E201", 6) in codes
    assert ("E202", 8) in codes
    assert ("E103", 10) in codes
    with pytest.raises(engine.PolicyError) as err:
        engine.load(policy_dir({}))
    assert len(err.value.errors) == 3


def test_unreachable_after_else_and_after_always_true(policy_dir: Callable[..., Path]) -> None:
    text = (
        HEADER
        + "      - else: pass\n        reason: a\n"
        + "      - if: is_pep\n        then: fail\n        reason: b\n"
    )
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E203")
    assert d.line == 7
    text = (
        HEADER
        + "      - if: 1 < 2\n        then: pass\n        reason: a\n"
        + "      - if: is_pep\n        then: fail\n        reason: b\n"
    )
    found = diagnostics(policy_dir, {"p.yaml": text})
    assert only(found, "W301").message == "condition is always true"
    assert only(found, "E203").line == 8


def test_duplicate_purpose_across_files(policy_dir: Callable[..., Path]) -> None:
    body = HEADER + "      - else: pass\n        reason: ok\n"
    d = only(diagnostics(policy_dir, {"a.yaml": body, "b.yaml": body}), "E204")
    assert d.file.endswith("b.yaml")
    assert "a.yaml:2" in d.message


def test_duplicate_key_in_one_file(policy_dir: Callable[..., Path]) -> None:
    body = "purposes:\n  p:\n    rules: [{else: pass, reason: a}]\n  p:\n    rules: [{else: pass, reason: b}]\n"
    d = only(diagnostics(policy_dir, {"a.yaml": body}), "E003")
    assert (d.line, d.col) == (4, 3)


def test_warnings_do_not_stop_loading(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    evidence: [is_pep, sanctions_listed]
    rules:
      - if: is_pep AND citizen_valid
        then: fail
        reason: r
        conditions: [x]
      - else: pass
        reason: ok
"""
    root = policy_dir({"p.yaml": text, "data/unused.yaml": "[1, 2]\n"})
    policies = engine.load(root, catalogue=CATALOGUE)
    codes = sorted(d.code for d in policies.warnings)
    assert codes == ["W302", "W303", "W304", "W305"]


def test_data_documents_are_readable_from_rules(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    context:
      country: {type: string}
    rules:
      - if: context.country in data.high_risk_countries
        then: fail
        reason: high_risk
      - if: data.limits.max > 5
        then: pass
        reason: ok
"""
    root = policy_dir(
        {
            "p.yaml": text,
            "data/high_risk_countries.yaml": "- IR\n- KP\n",
            "data/limits.json": '{"max": 10}',
        }
    )
    policies = engine.load(root)
    assert policies.decide("p", {"context": {"country": "KP"}}).reason == "high_risk"
    assert policies.decide("p", {"context": {"country": "GB"}}).reason == "ok"
    assert policies.decide("p", {"context": {"country": 7}}).reason == "ok"


def test_unknown_data_document_and_context_field(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    context:
      amount: {type: number}
    rules:
      - if: data.nope == 1 OR context.amout > 1
        then: fail
        reason: r
"""
    found = diagnostics(policy_dir, {"p.yaml": text})
    messages = sorted((d.code, d.col, d.hint or "") for d in found if d.code == "E102")
    assert messages == [("E102", 13, "data documents live in the `data/` folder"), ("E102", 31, "did you mean `amount`?")]


def test_context_schema_types_are_checked(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    context:
      amount: {type: number}
    rules:
      - if: context.amount == "big"
        then: fail
        reason: r
"""
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E105")
    assert (d.line, d.col) == (6, 13)


def test_revision_depends_on_content_not_location(policy_dir: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    body = HEADER + "      - else: pass\n        reason: ok\n"
    first = engine.load(policy_dir({"a.yaml": body}))
    other = tmp_path_factory.mktemp("elsewhere")
    (other / "a.yaml").write_text(body)
    assert engine.load(other).revision == first.revision
    assert first.revision.startswith("sha256:") and len(first.revision) == 71
    (other / "a.yaml").write_text(body.replace("reason: ok", "reason: fine"))
    assert engine.load(other).revision != first.revision
    assert engine.load(other).decide("p", {"is_pep": True}).revision == engine.load(other).revision


def test_test_files_and_hidden_files_are_not_policies(policy_dir: Callable[..., Path]) -> None:
    body = HEADER + "      - else: pass\n        reason: ok\n"
    root = policy_dir(
        {
            "a.yaml": body,
            "a_test.yaml": "purpose: p\ncases: []\n",
            "tests/more.yaml": "purpose: p\ncases: []\n",
            ".#a.yaml": "garbage: [",
            "sub/b.yml": body.replace("  p:", "  q:"),
        }
    )
    policies = engine.load(root)
    assert sorted(policies.purposes) == ["p", "q"]
    assert sorted(Path(f).name for f in policies.test_files) == ["a_test.yaml", "more.yaml"]


def test_empty_directory_is_an_error(policy_dir: Callable[..., Path]) -> None:
    d = only(diagnostics(policy_dir, {}), "E209")
    assert "no policy files" in d.message


def test_policy_text_is_never_executed(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: __import__('os')\n        then: fail\n        reason: r\n"
    found = diagnostics(policy_dir, {"p.yaml": text})
    assert {d.code for d in found if d.severity == "error"} == {"E103"}
    text = HEADER + "      - if: __import__('os').system('false')\n        then: fail\n        reason: r\n"
    found = diagnostics(policy_dir, {"p.yaml": text})
    assert {d.code for d in found if d.severity == "error"} == {"E101"}


def test_expression_limits(policy_dir: Callable[..., Path]) -> None:
    deep = "(" * 40 + "is_pep" + ")" * 40
    text = HEADER + f"      - if: {deep}\n        then: fail\n        reason: r\n"
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E106")
    assert d.line == 5


def test_a_condition_must_be_a_bool(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    context:
      amount: {type: number}
    rules:
      - if: context.amount
        then: fail
        reason: r
"""
    d = only(diagnostics(policy_dir, {"p.yaml": text}), "E105")
    assert (d.line, d.col, d.message) == (6, 13, "a condition must be a bool, this is a number")


def test_facts_of_a_broken_rule_still_count_as_used(policy_dir: Callable[..., Path]) -> None:
    text = HEADER + "      - if: is_pep AND lenn(1)\n        then: fail\n        reason: r\n"
    codes = {d.code for d in diagnostics(policy_dir, {"p.yaml": text})}
    assert codes == {"E103"}


def test_string_concatenation_with_an_untyped_field(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    rules:
      - if: '"GB" + context.id == "GB123"'
        then: pass
        reason: ok
"""
    policies = engine.load(policy_dir({"p.yaml": text}))
    assert policies.decide("p", {"context": {"id": "123"}}).status == "pass"
    assert policies.decide("p", {"context": {"id": 123}}).status == "fail"


def test_regular_expression_escapes_are_kept(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    rules:
      - if: 'matches(context.id, "^\\d{3}$")'
        then: pass
        reason: ok
"""
    policies = engine.load(policy_dir({"p.yaml": text}))
    assert policies.decide("p", {"context": {"id": "123"}}).status == "pass"
    assert policies.decide("p", {"context": {"id": "12a"}}).status == "fail"


def test_large_rule_lists_compile_in_chunks_with_first_match_semantics(policy_dir: Callable[..., Path]) -> None:
    # `context.n - i == 0` has no test an index can look up: the rules are tried in order
    rules = "".join(
        f"      - if: context.n - {i} == 0\n        then: {'fail' if i % 2 else 'pass'}\n        reason: r{i}\n"
        for i in range(450)
    )
    text = "purposes:\n  p:\n    evidence: [is_pep]\n    rules:\n" + rules + "      - else: pass_with_conditions\n        reason: rest\n"
    policies = engine.load(policy_dir({"p.yaml": text}))
    program = policies.purposes["p"].program
    assert program.plan is None
    assert "def _chunk2(" in program.source and "def _chunk3(" not in program.source
    for n in (0, 199, 200, 399, 400, 449):
        decision = policies.decide("p", {"is_pep": False, "context": {"n": n}})
        assert (decision.reason, decision.rule) == (f"r{n}", n)
        assert policies.decide("p", {"is_pep": False, "context": {"n": n}}, explain=True).reason == f"r{n}"
    assert policies.decide("p", {"is_pep": False, "context": {"n": 450}}).reason == "rest"
    assert policies.decide("p", {"context": {"n": 3}}).reason == "missing_evidence"


def test_large_indexed_rule_lists_keep_first_match_semantics(policy_dir: Callable[..., Path]) -> None:
    rules = "".join(
        f"      - if: context.n == {i % 300}\n        then: {'fail' if i % 2 else 'pass'}\n        reason: r{i}\n"
        for i in range(450)
    )
    text = "purposes:\n  p:\n    evidence: [is_pep]\n    rules:\n" + rules + "      - else: pass_with_conditions\n        reason: rest\n"
    policies = engine.load(policy_dir({"p.yaml": text}))
    program = policies.purposes["p"].program
    assert program.plan is not None and program.plan.scan == [450]
    for n, reason, rule in [(0, "r0", 0), (299, "r299", 299), (150, "r150", 150), (300, "rest", 450),
                            (1.0, "r1", 1), (True, "rest", 450), ("1", "rest", 450)]:
        decision = policies.decide("p", {"is_pep": False, "context": {"n": n}})
        assert (decision.reason, decision.rule) == (reason, rule)
        explained = policies.decide("p", {"is_pep": False, "context": {"n": n}}, explain=True)
        assert explained.reason == reason
        rule_entries = [e for e in explained.explanation or [] if e["kind"] == "rule"]
        assert [e["index"] for e in rule_entries] == list(range(rule + 1))
    assert policies.decide("p", {"context": {"n": 3}}).reason == "missing_evidence"


def test_a_load_keeps_the_collector_running_for_other_threads(policy_dir: Callable[..., Path]) -> None:
    """Young collections go on during a load; only full ones wait, and the thresholds
    come back afterwards, also when loads overlap or fail."""
    rules = "".join(f"      - if: context.n == {i}\n        then: pass\n        reason: r{i}\n" for i in range(3000))
    directory = policy_dir({"p.yaml": "purposes:\n  p:\n    rules:\n" + rules})
    before = gc.get_threshold()
    seen: list[tuple[bool, int]] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append((gc.isenabled(), info["generation"]))

    gc.callbacks.append(watch)
    try:
        engine.load(directory)
    finally:
        gc.callbacks.remove(watch)
    assert gc.isenabled() and gc.get_threshold() == before
    assert seen and all(enabled for enabled, _ in seen)
    assert {generation for _, generation in seen} <= {0, 1}

    results: list[object] = []

    def load() -> None:
        results.append(engine.build(directory).policy_set)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(result is not None for result in results)
    assert gc.get_threshold() == before
    with pytest.raises(engine.PolicyError):
        engine.load(policy_dir({"p.yaml": "purposes: [\n"}))
    assert gc.get_threshold() == before


def test_release_empties_the_large_lists_of_a_tree_and_leaves_the_rest() -> None:
    from engine.loader import release
    from engine.yaml_source import read_yaml

    rules = [{"if": f"x == {i}", "then": "pass"} for i in range(2000)]
    value = {"purposes": {"p": {"rules": rules, "consent": ["a", "b"]}}}
    text = "purposes:\n  p:\n    rules:\n" + "".join(f"      - {{if: x == {i}}}\n" for i in range(1200))
    doc = read_yaml("p.yaml", text)
    assert doc.node is not None
    sequence = doc.locate(("purposes", "p", "rules"))
    assert len(sequence.value) == 1200  # type: ignore[union-attr]
    release(doc.node, value)
    assert rules == [] and sequence.value == []  # type: ignore[union-attr]
    assert value["purposes"]["p"]["consent"] == ["a", "b"]  # small lists stay as they are
    release(None, "text", 5)  # anything else is left alone


def test_structure_errors_of_a_long_rule_list_point_at_their_rules(policy_dir: Callable[..., Path]) -> None:
    # long rule lists are validated a slice at a time: the errors must be those of one call
    rules = [f"      - if: context.n == {i}\n        then: pass\n        reason: r{i}\n" for i in range(2500)]
    rules[0] = "      - if: context.n == 0\n        thn: pass\n        reason: r0\n"
    rules[1700] = "      - if: context.n == 1700\n        then: [pass]\n        reason: r1700\n"
    text = "purposes:\n  p:\n    descripton: x\n    rules:\n" + "".join(rules)
    found = [(d.code, d.line, d.message) for d in diagnostics(policy_dir, {"p.yaml": text})]
    assert found == [
        ("E002", 3, "unknown key `descripton` in purposes.p"),
        ("E002", 6, "unknown key `thn` in purposes.p.rules.0"),
        ("E002", 5 + 3 * 1700 + 1, "purposes.p.rules.1700.then: Input should be a valid string"),
    ]


def test_policies_are_checked_against_the_catalogue_they_are_given(policy_dir: Callable[..., Path]) -> None:
    text = """purposes:
  p:
    evidence: [risk_score, sanctions_listed]
    rules:
      - if: sanctions_listed OR is_over_18
        then: fail
        reason: r
      - else: pass
        reason: ok
"""
    directory = policy_dir({"p.yaml": text})
    # the gateway's catalogue: facts typed, one used undeclared (W303), one foreign (W306,
    # and W302: declared and never read)
    with_gateway = engine.build(directory, catalogue=CATALOGUE)
    assert sorted(d.code for d in with_gateway.diagnostics) == ["W302", "W303", "W306"]
    assert with_gateway.policy_set is not None
    assert with_gateway.policy_set.purposes["p"].evidence[1].type == CATALOGUE["sanctions_listed"].type
    assert with_gateway.policy_set.decide("p", {"risk_score": 1, "sanctions_listed": "yes"}).reason == (
        "invalid_evidence"
    )
    # the engine alone knows no provided fact: `is_over_18` is an unknown name
    alone = engine.build(directory)
    assert [d.code for d in alone.errors] == ["E102"]
