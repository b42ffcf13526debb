"""Property tests of the optimising compiler: indexed == in order == the reference interpreter.

Random rule lists of 1-500 rules mix tests an index can look up (equality, `in` a list
or a data document, a constant `in` a value, `any(x in k, x == c)`, thresholds, truth
and NOT of facts and paths) with tests it cannot, inside ANDs, ORs and NOTs, over a few
shared keys so that rules collide. Inputs put missing, null, ill-typed and boundary
values (each bound itself, 1 against 1.0 against true, NaN, -0.0, huge integers) on
every key. Conditions go through `Shapes.prepare`, as the loader does, so rules of one
shape share their checked tree and differ only in their parameters.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
from dsl import FactBinding, Required, Scope, Shapes, SourceText
from dsl.types import BOOL, LIST_OF_STRINGS, NUMBER
from tests.dsl.helpers import fixed_clock
from tests.reference_interpreter import holds

DATA: dict[str, object] = {
    "countries": ["GB", "FR", "x"],
    "codes": [1, 2.5, "1", True, None],
    "limits": {"x": 1, "GB": 2},
}
FACTS_DECLARED = {"is_pep": BOOL, "level": NUMBER, "tags": LIST_OF_STRINGS}
SCOPE = Scope(
    facts={name: FactBinding(t, guaranteed=True) for name, t in FACTS_DECLARED.items()},
    context=None,
    data=DATA,
)
REQUIRED = [Required(name, t) for name, t in FACTS_DECLARED.items()]
EVIDENCE = dsl.EvidenceCheck(REQUIRED, invalid="invalid")
KEYS = ["context.a", "context.b", "context.c", "context.a.d", "lower(context.b)"]
#: Placeholders `{s}` (a string) and `{n}` (a number) take other values in each rule.
FIXED = ["true", "false", "null", '"x"', "1", "2.5"]
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def constants(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(['"{s}"', "{n}", '"{s}"', "{n}", *FIXED]))


@st.composite
def atoms(draw: st.DrawFn) -> str:
    """One test: most of them indexable, some not."""
    key = draw(st.sampled_from(KEYS))
    choice = draw(st.integers(0, 15))
    if choice <= 3:
        left, right = key, draw(constants())
        return f"{left} == {right}" if draw(st.booleans()) else f"{right} == {left}"
    if choice == 4:
        items = draw(st.lists(constants(), min_size=1, max_size=3))
        return f"{key} in [{', '.join(items)}]"
    if choice == 5:
        return f"{key} in data.{draw(st.sampled_from(['countries', 'codes', 'limits']))}"
    if choice == 6:
        constant = draw(constants())
        return f"{constant} in {key}" if draw(st.booleans()) else f"contains({key}, {constant})"
    if choice == 7:
        return f"any(t in {key}, t == {draw(constants())})"
    if choice in (8, 9):
        op = draw(st.sampled_from(["<", "<=", ">", ">="]))
        target = draw(st.sampled_from([key, "level"]))
        return f"{target} {op} {{n}}" if draw(st.booleans()) else f"{{n}} {op} {target}"
    if choice == 10:
        target = draw(st.sampled_from(["is_pep", key]))
        return target if draw(st.booleans()) else f"NOT {target}"
    if choice == 11:
        return '"{s}" in tags'
    # not indexable
    return draw(st.sampled_from([
        f'startswith({key}, "{{s}}")', f"len({key}) > 1", f'{key} != "{{s}}"', f"exists({key})",
        "context.a == context.b", f"{key} not in [1, \"x\"]", "level + 1 > {n}",
    ]))


@st.composite
def conditions(draw: st.DrawFn) -> str | None:
    if draw(st.integers(0, 40)) == 0:
        return None  # an `else`
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return f"NOT ({draw(atoms())})"
    if shape == 1:
        return f"({draw(atoms())}) OR ({draw(atoms())} AND {draw(atoms())})"
    if shape == 2:
        return f"{draw(atoms())} OR {draw(atoms())}"
    parts = draw(st.lists(atoms(), min_size=1, max_size=3))
    return " AND ".join(f"({p})" for p in parts)


STRING_POOL = ["x", "y", "GB", "1", "", "X"]
NUMBER_POOL = ["0", "1", "1.0", "2", "2.5", "-1", "10", "9.5"]


@st.composite
def rule_lists(
    draw: st.DrawFn,
    sizes: tuple[int, ...] = (1, 3, 12, 40, 120, 500),
    spreads: tuple[int, ...] = (2, 5, 50),
    anchored: bool = False,
) -> list[str | None]:
    """A few shapes repeated with other constants (as generated policies are), plus strays.

    `anchored`: most shapes start with an equality on a key (as large policies that index
    well do), so that the engine's own choice is to index them.
    """
    size = draw(st.sampled_from(sizes))
    shapes = draw(st.lists(conditions(), min_size=1, max_size=6))
    if anchored:
        shapes = [
            f'({draw(st.sampled_from(KEYS))} == "{{s}}") AND ({shape})' if shape and draw(st.integers(0, 3)) else shape
            for shape in shapes
        ]
    spread = draw(st.sampled_from(spreads))  # how many distinct constants the rules use
    rules: list[str | None] = []
    for i in range(size):
        template = shapes[i % len(shapes)]
        if template is None:
            if draw(st.integers(0, 9)) == 0:
                rules.append(None)
            continue
        if draw(st.integers(0, 19)) == 0:
            template = draw(conditions()) or "is_pep"
        k = draw(st.integers(0, spread))
        s = STRING_POOL[k] if k < len(STRING_POOL) else f"z{k}"
        n = NUMBER_POOL[k] if k < len(NUMBER_POOL) else str(k)
        rules.append(template.replace("{s}", s).replace("{n}", n))
    return rules


TRICKY: list[object] = [
    None, True, False, 0, 1, 1.0, -1, 2, 2.5, 10, 9.5, -0.0, math.nan, "x", "1", "", "GB", "X", "z7",
    ["x"], [1], [True], ["GB", 2.5], {"x": 1}, {"d": "x"}, {"d": 1},
]
#: Every tricky value on every key at once, checked in every example besides the drawn inputs.
FIXED_INPUTS: list[dict[str, Any]] = [
    {"is_pep": flag, "level": level, "tags": ["x"], "context": {"a": value, "b": value, "c": value}}
    for value in TRICKY for flag, level in ((True, 1), (False, 10))
] + [{"is_pep": False, "level": 2.5, "tags": [], "context": {"a": {"d": value}}} for value in TRICKY]
VALUES = st.sampled_from([
    None, True, False, 0, 1, 1.0, -1, 2, 2.5, 3, 10, 9.5, 10.5, 11, -0.0, 10**30, math.nan, math.inf,
    "x", "y", "GB", "1", "", "X", "z7", "z12", "xz7", [], ["x"], ["y", "GB"], [1, True], ["z7", 2.5],
    {"d": "x"}, {"x": 1}, {"GB": []}, {"z7": 0},
])
CONTEXT = st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUES | st.dictionaries(st.just("d"), VALUES), max_size=3)
INPUTS = st.lists(
    st.fixed_dictionaries(
        {"is_pep": st.booleans(), "level": st.sampled_from([0, 1, 1.0, 2, 2.5, 10, -1, 9.5]),
         "tags": st.lists(st.sampled_from(["x", "y", "GB", "z"]), max_size=3)},
        optional={"context": CONTEXT | VALUES},
    ),
    min_size=1, max_size=25,
)


def compile_all(rules: list[str | None]) -> tuple[list[Any], dict[str, dsl.Program[str]]]:
    shapes = Shapes(SCOPE)
    prepared: list[Any] = []
    for text in rules:
        if text is None:
            prepared.append(None)
            continue
        condition = shapes.prepare(SourceText(text))
        if not condition.checked.ok:
            continue
        prepared.append(condition)
    outcomes = [f"rule {i}" for i in range(len(prepared))]
    programs = {
        mode: dsl.compile_program(
            prepared, outcomes, "default", EVIDENCE, data=DATA, clock=fixed_clock, index=index
        )
        for mode, index in (("auto", None), ("indexed", True), ("in order", False))
    }
    return prepared, programs


def reference(prepared: list[Any], facts: dict[str, Any]) -> str:
    for i, condition in enumerate(prepared):
        if condition is None:
            return f"rule {i}"
        node = instance(condition)
        if holds(node, facts, DATA, fixed_clock):
            return f"rule {i}"
    return "default"


def instance(condition: dsl.Condition) -> dsl.Expr:
    """The condition's tree with its own literal values (the shape holds the first rule's)."""
    from dataclasses import replace

    from dsl import ast

    def rebuild(node: Any) -> Any:
        if isinstance(node, ast.Literal):
            return replace(node, value=condition.value(node))
        if not hasattr(node, "__dataclass_fields__"):
            return node
        changes = {}
        for name in node.__dataclass_fields__:
            value = getattr(node, name)
            if isinstance(value, tuple):
                changes[name] = tuple(rebuild(v) for v in value)
            elif hasattr(value, "span"):
                changes[name] = rebuild(value)
        return replace(node, **changes)

    return rebuild(condition.node)  # type: ignore[no-any-return]


class Tracer:
    def __init__(self) -> None:
        self.begun: list[int] = []
        self.notes: list[str] = []

    def begin(self, index: int) -> None:
        self.begun.append(index)

    def end(self, matched: bool) -> None:
        pass

    def read(self, path: str, value: object) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


@SETTINGS
@given(rules=rule_lists(), inputs=INPUTS)
def test_indexed_in_order_and_reference_agree(rules: list[str | None], inputs: list[dict[str, Any]]) -> None:
    prepared, programs = compile_all(rules)
    for facts in [*inputs, *FIXED_INPUTS]:
        expected = reference(prepared, facts)
        for mode, program in programs.items():
            assert program.run(facts) == expected, (mode, facts, [r for r in rules])
        for program in programs.values():
            tracer = Tracer()
            assert program.explain(facts, tracer) == expected
            decided = int(expected.split()[1]) if expected != "default" else len(prepared)
            last = min(decided, len(prepared) - 1) if prepared else -1
            assert tracer.begun == list(range(last + 1))


@SETTINGS
@given(rules=rule_lists(), inputs=INPUTS)
def test_the_index_only_excludes_rules_that_cannot_match(rules: list[str | None], inputs: list[dict[str, Any]]) -> None:
    prepared, programs = compile_all(rules)
    plan = programs["indexed"].plan
    if plan is None:
        return
    explainer = programs["indexed"]._explainer
    assert explainer is not None and explainer.keys is not None
    for facts in [*inputs, *FIXED_INPUTS]:
        for rule in plan.excluded(explainer.keys(facts)):
            condition = prepared[rule]
            assert condition is not None
            assert not holds(instance(condition), facts, DATA, fixed_clock), (rules[rule], facts)


def test_missing_and_ill_typed_evidence_is_refused_by_every_form() -> None:
    _, programs = compile_all(['context.a == "x"'] * 10 + ["is_pep"])
    for facts in ({}, {"is_pep": 1, "level": 0, "tags": []}, {"is_pep": True, "level": "1", "tags": []},
                  {"is_pep": True, "level": 1, "tags": ["x", 1]}):
        for program in programs.values():
            assert program.run(facts) == "invalid"


def test_folded_minus_signs_give_each_rule_its_own_value() -> None:
    shapes = Shapes(SCOPE)
    conditions = [shapes.prepare(SourceText(text)) for text in ("level > --0", "level > --7", "level < -7")]
    assert conditions[0].shape is conditions[1].shape
    assert [c.values for c in conditions] == [(0,), (7,), (-7,)]
    program = dsl.compile_program(conditions, ["zero", "seven", "minus"], "none", EVIDENCE, data=DATA)
    facts = {"is_pep": False, "tags": []}
    assert [program.run({**facts, "level": level}) for level in (3, 8, -8, -3)] == ["zero", "zero", "minus", "none"]
