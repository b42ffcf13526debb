"""Property tests: the compiler agrees with the reference interpreter; the parser is total.

Expressions are generated as *text* from a small typed grammar (conditions, numbers,
strings, anything), so the whole pipeline (parse -> check -> compile) is exercised.
Facts are random JSON-like maps with missing keys, wrong types, nulls and nesting.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dsl
from dsl import UNDEFINED, FactBinding, Required, Scope, SourceText
from dsl.types import ANY, BOOL, NUMBER, STRING
from tests.dsl.helpers import Recorder, fixed_clock, same_value
from tests.reference_interpreter import evaluate, holds

DATA: dict[str, object] = {
    "countries": ["GB", "FR"],
    "limits": {"max": 100, "ratio": 0.5},
    "mixed": [1, "a", True, None, [1]],
    "flag": True,
}
#: Declared facts the compiler may inline (validated before any rule runs).
GUARANTEED = {"is_pep": BOOL, "level": NUMBER, "country": STRING}
OPEN_FACTS = {"tags": FactBinding(ANY, guaranteed=False), "score": FactBinding(ANY, guaranteed=False)}
#: Every fact read through the undefined-aware path.
SCOPE = Scope(
    facts={**OPEN_FACTS, **{name: FactBinding(t, guaranteed=False) for name, t in GUARANTEED.items()}},
    context=None,
    data=DATA,
)
#: `is_pep`, `level`, `country` inlined, as for declared evidence.
INLINING_SCOPE = Scope(
    facts={**OPEN_FACTS, **{name: FactBinding(t, guaranteed=True) for name, t in GUARANTEED.items()}},
    context=None,
    data=DATA,
)
REQUIRED = [Required(name, t) for name, t in GUARANTEED.items()]
pytestmark = pytest.mark.filterwarnings("error::SyntaxWarning")  # generated code compiles cleanly
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)

# ---------------------------------------------------------------- expression text

ANY_PATHS = [
    "context.a", "context.b", "context.b[0]", "context.b[1]", "context.c.d", 'context["odd key"]',
    "context.s", "context", "context.b[context.i]", "tags", "tags[0]", "score", "data", "data.mixed",
    "data.mixed[1]", "data.limits", 'data["limits"]["ratio"]', "data.countries[context.i]", "context.c['d']",
]
ITERABLES = [
    "context.b", "context.a", "tags", "data.countries", "data.mixed", "context.c.d", "subject.scope",
    "[1, 2.5, 'a']", "[]", "[context.a, context.s]",
]
NUMBER_LITERALS = ["0", "1", "2", "3", "12", "2.5", "0.0", "1e3", "1e999", "1000000000000000000000000000000"]
STRING_LITERALS = [
    '"a"', "'B'", '""', '"aB"', '"2020-02-29"', "'a.b'", '"Z"', r'"\u0041"', r'"a\"b"', r"'it\'s'", '"odd key"',
]
PATTERNS = ['"^a"', '"B$"', '"a.b"', '"(?i)ab"', '"[0-9]+"', '"^$"', "'a|Z'"]


def keyword(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word.upper(), word.lower(), word.title()])


@st.composite
def expressions(draw: st.DrawFn, sort: str = "cond", depth: int = 3, bound: tuple[str, ...] = ()) -> str:
    """Text of an expression of `sort` (cond, num, str, any), at most `depth` levels deep."""
    variables = [*bound, *(f"{v}.a" for v in bound), *(f"{v}[0]" for v in bound)]
    any_leaf = st.sampled_from(ANY_PATHS + variables) if variables else st.sampled_from(ANY_PATHS)
    leaves = {
        "cond": st.one_of(
            st.sampled_from(["true", "FALSE", "False", "is_pep", "consent.marketing", "data.flag"]),
            st.builds("exists({})".format, any_leaf),
            any_leaf,
        ),
        "num": st.one_of(st.sampled_from([*NUMBER_LITERALS, "level", "now()", "data.limits.max"]), any_leaf),
        "str": st.one_of(st.sampled_from([*STRING_LITERALS, "country", "subject.sub"]), any_leaf),
        "any": st.one_of(
            any_leaf,
            st.sampled_from([*NUMBER_LITERALS, *STRING_LITERALS, "null", "NULL", "true", "[]", "[1, 'a']"]),
        ),
    }
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(leaves[sort])

    def sub(kind: str) -> str:
        return draw(expressions(kind, depth - 1, bound))

    if sort == "num":
        choice = draw(st.integers(0, 3))
        if choice == 0:
            return f"({sub('num')} {draw(st.sampled_from('+-*/%'))} {sub('num')})"
        if choice == 1:
            return f"-{sub('num')}"
        if choice == 2:
            return f"{draw(st.sampled_from(['len', 'days_since', 'years_since']))}({sub('any')})"
        return f"({sub('num')} + {sub('any')})"
    if sort == "str":
        choice = draw(st.integers(0, 2))
        if choice == 0:
            return f"({sub('str')} + {sub('str')})"
        if choice == 1:
            return f"{draw(st.sampled_from(['lower', 'upper']))}({sub('str')})"
        return f"{draw(st.sampled_from(ANY_PATHS))}[{sub('str')}]"
    if sort == "any":
        choice = draw(st.integers(0, 4))
        if choice == 0:
            return f"[{sub('any')}, {sub('any')}]"
        if choice == 1:
            return f"({sub('any')} + {sub('any')})"
        if choice == 2:
            return f"{draw(st.sampled_from(ANY_PATHS))}[{sub('num')}]"
        return sub(draw(st.sampled_from(["num", "str", "cond"])))
    choice = draw(st.integers(0, 8))
    if choice == 0:
        return f"({draw(keyword('not'))} {sub('cond')})"
    if choice == 1:
        op = draw(keyword(draw(st.sampled_from(["and", "or"]))))
        return f"({sub('cond')} {op} {sub('cond')})"
    if choice == 2:
        kind = draw(st.sampled_from(["num", "str", "any"]))
        return f"({sub(kind)} {draw(st.sampled_from(['<', '<=', '>', '>=']))} {sub(kind)})"
    if choice == 3:
        return f"({sub('any')} {draw(st.sampled_from(['==', '!=']))} {sub('any')})"
    if choice == 4:
        right = draw(st.sampled_from(["[\"a\", 'B']", "data.countries", "data.mixed", "[1, 2]"]) | st.just(sub("any")))
        negated = draw(st.booleans())
        in_ = draw(keyword("in"))
        return f"({sub('any')} {draw(keyword('not')) + ' ' if negated else ''}{in_} {right})"
    if choice == 5:
        name = draw(st.sampled_from(["startswith", "endswith"]))
        return f"{name}({sub('str')}, {sub('str')})"
    if choice == 6:
        if draw(st.booleans()):
            return f"matches({sub('str')}, {draw(st.sampled_from(PATTERNS))})"
        return f"contains({sub('any')}, {sub('any')})"
    variable = "x" if "x" not in bound else "y"
    kind = draw(st.sampled_from(["any", "all", "ANY", "All"]))
    body = draw(expressions("cond", depth - 1, (*bound, variable)))
    return f"{kind}({variable} {draw(keyword('in'))} {draw(st.sampled_from(ITERABLES))}, {body})"


# ---------------------------------------------------------------- facts

#: Values that collide across types (1, 1.0, true, "1") or sit on an edge (huge, zero).
TRICKY = [None, True, False, 0, 1, 2, -1, 0.0, 1.0, 2.5, -0.0, 1e308, 10**30, 10**400, "", "1", "a", "B", "GB"]
SCALARS = st.one_of(
    st.sampled_from(TRICKY),
    st.integers(-3, 3),
    st.text("aB .:-0129Z", max_size=6),
    st.sampled_from(["2020-02-29", "2024-03-15T11:00:00Z", "2023-03-16", "1999-12-31T23:59:59+05:00"]),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "d", "odd key"]), children, max_size=3),
    max_leaves=6,
)
CONTEXT = st.fixed_dictionaries(
    {"a": SCALARS | JSON, "b": st.lists(SCALARS, max_size=3) | JSON},
    optional={
        "c": st.fixed_dictionaries({}, optional={"d": JSON}) | JSON,
        "s": st.text("aB .:-0129Z", max_size=6) | JSON,
        "odd key": JSON,
        "i": st.integers(-1, 3) | JSON,
    },
)
OTHER_FACTS = {
    "tags": st.lists(st.sampled_from(["a", "B", "Z", "GB"]), max_size=3) | JSON,
    "score": SCALARS | JSON,
    "subject": st.fixed_dictionaries({"sub": st.text("aB", max_size=3), "scope": st.lists(JSON, max_size=2)}) | JSON,
    "consent": st.dictionaries(st.just("marketing"), JSON) | JSON,
    "is_pep": st.booleans() | st.booleans() | JSON,
    "level": st.integers(-3, 3) | st.floats(-1e3, 1e3) | JSON,
    "country": st.sampled_from(["GB", "a", "", "FR"]) | JSON,
}
#: Mostly a well-formed context; sometimes none at all, or not a map.
FACTS = st.fixed_dictionaries({"context": CONTEXT}, optional=OTHER_FACTS) | st.fixed_dictionaries(
    {}, optional={"context": JSON, **OTHER_FACTS}
)


# ---------------------------------------------------------------- properties


def checked_or_reject(text: str, scope: Scope = SCOPE) -> dsl.Checked:
    """Parse and check generated text; reject (not fail) what the checker refuses."""
    source = SourceText(text)
    result = dsl.check(dsl.parse(source), source, scope)
    assume(result.ok)
    return result


def conforms(value: object, kind: str) -> bool:
    if kind == "bool":
        return type(value) is bool
    if kind == "number":
        return type(value) in (int, float)
    return type(value) is str


def reference_program(nodes: list[dsl.Expr], facts: dict[str, Any]) -> str:
    if not all(conforms(facts.get(name, UNDEFINED), t.kind) for name, t in GUARANTEED.items()):
        return "invalid"
    for i, node in enumerate(nodes):
        if holds(node, facts, DATA, fixed_clock):
            return f"rule {i}"
    return "default"


@PROPERTY_SETTINGS
@given(text=expressions("cond"), facts=FACTS)
def test_condition_matches_reference(text: str, facts: dict[str, Any]) -> None:
    result = checked_or_reject(text)
    expected = holds(result.node, facts, DATA, fixed_clock)
    value = dsl.compile_expression(result, data=DATA, clock=fixed_clock)(facts)
    assert same_value(value, evaluate(result.node, facts, DATA, fixed_clock)), text
    for recorder in (None, Recorder()):
        program = dsl.compile_program([result], outcomes=[True], default=False, data=DATA, clock=fixed_clock,
                                      recorder=recorder)
        assert program.run(facts) is expected, (text, recorder)


@PROPERTY_SETTINGS
@given(text=st.sampled_from(["num", "str", "any"]).flatmap(expressions), facts=FACTS)
def test_value_matches_reference(text: str, facts: dict[str, Any]) -> None:
    result = checked_or_reject(text)
    value = dsl.compile_expression(result, data=DATA, clock=fixed_clock)(facts)
    expected = evaluate(result.node, facts, DATA, fixed_clock)
    assert same_value(value, expected), (text, value, expected)


@PROPERTY_SETTINGS
@given(texts=st.lists(expressions("cond", depth=2), min_size=1, max_size=3), facts=FACTS)
def test_program_with_inlined_facts_matches_reference(texts: list[str], facts: dict[str, Any]) -> None:
    results = [checked_or_reject(text, INLINING_SCOPE) for text in texts]
    outcomes = [f"rule {i}" for i in range(len(results))]
    expected = reference_program([r.node for r in results], facts)
    for recorder in (None, Recorder()):
        program = dsl.compile_program(
            results, outcomes=outcomes, default="default", evidence=dsl.EvidenceCheck(REQUIRED, invalid="invalid"),
            data=DATA, clock=fixed_clock, recorder=recorder,
        )
        got = program.run(facts)
        if recorder is not None and expected == "invalid":
            continue  # explaining programs run only after the engine validated the evidence
        assert got == expected, (texts, recorder)


# ---------------------------------------------------------------- one operator, any operands

VALUES = SCALARS | JSON | st.text("aB .:-0129Z\"\\é", max_size=5)
BINARY_OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"]
#: How an operand is written: a path (undefined-aware code), a literal, an inlined fact.
RENDERINGS = ["path", "literal", "fact"]
INLINED_FACT = {bool: "is_pep", int: "level", float: "level", str: "country"}


def literal_text(value: object) -> str | None:
    """`value` written as a literal of the language, or None when it has no literal form."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        items = [literal_text(item) for item in value]
        return None if None in items else "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
    return None


def operand(value: object, rendering: str, path: str, facts: dict[str, Any]) -> str:
    """Write one operand and put what it reads into `facts`."""
    fact = INLINED_FACT.get(type(value))
    if rendering == "fact" and fact is not None and fact not in facts:
        facts[fact] = value
        return fact
    literal = literal_text(value)
    if rendering == "literal" and literal is not None:
        return literal
    facts.setdefault("context", {})[path] = value
    return f"context.{path}"


def assert_agrees(text: str, facts: dict[str, Any]) -> None:
    """Compiled value, fast program and explaining program all agree with the reference."""
    result = checked_or_reject(text, INLINING_SCOPE)
    expected = evaluate(result.node, facts, DATA, fixed_clock)
    value = dsl.compile_expression(result, data=DATA, clock=fixed_clock)(facts)
    assert same_value(value, expected), (text, facts, value, expected)
    required = [r for r in REQUIRED if r.name in facts]
    for recorder in (None, Recorder()):
        program = dsl.compile_program([result], outcomes=[True], default=False,
                                      evidence=dsl.EvidenceCheck(required, invalid="invalid"),
                                      data=DATA, clock=fixed_clock, recorder=recorder)
        assert program.run(facts) is (expected is True), (text, facts, recorder)


@PROPERTY_SETTINGS
@given(
    op=st.sampled_from(BINARY_OPERATORS),
    left=VALUES,
    right=VALUES,
    renderings=st.tuples(st.sampled_from(RENDERINGS), st.sampled_from(RENDERINGS)),
)
def test_operator_matches_reference(op: str, left: object, right: object, renderings: tuple[str, str]) -> None:
    facts: dict[str, Any] = {}
    text = f"{operand(left, renderings[0], 'a', facts)} {op} {operand(right, renderings[1], 'b', facts)}"
    assert_agrees(text, facts)


@PROPERTY_SETTINGS
@given(
    function=st.sampled_from(
        ["len", "lower", "upper", "days_since", "years_since", "-", "exists", "NOT ",
         "startswith", "endswith", "contains", "matches"]
    ),
    first=VALUES,
    second=VALUES,
    renderings=st.tuples(st.sampled_from(RENDERINGS), st.sampled_from(RENDERINGS)),
)
def test_function_matches_reference(
    function: str, first: object, second: object, renderings: tuple[str, str]
) -> None:
    facts: dict[str, Any] = {}
    arg = operand(first, "path" if function == "exists" else renderings[0], "a", facts)
    if function in ("-", "NOT "):
        text = f"{function}{arg}"
    elif len(dsl.FUNCTIONS[function].params) == 2:
        text = f"{function}({arg}, {operand(second, renderings[1], 'b', facts)})"
    else:
        text = f"{function}({arg})"
    assert_agrees(text, facts)


#: A small domain where every cross-type collision (true/1, 1/1.0/"1", [1]/[true]) occurs.
POOL: list[object] = [
    None, True, False, 0, 1, -1, 0.0, 1.0, 2.5, 10**400, 1e308, "", "1", "a", "ab", "B",
    [], [1], [1.0], [True], ["a", 1], {"a": 1}, {"1": True},
]


def test_every_operator_on_every_pair_of_pool_values_matches_reference() -> None:
    """Exhaustive over POOL x POOL: paths on both sides, a literal or an inlined fact on one."""
    checked_cases = 0
    for op in BINARY_OPERATORS:
        variants: list[tuple[str, Any]] = [(f"context.a {op} context.b", None)]
        variants += [(f"context.a {op} {literal_text(v)}", v) for v in POOL if literal_text(v) is not None]
        for text, literal in variants:
            source = SourceText(text)
            result = dsl.check(dsl.parse(source), source, SCOPE)
            if not result.ok:
                continue
            value = dsl.compile_expression(result, data=DATA, clock=fixed_clock)
            programs = [
                dsl.compile_program([result], [True], False, data=DATA, clock=fixed_clock, recorder=recorder)
                for recorder in (None, Recorder())
            ]
            for left, right in itertools.product(POOL, POOL if literal is None else [literal]):
                facts = {"context": {"a": left, "b": right}}
                expected = evaluate(result.node, facts, DATA, fixed_clock)
                assert same_value(value(facts), expected), (text, left, right)
                for program in programs:
                    assert program.run(facts) is (expected is True), (text, left, right)
                checked_cases += 1
    assert checked_cases > 6000


@pytest.mark.parametrize("fact", ["is_pep", "level", "country"])
def test_inlined_fact_on_every_operator_matches_reference(fact: str) -> None:
    kind = GUARANTEED[fact].kind
    values = [v for v in POOL if conforms(v, kind)]
    for op in BINARY_OPERATORS:
        for text in (f"{fact} {op} context.b", f"context.b {op} {fact}"):
            source = SourceText(text)
            result = dsl.check(dsl.parse(source), source, INLINING_SCOPE)
            if not result.ok:
                continue
            program = dsl.compile_program(
                [result], [True], False, dsl.EvidenceCheck([Required(fact, GUARANTEED[fact])], invalid="invalid"),
                data=DATA, clock=fixed_clock,
            )
            for own, other in itertools.product(values, POOL):
                facts = {fact: own, "context": {"b": other}}
                assert program.run(facts) is holds(result.node, facts, DATA, fixed_clock), (text, own, other)


# ---------------------------------------------------------------- the parser is total

TOKENS = [
    "a", "x", "context", ".", "[", "]", "(", ")", ",", "1", "2.5", "1e9", '"s"', "'t'", '"', "'", "\\",
    "==", "!=", "<", ">=", "=", "!", "&&", "+", "-", "*", "/", "%", "AND", "or", "Not", "in", "not in",
    "true", "NULL", "any", "all", "len", "exists", " ", "\n", "\t", "é", "\x00", "#",
    r'"\q"', r"'\u12'", r'"\u0041"', r'"\n"',
]


@st.composite
def damaged_expressions(draw: st.DrawFn) -> str:
    """A well-formed expression with one token inserted and one span deleted."""
    text = draw(expressions("cond", depth=2))
    at = draw(st.integers(0, len(text)))
    text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
    start = draw(st.integers(0, len(text)))
    return text[:start] + text[start + draw(st.integers(0, 3)) :]


@settings(max_examples=300, deadline=2000)
@given(
    text=st.text(max_size=200)
    | st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
    | damaged_expressions()
)
def test_parse_raises_only_parse_failure(text: str) -> None:
    try:
        node = dsl.parse(text)
    except dsl.ParseFailure as failure:
        diagnostic = failure.diagnostic
        assert diagnostic.code in ("E101", "E106")
        assert diagnostic.line >= 1 and diagnostic.col >= 1
        assert diagnostic.line <= text.count("\n") + 1
    else:
        assert isinstance(node, dsl.Expr)  # type: ignore[arg-type]
