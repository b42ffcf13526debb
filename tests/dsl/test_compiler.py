"""Compile stage: semantics of every operator and function, undefined, programs, explain mode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import dsl
from dsl import UNDEFINED, FactBinding, Required, Scope, SourceText
from dsl.types import BOOL, LIST_OF_STRINGS, NUMBER, STRING
from tests.dsl.helpers import NOW, Recorder, checked, fixed_clock, same_value, value_of

pytestmark = pytest.mark.filterwarnings("error::SyntaxWarning")  # generated code compiles cleanly

U = UNDEFINED


def ctx(**fields: object) -> dict[str, Any]:
    return {"context": dict(fields)}


def assert_value(text: str, expected: object, facts: dict[str, Any] | None = None) -> None:
    got = value_of(text, facts)
    assert same_value(got, expected), f"{text} gave {got!r}, expected {expected!r}"


# ---------------------------------------------------------------- equality and ordering


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True), (1, 1.0, True), (0, -0.0, True), (1, 2, False),
        (1, "1", False), (True, 1, False), (False, 0, False), (True, 1.0, False), (None, 0, False),
        (None, None, True), ("", None, False), ("a", "a", True), ("a", "A", False), (True, True, True),
        ([1, 2], [1, 2.0], True), ([1], [True], False), ([1], [1, 1], False), ([], [], True),
        ({"a": 1}, {"a": 1.0}, True), ({"a": 1}, {"a": True}, False), ({"a": 1}, {"b": 1}, False),
        ({}, [], False), ([[1]], [[1.0]], True),
    ],
)
def test_equality_is_strict_about_types(a: object, b: object, equal: bool) -> None:
    facts = ctx(a=a, b=b)
    assert value_of("context.a == context.b", facts) is equal
    assert value_of("context.b == context.a", facts) is equal
    assert value_of("context.a != context.b", facts) is (not equal)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1.0", True), ("2 != 2.0", False), ('"a" == "a"', True), ("true == true", True),
        ("true != false", True), ("null == null", True), ("[1, 'a'] == [1.0, 'a']", True),
        ("1 < 2", True), ("2 <= 2.0", True), ("3 > 2.5", True), ("2 >= 3", False),
        ('"a" < "b"', True), ('"B" < "a"', True), ('"ab" >= "abc"', False), ('"b" > "abc"', True),
    ],
)
def test_comparisons_of_literals(text: str, expected: bool) -> None:
    assert value_of(text) is expected


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
@pytest.mark.parametrize(
    ("a", "b"),
    [("a", 1), (1, "1"), (True, 0), (True, False), (None, 1), ([1], [2]), ({"a": 1}, {"a": 2}), (None, None)],
)
def test_ordering_other_than_number_number_or_string_string_is_false(op: str, a: object, b: object) -> None:
    assert value_of(f"context.a {op} context.b", ctx(a=a, b=b)) is False
    assert value_of(f"NOT (context.a {op} context.b)", ctx(a=a, b=b)) is True


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [("<", 1, 2.5, True), ("<=", 2.5, 2.5, True), (">", "b", "a", True), (">=", "a", "b", False),
     ("<", -1, 0, True), (">", 10**400, 1e308, True)],
)
def test_ordering_of_numbers_and_strings(op: str, a: object, b: object, expected: bool) -> None:
    assert value_of(f"context.a {op} context.b", ctx(a=a, b=b)) is expected


# ---------------------------------------------------------------- membership


@pytest.mark.parametrize(
    ("item", "container", "inside"),
    [
        (1, [1, 2], True), (1.0, [1, 2], True), (True, [1, 2], False), ("1", [1], False), (None, [None], True),
        ([1], [[1], 2], True), ("a", [], False),
        ("ell", "hello", True), ("", "x", True), ("L", "hello", False),
        ("k", {"k": 0}, True), ("v", {"k": "v"}, False),
    ],
)
def test_in_and_not_in(item: object, container: object, inside: bool) -> None:
    facts = ctx(a=item, b=container)
    assert value_of("context.a in context.b", facts) is inside
    assert value_of("context.a not in context.b", facts) is (not inside)
    assert value_of("contains(context.b, context.a)", facts) is inside


@pytest.mark.parametrize(
    ("item", "container"),
    [(1, "123"), (1, {"1": 1}), ("a", 5), ("a", None), ("a", True), ([1], "[1]"), (None, "None")],
)
def test_ill_typed_membership_is_false_both_ways(item: object, container: object) -> None:
    facts = ctx(a=item, b=container)
    assert value_of("context.a in context.b", facts) is False
    assert value_of("context.a not in context.b", facts) is False
    assert value_of("contains(context.b, context.a)", facts) is False


@pytest.mark.parametrize("facts", [ctx(b=[1]), ctx(a=1), {}])
def test_membership_with_an_undefined_side_is_false_both_ways(facts: dict[str, Any]) -> None:
    assert value_of("context.a in context.b", facts) is False
    assert value_of("context.a not in context.b", facts) is False


@pytest.mark.parametrize(
    ("value", "inside"), [("GB", True), ("gb", False), (1, False), (None, False), (["GB"], False)]
)
def test_membership_in_a_constant_list_of_strings(value: object, inside: bool) -> None:
    facts = ctx(a=value)
    assert value_of('context.a in ["GB", "FR"]', facts) is inside
    assert value_of('context.a not in ["GB", "FR"]', facts) is (not inside)
    assert value_of('context.a in data.countries', facts, data={"countries": ["GB", "FR"]}) is inside
    assert value_of('context.a not in data.countries', facts, data={"countries": ["GB", "FR"]}) is (not inside)


def test_not_in_a_constant_list_is_false_when_undefined() -> None:
    assert value_of('context.a not in ["GB"]', {}) is False
    assert value_of("context.a not in data.countries", {}, data={"countries": ["GB"]}) is False


# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2", 3), ("1 + 2.5", 3.5), ("5 - 7", -2), ("3 * 4", 12), ("7 / 2", 3.5), ("4 / 2", 2.0),
        ("7 % 3", 1), ("-7 % 3", 2), ("7.5 % 2", 1.5),
        ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 - 2 - 3", 5), ("2 * 3 % 4", 2), ("-2 * 3", -6),
        ("-(1 + 2)", -3), ("--3", 3), ("- -3", 3), ("1 - -1", 2),
        ('"ab" + "cd"', "abcd"), ("[1] + [2, 'x']", [1, 2, "x"]), ('"" + ""', ""),
    ],
)
def test_arithmetic(text: str, expected: object) -> None:
    assert_value(text, expected)


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("context.a / context.b", ctx(a=1, b=0)), ("context.a % context.b", ctx(a=1, b=0)),
        ("context.a / context.b", ctx(a=1, b=0.0)), ("context.a % context.b", ctx(a=1.5, b=-0.0)),
        ("context.a + 1", ctx(a="1")), ("context.a + 1", ctx(a=True)), ("context.a + 1", ctx(a=None)),
        ("context.a + 1", ctx(a=[1])), ("context.a + context.b", ctx(a="a", b=["a"])),
        ("context.a * 2", ctx(a="ab")), ("context.a - context.b", ctx(a=[1, 2], b=[1])),
        ("-context.a", ctx(a="1")), ("-context.a", ctx(a=True)), ("-context.a", ctx(a=None)),
        ("context.a + 1", {}), ("-context.a", {}), ("1 + context.a * 2", {}),
        # overflow and non-finite results
        ("context.a * 10", ctx(a=1e308)), ("context.a - context.a", ctx(a=1e308 * 10)),
        ("context.a * 1.5", ctx(a=10**400)), ("context.a / 3", ctx(a=10**400)),
        ("context.a + 0.5", ctx(a=10**400)), ("context.a * context.a", ctx(a=10**2000)),
    ],
)
def test_arithmetic_that_cannot_be_computed_is_undefined(text: str, facts: dict[str, Any]) -> None:
    assert value_of(text, facts) is U
    assert value_of(f"({text}) == ({text})", facts) is False


def test_huge_integers_stay_exact() -> None:
    assert value_of("context.a * context.a == context.b", ctx(a=10**400, b=10**800)) is True
    assert value_of("context.a + 1 > context.a", ctx(a=10**400)) is True


# ---------------------------------------------------------------- boolean operators


@pytest.mark.parametrize(
    ("value", "negated"),
    [(True, False), (False, True), (1, True), ("true", True), (None, True), ([True], True), ({}, True)],
)
def test_not_is_true_unless_exactly_true(value: object, negated: bool) -> None:
    assert value_of("NOT context.a", ctx(a=value)) is negated
    assert value_of("NOT NOT context.a", ctx(a=value)) is (not negated)


def test_not_of_undefined_is_true_negation_as_failure() -> None:
    assert value_of("NOT context.missing", {}) is True
    assert value_of("NOT (context.missing == 1)", {}) is True
    assert value_of("NOT (context.missing != 1)", {}) is True


@pytest.mark.parametrize(
    ("a", "b", "conj", "disj"),
    [(True, True, True, True), (True, False, False, True), (False, False, False, False),
     (True, 1, False, True), (1, 1, False, False), ("yes", True, False, True), (None, None, False, False)],
)
def test_and_or_count_only_true_as_true(a: object, b: object, conj: bool, disj: bool) -> None:
    facts = ctx(a=a, b=b)
    assert value_of("context.a AND context.b", facts) is conj
    assert value_of("context.a OR context.b", facts) is disj
    assert value_of("context.a AND context.b AND true", facts) is conj
    assert value_of("false OR context.a OR context.b", facts) is disj


def test_and_or_with_undefined() -> None:
    assert value_of("context.missing OR true", {}) is True
    assert value_of("context.missing AND true", {}) is False
    assert value_of("NOT context.missing AND true", {}) is True


def test_boolean_operators_short_circuit() -> None:
    recorder = Recorder()
    program = dsl.compile_program(
        [checked("false AND context.a == 1"), checked("true OR context.b == 1")], [1, 2], 0, recorder=recorder
    )
    assert program.run(ctx(a=1, b=1)) == 2
    assert recorder.reads == []


# ---------------------------------------------------------------- undefined


@pytest.mark.parametrize(
    "text",
    [
        "context.m == 1", "context.m != 1", "context.m < 1", "context.m >= 'a'", "context.m == context.m",
        "context.m != context.n", "context.m in [1]", "context.m not in [1]", "1 in context.m", "1 not in context.m",
        "startswith(context.m, 'a')", "endswith(context.m, 'a')", "contains(context.m, 1)", "contains([1], context.m)",
        "matches(context.m, 'a')", "matches('a', context.m)", "any(x in context.m, true)", "all(x in context.m, true)",
        "exists(context.m)", "exists(context.m.n)", "exists(context.m[0])",
        "[context.m] == [context.m]", "[1, context.m] != [1]",
    ],
)
def test_a_missing_path_makes_comparisons_and_predicates_false(text: str) -> None:
    assert value_of(text, ctx()) is False


@pytest.mark.parametrize(
    "text",
    [
        "context.m", "context.m.n", "context.m[0]", "len(context.m)", "lower(context.m)", "upper(context.m)",
        "days_since(context.m)", "years_since(context.m)", "context.m + 1", "-context.m", "[1, context.m]",
        "[context.m] + [1]", "context.a[context.m]", "context.m + context.m",
    ],
)
def test_value_functions_of_undefined_are_undefined(text: str) -> None:
    assert value_of(text, ctx(a=[1])) is U


@pytest.mark.parametrize(
    "facts", [{}, {"context": None}, {"context": 5}, {"context": "str"}, {"context": [1, 2]}, ctx()]
)
def test_paths_into_missing_or_non_map_roots_are_undefined(facts: dict[str, Any]) -> None:
    assert value_of("context.amount", facts) is U
    assert value_of("exists(context.amount)", facts) is False


def test_exists_is_true_for_a_present_null() -> None:
    assert value_of("exists(context.a)", ctx(a=None)) is True
    assert value_of("context.a == null", ctx(a=None)) is True
    assert value_of("context.a == null", ctx()) is False


def test_undefined_facts_are_undefined_in_compile_expression() -> None:
    scope = Scope(facts={"is_pep": FactBinding(BOOL, guaranteed=True)}, context=None)
    assert value_of("is_pep", {}, scope=scope) is U
    assert value_of("NOT is_pep", {}, scope=scope) is True


# ---------------------------------------------------------------- paths


NESTED = {
    "context": {
        "items": [{"amount": 150}, {"amount": 50}],
        "odd key": "yes",
        "a.b": 1,
        "m": {"n": {"o": [10, 20]}},
        "i": 1,
    }
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("context.items[0].amount", 150), ("context.items[1]['amount']", 50), ('context["odd key"]', "yes"),
        ("context['a.b']", 1), ("context.a.b", U), ("context.m.n.o[1]", 20), ("context.m['n'].o[0]", 10),
        ("context.items[context.i].amount", 50), ("context.items[2]", U), ("context.items[-1]", U),
        ("context.items[1.0]", U), ("context.items[true]", U), ("context.items['0']", U), ("context.m[0]", U),
        ("context.items.amount", U), ("context.i.x", U), ("context.i[0]", U), ("context.items[0].amount.x", U),
        ("context.__class__", U), ("context['__class__']", U), ("context.items[0 + 1].amount", 50),
        ("context[lower('ODD KEY')]", "yes"), ("[10, 20, 30][1]", 20), ("[10, 20, 30][3]", U),
    ],
)
def test_paths(text: str, expected: object) -> None:
    assert_value(text, expected, NESTED)


def test_data_documents_are_constants() -> None:
    data: dict[str, object] = {"limits": {"max": 100, "tiers": [1, 2]}, "countries": ["GB"]}
    assert value_of("data.limits.max", {}, data=data) == 100
    assert value_of("data.limits.tiers[1] + 1", {}, data=data) == 3
    assert value_of("data.limits['max'] > 99", {}, data=data) is True
    assert value_of("data.limits.tiers[context.i]", ctx(i=0), data=data) == 1
    # data comes from the compiler's `data`, never from the facts
    assert value_of("data.countries", {"data": {"countries": ["XX"]}}, data=data) == ["GB"]
    assert value_of("len(data)", {}, data=data) == 2


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        ("len(context.a)", ctx(a="héllo"), 5), ("len(context.a)", ctx(a=[1, 2]), 2), ("len(context.a)", ctx(a={}), 0),
        ("len(context.a)", ctx(a=12), U), ("len(context.a)", ctx(a=None), U), ("len(context.a)", ctx(a=True), U),
        ("lower(context.a)", ctx(a="AbC"), "abc"), ("lower(context.a)", ctx(a=1), U),
        ("upper(context.a)", ctx(a="AbC"), "ABC"), ("upper(context.a)", ctx(a=["a"]), U),
        ("startswith(context.a, 'GB')", ctx(a="GB123"), True), ("startswith(context.a, 'GB')", ctx(a="XGB"), False),
        ("startswith(context.a, context.b)", ctx(a="GB", b=1), False), ("startswith(context.a, '')", ctx(a=""), True),
        ("endswith(context.a, '-internal')", ctx(a="app-internal"), True),
        ("endswith(context.a, '-internal')", ctx(a="internal-app"), False),
        ("endswith(context.a, 'x')", ctx(a=["x"]), False),
        ("matches(context.a, '^[A-Z]{2}[0-9]+$')", ctx(a="GB123"), True),
        ("matches(context.a, '^[A-Z]{2}[0-9]+$')", ctx(a="GB12X"), False),
        ("matches(context.a, '[0-9]')", ctx(a="ab3cd"), True),  # searched anywhere
        ("matches(context.a, context.b)", ctx(a="a", b="("), False),  # invalid at run time: no match
        ("matches(context.a, '(a+)+$')", ctx(a="a" * 5000 + "!"), False),  # linear time
        ("matches(context.a, 'x')", ctx(a=1), False),
        ("contains(context.a, 'AgeOver18')", ctx(a=["AgeOver18"]), True),
        ("contains(context.a, 'Over')", ctx(a="AgeOver18"), True),
        ("contains(context.a, 'k')", ctx(a={"k": 1}), True),
        ("contains(context.a, 1)", ctx(a=[True]), False),
    ],
)
def test_functions(text: str, facts: dict[str, Any], expected: object) -> None:
    assert_value(text, expected, facts)


def test_regex_escapes_reach_re2() -> None:
    assert value_of(r"matches(context.a, '^\\d+$')", ctx(a="123")) is True
    assert value_of(r"matches(context.a, '^\\d+$')", ctx(a="12a")) is False


def test_now_reads_the_injected_clock() -> None:
    assert value_of("now()") == NOW.timestamp()
    assert value_of("now() > 1700000000") is True


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("2024-03-14T12:00:00Z", 1), ("2024-03-14T12:00:01Z", 0), ("2024-03-15", 0), ("2024-02-15", 29),
        ("2024-03-15T12:00:00+02:00", 0), ("2024-03-15T14:00:00+02:00", 0), ("2024-03-10T12:00:00", 5),
        (NOW.timestamp() - 86400 * 3, 3), (int(NOW.timestamp()) - 86400 * 3 - 1, 3), ("2024-03-16", -1),
        ("not a date", U), ("", U), (True, U), (None, U), ([2024], U), (10**400, U), (1e308, U),
        ("2024-03-15T00:00:00Z" + " " * 30, U),
    ],
)
def test_days_since(value: object, days: object) -> None:
    assert_value("days_since(context.t)", days, ctx(t=value))


@pytest.mark.parametrize(
    ("born", "age"),
    [
        ("2006-03-15", 18), ("2006-03-16", 17), ("2006-03-14", 18), ("2000-02-29", 24), ("2024-03-15", 0),
        ("2006-03-15T23:00:00Z", 18), ("1990-12-31", 33), ("garbage", U), (5, 54),
    ],
)
def test_years_since(born: object, age: object) -> None:
    assert_value("years_since(context.born)", age, ctx(born=born))


def test_clock_is_also_injected_into_programs() -> None:
    clock_calls: list[int] = []

    def clock() -> datetime:
        clock_calls.append(1)
        return datetime(2030, 1, 1, tzinfo=UTC)

    program = dsl.compile_program([checked("years_since(context.born) >= 18")], ["adult"], "minor", clock=clock)
    assert program.run(ctx(born="2012-01-01")) == "adult"
    assert program.run(ctx(born="2012-01-02")) == "minor"
    assert len(clock_calls) == 2


# ---------------------------------------------------------------- quantifiers


ITEMS = ctx(items=[{"amount": 150}, {"amount": 50}, {"other": 1}])


@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        ("any(x in context.items, x.amount > 100)", ITEMS, True),
        ("any(x in context.items, x.amount > 200)", ITEMS, False),
        ("all(x in context.items, x.amount > 10)", ITEMS, False),  # the third has no amount
        ("all(x in context.items, exists(x.amount) OR exists(x.other))", ITEMS, True),
        ("any(x in context.items, NOT exists(x.amount))", ITEMS, True),
        ("any(x in context.e, true)", ctx(e=[]), False),
        ("all(x in context.e, false)", ctx(e=[]), True),
        ("any(x in context.e, true)", ctx(e="abc"), False),
        ("all(x in context.e, true)", ctx(e="abc"), False),
        ("all(x in context.e, true)", ctx(e={"a": 1}), False),
        ("any(x in context.e, true)", ctx(), False),
        ("all(x in context.e, true)", ctx(), False),
        ("NOT all(x in context.e, true)", ctx(), True),
        ("any(x in [1, 2, 3], x == 2)", {}, True),
        ("all(x in [1, 2, 3], x > 0)", {}, True),
        ("any(x in context.l, x)", ctx(l=[1, "true", None]), False),
        ("all(x in context.l, x)", ctx(l=[True, True]), True),
        ("any(x in context.m, any(y in x, y == 2))", ctx(m=[[1], [3, 2]]), True),
        ("all(x in context.m, any(y in x, y == 2))", ctx(m=[[1], [3, 2]]), False),
        ("any(x in context.m, any(x in x, x == 2))", ctx(m=[[1], [3, 2]]), True),  # shadowing
        ("any(x in context.m, all(y in x, y > x[0] - 1))", ctx(m=[[5, 6]]), True),
        ("ANY(x in context.l, x == 1) AND All(x in context.l, x >= 1)", ctx(l=[1, 2]), True),
    ],
)
def test_quantifiers(text: str, facts: dict[str, Any], expected: bool) -> None:
    assert value_of(text, facts) is expected


def test_quantifier_variable_shadows_a_fact_inside_only() -> None:
    scope = Scope(facts={"level": FactBinding(NUMBER, guaranteed=True)}, context=None)
    result = checked("any(level in context.l, level == 1) AND level == 5", scope)
    program = dsl.compile_program([result], ["yes"], "no", dsl.EvidenceCheck([Required("level", NUMBER)]))
    assert program.run({"level": 5, **ctx(l=[1])}) == "yes"
    assert program.run({"level": 5, **ctx(l=[5])}) == "no"
    assert program.run({"level": 1, **ctx(l=[1])}) == "no"


# ---------------------------------------------------------------- programs

DECLARED = Scope(
    facts={
        "sanctions_listed": FactBinding(BOOL, guaranteed=True),
        "is_over_18": FactBinding(BOOL, guaranteed=True),
        "credentials": FactBinding(LIST_OF_STRINGS, guaranteed=True),
        "score": FactBinding(NUMBER, guaranteed=True),
        "country": FactBinding(STRING, guaranteed=True),
    },
    context=None,
)
REQUIRED = [
    Required("sanctions_listed", BOOL), Required("is_over_18", BOOL), Required("credentials", LIST_OF_STRINGS),
    Required("score", NUMBER), Required("country", STRING),
]
GOOD = {"sanctions_listed": False, "is_over_18": True, "credentials": ["AgeOver18"], "score": 10, "country": "GB"}


def age_program(recorder: Recorder | None = None) -> dsl.Program:
    conditions = [
        checked("sanctions_listed", DECLARED),
        checked("NOT is_over_18", DECLARED),
        checked("score > 50 AND country == 'GB'", DECLARED),
        checked('"AgeOver18" in credentials', DECLARED),
        None,
    ]
    return dsl.compile_program(
        conditions, ["sanctioned", "underage", "risky", "pass", "conditions"], "no_rule",
        dsl.EvidenceCheck(REQUIRED, invalid="invalid"), recorder=recorder,
    )


def test_declared_bool_facts_compile_to_the_inline_fast_form() -> None:
    source = age_program().source
    assert "    if f_sanctions_listed:\n        return _o0\n" in source
    assert "    if (not f_is_over_18):\n" in source
    assert "((f_score > 50) and (f_country == 'GB'))" in source
    assert "_eq(" not in source and "_gt(" not in source


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        ({}, "pass"),
        ({"sanctions_listed": True}, "sanctioned"),
        ({"is_over_18": False}, "underage"),
        ({"score": 51}, "risky"),
        ({"score": 51.5}, "risky"),
        ({"score": 51.5, "country": "FR"}, "pass"),
        ({"score": 51.5, "country": "FR", "credentials": []}, "conditions"),
        ({"credentials": []}, "conditions"),
        ({"credentials": ["Other", "AgeOver18"]}, "pass"),
    ],
)
def test_first_matching_rule_decides(changes: dict[str, object], outcome: str) -> None:
    assert age_program().run({**GOOD, **changes}) == outcome


@pytest.mark.parametrize(
    "changes",
    [
        {"sanctions_listed": None}, {"sanctions_listed": 0}, {"sanctions_listed": "false"}, {"is_over_18": 1},
        {"credentials": "AgeOver18"}, {"credentials": ["AgeOver18", 1]}, {"score": "10"}, {"score": True},
        {"country": None}, {"country": ["GB"]},
    ],
)
def test_declared_fact_of_the_wrong_type_is_invalid(changes: dict[str, object]) -> None:
    assert age_program().run({**GOOD, **changes}) == "invalid"


@pytest.mark.parametrize("missing", ["sanctions_listed", "is_over_18", "credentials", "score", "country"])
def test_missing_declared_fact_is_invalid(missing: str) -> None:
    facts = {name: value for name, value in GOOD.items() if name != missing}
    assert age_program().run(facts) == "invalid"


def test_default_when_no_rule_matches_and_no_else() -> None:
    program = dsl.compile_program([checked("context.a == 1"), checked("context.a == 2")], ["one", "two"], "none")
    assert [program.run(ctx(a=v)) for v in (1, 2, 3)] == ["one", "two", "none"]
    assert program.run({}) == "none"


def test_rules_after_else_are_not_compiled() -> None:
    program = dsl.compile_program([checked("context.a == 1"), None, checked("true")], ["one", "else", "x"], "none")
    assert program.run(ctx(a=1)) == "one"
    assert program.run(ctx(a=2)) == "else"
    assert "_o2" not in program.source


def test_required_consent_is_fetched_from_the_consent_map() -> None:
    scope = Scope(context=None)
    program = dsl.compile_program(
        [checked("consent.marketing", scope)], ["yes"], "no",
        dsl.EvidenceCheck([Required("consent.marketing", BOOL)], invalid="invalid"),
    )
    assert program.run({"consent": {"marketing": True}}) == "yes"
    assert program.run({"consent": {"marketing": False}}) == "no"
    assert program.run({"consent": {"marketing": "yes"}}) == "invalid"
    assert program.run({"consent": {}}) == "invalid"
    assert program.run({}) == "invalid"


def test_literal_conditions_compile_without_warnings() -> None:
    # regression: `(0 is True)` in generated code raised a SyntaxWarning (an error under -W error)
    for text, matched in [("0", False), ("-1", False), ('"x"', False), ("2.5", False), ("true", True), ("null", False)]:
        program = dsl.compile_program([checked(text)], [True], False)
        assert program.run({}) is matched


def test_generated_code_has_no_builtins() -> None:
    program = dsl.compile_program([checked('context.a == "__import__(\'os\')"')], [True], False)
    assert program.run(ctx(a="__import__('os')")) is True
    assert program.run.__globals__["__builtins__"] == {}


# ---------------------------------------------------------------- explain mode


def test_explaining_program_records_rules_reads_and_type_mismatches() -> None:
    recorder = Recorder()
    program = dsl.compile_program(
        [checked("context.amount > 5"), checked("context.items[0] == 'a' AND context.amount != 'x'"), None],
        ["big", "a", "else"], "none", recorder=recorder,
    )
    facts = ctx(amount="lots", items=["a"])
    assert program.run(facts) == "a"
    assert recorder.events == [("begin", 0), ("end", False), ("begin", 1), ("end", True)]
    assert recorder.reads == [
        ("context.amount", "lots"), ("context.items[0]", "a"), ("context.amount", "lots"),
    ]
    assert recorder.notes == ["type mismatch: string > number"]


@pytest.mark.parametrize(
    ("text", "facts", "note"),
    [
        ("context.a + 1 == 2", ctx(a="1"), "type mismatch: string + number"),
        ("-context.a == 1", ctx(a=True), "type mismatch: unary - on bool"),
        ("context.a / context.b == 1", ctx(a=1, b=0), "division by zero in /"),
        ("context.a * 10 == 1", ctx(a=1e308), "arithmetic overflow in *"),
        ("context.a in context.b", ctx(a=1, b="1"), "type mismatch: number in string"),
        ("len(context.a) > 0", ctx(a=5), "type mismatch: len() on number"),
        ("lower(context.a) == 'a'", ctx(a=None), "type mismatch: lower() on null"),
        ("startswith(context.a, 'x')", ctx(a=1), "type mismatch: number startswith() string"),
        ("matches(context.a, context.b)", ctx(a="a", b="("), "invalid regular expression: missing ): ("),
        ("any(x in context.a, true)", ctx(a="abc"), "type mismatch: any() on string"),
        ("context.a[0] == 1", ctx(a={"k": 1}), "type mismatch: map [] number"),
        ("days_since(context.a) > 1", ctx(a="soon"), "days_since(): not a timestamp: 'soon'"),
    ],
)
def test_explaining_program_notes_why_a_value_is_undefined(text: str, facts: dict[str, Any], note: str) -> None:
    recorder = Recorder()
    program = dsl.compile_program([checked(text)], [True], False, recorder=recorder)
    assert program.run(facts) is False
    assert recorder.notes == [note]


def test_explaining_program_notes_nothing_for_undefined_paths() -> None:
    recorder = Recorder()
    program = dsl.compile_program([checked("context.a > 1 AND len(context.b) > 0")], [True], False, recorder=recorder)
    assert program.run({}) is False
    assert recorder.notes == []
    assert recorder.reads == [("context.a", U)]


def test_explaining_program_records_reads_of_declared_facts() -> None:
    recorder = Recorder()
    assert age_program(recorder).run(GOOD) == "pass"
    assert recorder.reads == [
        ("sanctions_listed", False), ("is_over_18", True), ("score", 10), ("credentials", ["AgeOver18"]),
    ]
    assert recorder.events[-2:] == [("begin", 3), ("end", True)]


def test_compile_expression_is_reusable_across_facts() -> None:
    function = dsl.compile_expression(checked("context.a * 2"), clock=fixed_clock)
    assert [function(ctx(a=v)) for v in (1, 2.5)] == [2, 5.0]
    assert function({}) is U


def test_compile_expression_of_a_checked_source_text() -> None:
    source = SourceText("context.a ==\n  1")
    result = dsl.check(dsl.parse(source), source, Scope(context=None))
    assert dsl.compile_expression(result)(ctx(a=1)) is True
