"""Check stage: inferred types, what an expression reads, what it rejects."""

from __future__ import annotations

import pytest

from dsl import FactBinding, Scope, Type
from dsl.types import ANY, BOOL, LIST, LIST_OF_STRINGS, MAP, NUMBER, STRING, list_of
from tests.dsl.helpers import CATALOGUE, checked, codes

SCOPE = Scope(
    facts={
        "is_pep": FactBinding(BOOL, guaranteed=True),
        "credentials": FactBinding(LIST_OF_STRINGS, guaranteed=True),
        "score": FactBinding(NUMBER, guaranteed=False),
    },
    context={"amount": NUMBER, "country": STRING, "items": LIST, "flags": MAP, "free": ANY},
    data={"countries": ["GB", "FR"], "limits": {"max": 100, "names": ["a"]}, "mixed": [1, "a"]},
    catalogue=CATALOGUE,
)


def type_of(text: str, scope: Scope = SCOPE) -> Type:
    result = checked(text, scope)
    assert result.ok, [d.render() for d in result.diagnostics]
    return result.type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", NUMBER), ("2.5", NUMBER), ("'a'", STRING), ("true", BOOL), ("null", Type("null")),
        ("[1, 2]", list_of(NUMBER)), ("[1, 'a']", list_of(ANY)), ("[]", list_of(ANY)),
        ("is_pep", BOOL), ("credentials", LIST_OF_STRINGS), ("score", NUMBER),
        ("context.amount", NUMBER), ("context.country", STRING), ("context.free", ANY), ("context", MAP),
        ("context.items[0]", ANY), ("context.flags['x']", ANY),
        ("subject.sub", STRING), ("subject.scope", LIST_OF_STRINGS), ("subject.client_id", STRING),
        ("consent.marketing", BOOL),
        ("data.countries", LIST_OF_STRINGS), ("data.countries[0]", STRING), ("data.limits", MAP),
        ("data.limits.max", NUMBER), ("data.limits['names'][0]", STRING), ("data.limits.nope", ANY),
        ("data.mixed", list_of(ANY)), ("data.mixed[1]", ANY), ("data.countries[5]", STRING),
        ("context.amount + 1", NUMBER), ("-context.amount", NUMBER), ("'a' + context.country", STRING),
        ("[1] + [2]", LIST), ("context.free + 1", ANY), ("context.free + 'x'", STRING),
        ("len(context.items)", NUMBER), ("lower(context.country)", STRING), ("now()", NUMBER),
        ("days_since(context.free)", NUMBER), ("startswith(context.country, 'G')", BOOL),
        ("exists(context.free)", BOOL), ("NOT is_pep", BOOL), ("is_pep AND is_pep", BOOL),
        ("context.amount > 1", BOOL), ("any(x in credentials, x == 'a')", BOOL), ("foo(1)", ANY),
    ],
)
def test_inferred_types(text: str, expected: Type) -> None:
    result = checked(text, SCOPE)
    assert result.type == expected
    assert result.types[id(result.node)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "context.amount > 10000 AND NOT is_pep",
        "context.country in data.countries",
        "'AgeOver18' in credentials",
        "'GB' in context.country",
        "'k' in context.flags",
        "context.free == 1 AND context.free == 'a'",
        "context.amount == 1.5",
        "score > 1 OR score == 2",
        "null == context.free",
        "len(context.country) > 2 AND len(context.items) > 0 AND len(context.flags) == 0",
        "any(x in context.items, x.amount > 100 AND x.kind == 'a')",
        "all(c in credentials, startswith(c, 'Age'))",
        "any(x in data.mixed, x == 1 OR x == 'a')",
        "matches(context.country, '^[A-Z]{2}$')",
        "days_since(context.free) <= 30 AND years_since(context.free) >= 18",
        "exists(context.items[0].amount)",
        "contains(context.items, 1) AND contains(context.country, 'G')",
        "subject.sub == 'x' AND 'admin' in subject.scope AND endswith(subject.client_id, '-internal')",
        "consent.marketing OR NOT consent.analytics",
        "context.amount / 2 + context.amount % 3 - context.amount * 4 > 0",
        "context['odd key'] == 1",
    ],
)
def test_well_typed_expressions_have_no_diagnostics(text: str) -> None:
    assert checked(text, SCOPE).diagnostics == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == '1'", ["E105"]),
        ("true == 1", ["E105"]),
        ("is_pep != 'true'", ["E105"]),
        ("context.amount == 'x'", ["E105"]),
        ("context.country < 1", ["E105"]),
        ("is_pep < true", ["E105", "E105"]),
        ("[1] < [2]", ["E105", "E105"]),
        ("1 in 'abc'", ["E105"]),
        ("1 in ['a']", ["E105"]),
        ("1 in context.flags", ["E105"]),
        ("'a' in 5", ["E105"]),
        ("len('a' + 1) > 0", ["E105"]),
        ("len([1] + 'a') > 0", ["E105"]),
        ("context.amount - 'a' > 0", ["E105"]),
        ("-context.country == 1", ["E105"]),
        ("NOT context.amount", ["E105"]),
        ("is_pep AND 1", ["E105"]),
        ("'x' OR is_pep", ["E105"]),
        ("len(1) > 0", ["E105"]),
        ("len(is_pep) > 0", ["E105"]),
        ("lower(1) == 'a'", ["E105"]),
        ("startswith(context.amount, 'a')", ["E105"]),
        ("matches('a', 1)", ["E105"]),
        ("any(x in context.amount, true)", ["E105"]),
        ("any(x in credentials, x)", ["E105"]),
        ("any(x in credentials, x > 1)", ["E105"]),
        ("context.amount.x == 1", ["E105"]),
        ("context.amount[0] == 1", ["E105"]),
        ("credentials['a'] == 'a'", ["E105"]),
        ("context.flags[0] == 1", ["E105"]),
        ("data.countries[0] == 1", ["E105"]),
        ("subject.sub == 1", ["E105"]),
        ("consent.marketing == 'yes'", ["E105"]),
    ],
)
def test_type_mismatches_are_e105(text: str, expected: list[str]) -> None:
    assert codes(text, SCOPE) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nope", ["E102"]),
        ("context.nope == 1", ["E102"]),
        ("data.nope == 1", ["E102"]),
        ("subject.nope == 1", ["E102"]),
        ("x == 1", ["E102"]),
        ("foo(1)", ["E103"]),
        ("Len('a') > 1", ["E103"]),
        ("len() > 1", ["E104"]),
        ("len('a', 'b') > 1", ["E104"]),
        ("now(1) > 1", ["E104"]),
        ("matches('a', '(')", ["E107"]),
        ("matches('a', '[z-a]')", ["E107"]),
        ("context.amount / 0 > 1", ["E108"]),
        ("context.amount % 0 > 1", ["E108"]),
        ("exists('a')", ["E108"]),
        ("exists(len(context.items))", ["E108"]),
        ("any(subject in credentials, true)", ["E108"]),
        ("any(credentials, true)", ["E108"]),
        ("all(x in credentials)", ["E102", "E108"]),
        ("foo(nope, 1 == 'a')", ["E102", "E105", "E103"]),
    ],
)
def test_other_errors(text: str, expected: list[str]) -> None:
    assert codes(text, SCOPE) == expected


def test_error_and_warning_codes_decide_ok() -> None:
    assert checked("has_credential", SCOPE).ok  # W303 is a warning
    assert codes("has_credential", SCOPE) == ["W303"]
    assert not checked("nope", SCOPE).ok


def test_catalogue_facts_need_declaring_without_a_catalogue() -> None:
    closed = Scope(facts=SCOPE.facts, context=None)
    assert codes("has_credential", closed) == ["E102"]
    assert codes("is_pep", closed) == []


def test_undeclared_catalogue_fact_keeps_its_catalogue_type() -> None:
    result = checked("is_over_18", Scope(catalogue=CATALOGUE))
    assert result.type == BOOL and result.facts_used == {"is_over_18"}
    assert codes("is_over_18 == 1", Scope(catalogue=CATALOGUE)) == ["W303", "E105"]


def test_without_a_context_schema_every_field_is_any() -> None:
    open_scope = Scope(context=None)
    assert checked("context.whatever.deep[0]", open_scope).type == ANY
    assert codes("context.whatever == 1 AND context.whatever == 'a'", open_scope) == []


def test_quantifier_variable_is_bound_in_the_body_only() -> None:
    assert codes("any(x in credentials, x == 'a') AND x == 'a'", SCOPE) == ["E102"]
    assert codes("any(x in credentials, true) AND any(x in context.items, x.amount > 1)", SCOPE) == []
    # the variable takes the item type: strings here, so ordering against a number fails
    assert codes("any(x in credentials, x < 1)", SCOPE) == ["E105"]
    # nested quantifiers see both variables; the inner one may shadow the outer
    assert codes("any(x in context.items, any(y in x, y == x))", SCOPE) == []
    assert codes("any(x in credentials, any(x in [1], x == 1))", SCOPE) == []
    assert codes("any(x in credentials, any(x in [1], x == 1) AND x == 1)", SCOPE) == ["E105"]


def test_a_quantifier_variable_shadows_a_fact() -> None:
    result = checked("any(is_pep in [1, 2], is_pep == 1)", SCOPE)
    assert result.diagnostics == []
    assert result.facts_used == set()
    assert result.guaranteed == {}


def test_facts_and_data_used() -> None:
    result = checked("is_pep OR score > 1 OR context.country in data.countries OR has_credential", SCOPE)
    assert result.facts_used == {"is_pep", "score", "has_credential"}
    assert result.data_used == {"countries"}
    # only guaranteed (declared, validated) facts may be inlined by the compiler
    assert result.guaranteed == {"is_pep": BOOL}
    assert checked("len(data) > 0", SCOPE).data_used == {"countries", "limits", "mixed"}


@pytest.mark.parametrize(
    ("text", "constant"),
    [
        ("1 < 2", True), ("true", True), ("NOT false AND 'a' == 'a'", True), ("len([1, 2]) > 1", True),
        ("now() > 0", False), ("days_since('2020-01-01') > 1", False), ("is_pep", False),
        ("context.amount > 1", False), ("1 in data.countries", False), ("any(x in [1], x == 1)", True),
        ("consent.marketing", False), ("subject.sub == 'a'", False),
    ],
)
def test_constant_conditions(text: str, constant: bool) -> None:
    assert checked(text, Scope(context=None, data={"countries": ["GB"]})).constant is constant


def test_checker_types_every_node() -> None:
    result = checked("context.amount + 1 > len(credentials)", SCOPE)
    compare = result.node
    assert result.types[id(compare)] == BOOL
    assert result.types[id(compare.left)] == NUMBER  # type: ignore[attr-defined]
    assert result.types[id(compare.right)] == NUMBER  # type: ignore[attr-defined]
    assert result.types[id(compare.right.args[0])] == LIST_OF_STRINGS  # type: ignore[attr-defined]
