"""Diagnostics: every code the dsl emits at its exact line and column, in expressions and in YAML."""

from __future__ import annotations

import pytest
import yaml

import dsl
from dsl import Diagnostic, FactBinding, PolicyError, Position, Scope, SourceText, scalar_positions
from dsl.types import BOOL, NUMBER
from tests.dsl.helpers import CATALOGUE, diagnostics

#: A purpose that declares `is_pep`, has a context schema and one data document, checked
#: against a gateway's fact catalogue.
SCOPE = Scope(
    facts={"is_pep": FactBinding(BOOL, guaranteed=True)},
    context={"amount": NUMBER},
    data={"countries": ["GB", "FR"]},
    catalogue=CATALOGUE,
)


def only(text: str, scope: Scope = SCOPE) -> Diagnostic:
    found = diagnostics(text, scope)
    assert len(found) == 1, [d.render() for d in found]
    return found[0]


@pytest.mark.parametrize(
    ("text", "code", "line", "col", "end_col", "message", "hint"),
    [
        # E101 syntax, with the friendly hints
        ("is_pep AND context.amount = 1", "E101", 1, 27, 28, "unexpected character '='", "use '==' to compare"),
        ("is_pep && is_pep", "E101", 1, 8, 9, "unexpected character '&'", "use AND"),
        ("is_pep || is_pep", "E101", 1, 8, 9, "unexpected character '|'", "use OR"),
        ("!is_pep", "E101", 1, 1, 2, "unexpected character '!'", "use NOT, or '!=' to compare"),
        ("is_pep AND\n  context.amount = 2", "E101", 2, 18, 19, "unexpected character '='", "use '==' to compare"),
        ('context.amount == "GB', "E101", 1, 19, 20, "unexpected character '\"'",
         "a string is not closed on this line"),
        ("(is_pep", "E101", 1, 8, 9, "unexpected end of expression, expected ')'", None),
        ("is_pep AND  ", "E101", 1, 11, 12, "unexpected end of expression, expected an operand", None),
        ("is_pep is_pep", "E101", 1, 8, 14, "unexpected 'is_pep', expected an operator", None),
        ("context.amount < 1 < 2", "E101", 1, 20, 21, "unexpected '<', expected an operator",
         "comparisons do not chain: write `a < b AND b < c`"),
        ("  ", "E101", 1, 1, None, "empty expression", None),
        # E102 unknown names, with suggestions
        ("is_pepp", "E102", 1, 1, 8, "unknown name `is_pepp`", "did you mean `is_pep`?"),
        ("is_pep AND\n  context.amout > 1", "E102", 2, 3, 16,
         "`context.amout` is not in the purpose's context schema", "did you mean `amount`?"),
        ("'GB' in data.countrys", "E102", 1, 9, 22, "unknown data document `data.countrys`",
         "did you mean `countries`?"),
        ('subject.name == "x"', "E102", 1, 1, 13, "unknown subject field `subject.name`",
         "subject has sub, scope and client_id"),
        # E103 unknown function: located at the name only
        ("1 + lenn(context.amount) > 0", "E103", 1, 5, 9, "unknown function `lenn`", "did you mean `len`?"),
        # E104 arity: the whole call
        ("is_pep AND\n  startswith(subject.sub)", "E104", 2, 3, 26, "startswith() takes 2 arguments, got 1",
         'for example startswith(context.national_id, "GB")'),
        ("now(1) > 0", "E104", 1, 1, 7, "now() takes 0 arguments, got 1", "for example now() > 0"),
        # E105 type mismatches
        ('is_pep AND 1 == "1"', "E105", 1, 12, 20,
         "comparing number with string: values of different types are never equal (== is false)", None),
        ('context.amount > "10"', "E105", 1, 1, 22, "cannot order number against string", None),
        ("NOT context.amount", "E105", 1, 5, 19, "NOT expects a bool, got number", None),
        ("lower(context.amount) == 'a'", "E105", 1, 7, 21, "lower() expects a string, got number", None),
        ("any(x in context.amount, true)", "E105", 1, 10, 24, "any() iterates over a list, got number", None),
        # E106 limits
        ("(" * 33 + "is_pep" + ")" * 33, "E106", 1, 33, 34, "brackets nest 33 deep; the limit is 32", None),
        # E107 invalid regular expression: the pattern literal
        ('matches(subject.sub, "[a-")', "E107", 1, 22, 27, "invalid regular expression: missing ]: [a-", None),
        # E108 invalid arguments
        ("context.amount / 0 > 1", "E108", 1, 18, 19, "division by zero", None),
        ("context.amount % 0.0 > 1", "E108", 1, 18, 21, "division by zero", None),
        ("exists(1)", "E108", 1, 8, 9, "exists() takes a path such as `context.amount`", None),
        ("any(data in data.countries, true)", "E108", 1, 1, 34,
         "`data` is reserved and cannot name a quantifier variable", None),
        ("all(data.countries, true)", "E108", 1, 1, 26, "all() takes `variable in list, condition`",
         "for example all(x in context.items, x.amount > 100)"),
        # W303 a catalogue fact the purpose does not declare
        ("is_pep OR has_credential", "W303", 1, 11, 25, "fact `has_credential` is used but not declared in `evidence`",
         "add `- has_credential` to the purpose's evidence so the gateway gathers it"),
    ],
)
def test_every_code_at_its_exact_position(
    text: str, code: str, line: int, col: int, end_col: int | None, message: str, hint: str | None
) -> None:
    diagnostic = only(text)
    assert (diagnostic.code, diagnostic.line, diagnostic.col, diagnostic.end_col) == (code, line, col, end_col)
    assert diagnostic.message == message
    assert diagnostic.hint == hint
    assert diagnostic.severity == ("warning" if code.startswith("W") else "error")
    assert code in dsl.CODES
    assert diagnostic.source_line == text.split("\n")[line - 1]


def test_long_expression_is_e106_at_the_start() -> None:
    diagnostic = only("is_pep OR " * 410 + "is_pep")
    assert (diagnostic.code, diagnostic.line, diagnostic.col) == ("E106", 1, 1)


def test_list_too_long_is_e106_spanning_the_list() -> None:
    diagnostic = only("is_pep AND\ncontext.amount in [" + "1," * 1001 + "]")
    assert (diagnostic.code, diagnostic.line, diagnostic.col) == ("E106", 2, 19)
    assert diagnostic.message == "list has 1001 items; the limit is 1000"


def test_division_by_false_is_a_type_error_only() -> None:
    # regression: `right.value == 0` held for False and reported a division by zero too
    assert [d.code for d in diagnostics("context.amount / false > 1", SCOPE)] == ["E105"]


def test_checker_reports_every_problem_not_just_the_first() -> None:
    found = diagnostics('foo(1) AND nope AND 1 == "a" AND matches(subject.sub, "(")', SCOPE)
    assert [(d.code, d.col) for d in found] == [("E103", 1), ("E102", 12), ("E105", 21), ("E107", 55)]


def test_render_shows_the_line_and_a_caret_under_the_offending_text() -> None:
    diagnostic = only("is_pep AND\n  startswith(subject.sub)")
    assert diagnostic.render() == (
        "<input>:2:3: error: E104 startswith() takes 2 arguments, got 1\n"
        "      startswith(subject.sub)\n"
        "      ^^^^^^^^^^^^^^^^^^^^^^^\n"
        '    hint: for example startswith(context.national_id, "GB")'
    )


def test_render_in_colour_marks_the_severity() -> None:
    warning = only("has_credential")
    assert warning.render(color=True).startswith("<input>:1:1: \x1b[1;33mwarning\x1b[0m: W303 ")
    error = only("nope")
    assert error.render(color=True).startswith("<input>:1:1: \x1b[1;31merror\x1b[0m: E102 ")


def test_render_without_source_line_is_one_line() -> None:
    assert Diagnostic("E002", "bad", "p.yaml", 3, 4).render() == "p.yaml:3:4: error: E002 bad"


def test_to_dict() -> None:
    assert only("nope").to_dict() == {
        "file": "<input>", "line": 1, "col": 1, "severity": "error", "code": "E102",
        "message": "unknown name `nope`", "hint": None,
    }


def test_policy_error_sorts_every_diagnostic_and_summarises() -> None:
    later = Diagnostic("E102", "second", "b.yaml", 1, 1)
    first = Diagnostic("E105", "first", "a.yaml", 9, 2)
    same_place = Diagnostic("E101", "zeroth", "a.yaml", 9, 2)
    warning = Diagnostic("W303", "warn", "a.yaml", 10, 1, severity="warning")
    error = PolicyError([later, warning, first, same_place])
    assert error.diagnostics == [same_place, first, warning, later]
    assert error.errors == [same_place, first, later]
    assert str(error) == "a.yaml:9:2: E101 zeroth (and 3 more)"
    assert error.render().split("\n") == [d.render() for d in (same_place, first, warning, later)]
    assert str(PolicyError([later])) == "b.yaml:1:1: E102 second"


# ---------------------------------------------------------------- positions inside YAML files

POLICY = """\
purposes:
  demo:
    rules:
      - if: is_pep AND context.amount = 1
        then: fail
      - if: 'is_pep AND context[''odd'']  = 2'
        then: fail
      - if: "is_pep AND \\"q\\" = context.x"
        then: fail
      - if: |
          is_pep AND
            context.amount = 4
        then: fail
      - if: |-  # nope: not declared
          nope AND is_pep
        then: fail
      - if: "is_pep\\tAND nope"
        then: fail
      - if: >
          is_pep AND
          lenn(context.amount) > 1
        then: fail
      - if: is_pep AND
        then: fail
"""
LINES = POLICY.split("\n")


def yaml_conditions() -> list[tuple[str, SourceText, SourceText]]:
    """Each rule's `if:` scalar, as an eagerly and as a lazily mapped SourceText."""
    root = yaml.compose(POLICY)
    rules = root.value[0][1].value[0][1].value[0][1].value
    out = []
    for rule in rules:
        node = next(value for key, value in rule.value if key.value == "if")
        raw = POLICY[node.start_mark.index : node.end_mark.index]
        start = Position(node.start_mark.line + 1, node.start_mark.column + 1)
        eager = SourceText(node.value, "policy.yaml", scalar_positions(raw, node.value, start), LINES)
        lazy = SourceText(node.value, "policy.yaml", file_lines=LINES, raw=raw, start=start)
        out.append((node.style or "plain", eager, lazy))
    return out


CONDITIONS = yaml_conditions()


def file_char(diagnostic: Diagnostic) -> str:
    return LINES[diagnostic.line - 1][diagnostic.col - 1]


@pytest.mark.parametrize(
    ("rule", "style", "code", "line", "col", "end_col", "char"),
    [
        (0, "plain", "E101", 4, 39, 40, "="),
        (1, "'", "E101", 6, 43, 44, "="),
        (2, '"', "E101", 8, 31, 32, "="),
        (3, "|", "E101", 12, 28, 29, "="),  # the block's 2nd line, with its extra indentation
        (4, "|", "E102", 15, 11, 15, "n"),  # not the `nope` in the header comment
        (5, '"', "E102", 17, 26, 30, "n"),  # after a `\t` escape
        (6, ">", "E103", 21, 11, 15, "l"),  # folded: the 2nd line joined with a space
        (7, "plain", "E101", 23, 23, 24, None),  # end of input: just after the scalar
    ],
)
def test_expression_diagnostics_point_into_the_yaml_file(
    rule: int, style: str, code: str, line: int, col: int, end_col: int, char: str | None
) -> None:
    node_style, eager, lazy = CONDITIONS[rule]
    assert node_style == style
    for source in (eager, lazy):
        found = diagnostics_of(source)
        assert [(d.code, d.line, d.col, d.end_col) for d in found] == [(code, line, col, end_col)]
        diagnostic = found[0]
        assert diagnostic.file == "policy.yaml"
        assert diagnostic.source_line == LINES[line - 1]
        if char is None:
            assert col == len(LINES[line - 1]) + 1
        else:
            assert file_char(diagnostic) == char


def diagnostics_of(source: SourceText) -> list[Diagnostic]:
    try:
        node = dsl.parse(source)
    except dsl.ParseFailure as failure:
        return [failure.diagnostic]
    return dsl.check(node, source, SCOPE).diagnostics


def test_caret_render_in_the_yaml_file() -> None:
    (diagnostic,) = diagnostics_of(CONDITIONS[3][1])
    assert diagnostic.render() == (
        "policy.yaml:12:28: error: E101 unexpected character '='\n"
        "                context.amount = 4\n"
        "                               ^\n"
        "    hint: use '==' to compare"
    )


def test_scalar_positions_map_every_character_of_a_quoted_scalar() -> None:
    # the raw scalar '''q'' x' holds the value 'q' x: a doubled quote maps to its first
    # half, and the value's leading quote is not the scalar's opening quote
    positions = scalar_positions("'''q'' x'", "'q' x", Position(3, 10))
    assert positions == [Position(3, 11), Position(3, 13), Position(3, 14), Position(3, 16), Position(3, 17)]


def test_source_text_without_positions_counts_lines_in_the_expression() -> None:
    source = SourceText("a\nbc\ndef")
    assert [source.position(i) for i in (0, 2, 3, 5, 8)] == [
        Position(1, 1), Position(2, 1), Position(2, 2), Position(3, 1), Position(3, 4),
    ]
    assert source.line_text(2) == "bc"
    assert source.line_text(4) is None
