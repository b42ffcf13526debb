"""engine.context: a purpose's compiled context check.

- patterns of the linear-time subset are matched with Python's `re`: same results as
  RE2 on tricky inputs (trailing newlines, non-ASCII digits and letters); other
  patterns stay with RE2;
- the compiled validator gives the messages of the plain per-field loop it replaced.
"""

from __future__ import annotations

import random
import re

import pytest
import re2

from dsl import SCHEMA_TYPES, type_name
from dsl.runtime import compile_regex
from engine.context import ContextValidator, linear_subset_body, pattern_matcher
from engine.purpose import ContextField, conforms

TRICKY = [
    "", "A", "AB1234", "AB123456", "AB123456\n", "\nAB123456", "AB123456\r\n", "AB12 3456", "ab123456",
    "AB\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits: `\d` under Unicode rules, not under RE2 or re.ASCII
    "AB\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
    "\uff21\uff22123456", "\u00c9B123456", "AB12345\u00b2", "AB123456\x00", "AB123456\u200b", "\u0130B123456", "\u00df" * 8,
    "A" * 20, "A" * 21, "A" * 5, "0" * 1000, "GB12ABCD12345678901234", "GB12ABCD1234567890123",
    "$.abc", "$.", "a-b", "a/b", "x+y", "12-34", "12-", "-34", "a.b", "aXb", "a\nb",
]

SUBSET_PATTERNS = [
    "^[A-Z0-9]{6,20}$", "^\\d{3}$", "^\\d+$", "^[A-Z]{2}-\\d+$", "^GB[0-9]{2}[A-Z]{4}[0-9]{14}$",
    "^\\$\\.[a-z]*$", "^$", "^a?$", "^[a-z0-9_]+$", "^x\\+y$", "^[0-9]{2}-?[0-9]{2}$", "^a\\.b$", "^[\\d]{2,}$",
    "^[A-Za-z]{0,5}$", "^[/]+$",
]


def _re2_says(pattern: str, value: str) -> bool:
    return compile_regex(pattern).search(value) is not None


@pytest.mark.parametrize("pattern", SUBSET_PATTERNS)
def test_subset_patterns_match_as_re2_does(pattern: str) -> None:
    assert linear_subset_body(pattern) is not None
    matcher = pattern_matcher(pattern)
    assert matcher is not None
    for value in TRICKY:
        assert matcher(value) == _re2_says(pattern, value), (pattern, value)


def test_trailing_newline_and_foreign_digits_are_rejected_as_by_re2() -> None:
    matcher = pattern_matcher("^[A-Z0-9]{6,20}$")
    digits = pattern_matcher("^\\d+$")
    assert matcher is not None and digits is not None
    assert matcher("AB123456") and not matcher("AB123456\n")  # `$` is the end of text, not before a newline
    assert not digits("\u0661\u0662\u0663") and not digits("\uff11\uff12\uff13") and not digits("123\n") and digits("123")
    assert re.search("^\\d+$", "123\n") and re.search("^\\d+$", "\u0661\u0662\u0663")  # what plain `re` would have said


@pytest.mark.parametrize(
    "pattern",
    [
        "^[a-z]+[0-9]+$",  # two variable repetitions: left to RE2
        "^(a|b)$", "^a|b$", "a$", "^a", "^abc\\$", "^\\w+$", "^\\s+$", "^.+$", "^[^a]+$", "^a{,3}$", "^a+?$",
        "^a{2}{3}$", "^[a-]+$", "^[~~]$", "^(?i)a$", "^a*b*$", "^\\bA$", "^\\D$", "^\u00e9$",
    ],
)
def test_patterns_outside_the_subset_stay_with_re2(pattern: str) -> None:
    assert linear_subset_body(pattern) is None
    matcher = pattern_matcher(pattern)
    if matcher is None:  # RE2 rejects it: "schema pattern is invalid", as before
        with pytest.raises(re2.error):
            compile_regex(pattern)
        return
    for value in [*TRICKY, "ab12", "a", "b", "abc$", "aaabbb", "\u00e9", "\u00c9", "A", "\u00a0"]:
        assert matcher(value) == _re2_says(pattern, value), (pattern, value)


def test_invalid_patterns_are_reported_as_before() -> None:
    assert pattern_matcher("^[a-Z]$") is None
    assert pattern_matcher("^a{2000}$") is None  # RE2's repetition limit, which `re` lacks
    fields = (ContextField("id", SCHEMA_TYPES["string"], pattern="^[z-a]+$"),)
    assert ContextValidator(fields)({"id": "abc"}) == ["context.id: schema pattern is invalid"]


def _random_subset_pattern(rng: random.Random) -> str:
    atoms = ["a", "b", "0", "-", "\\d", "[ab]", "[a-c0-2]", "[\\d_]", "\\.", "[A-Z]"]
    parts = []
    variable_at = rng.randrange(-1, 4)
    for index in range(rng.randrange(0, 5)):
        atom = rng.choice(atoms)
        if index == variable_at:
            atom += rng.choice(["*", "+", "?", "{1,3}", "{2,}", "{0,2}"])
        elif rng.random() < 0.3:
            atom += f"{{{rng.randrange(0, 3)}}}"
        parts.append(atom)
    return "^" + "".join(parts) + "$"


def test_random_subset_patterns_agree_with_re2() -> None:
    rng = random.Random(4)
    alphabet = ["a", "b", "c", "0", "1", "5", "-", ".", "_", "A", "Z", "\n", "\u0663", "\u00e9", " "]
    for _ in range(300):
        pattern = _random_subset_pattern(rng)
        assert linear_subset_body(pattern) is not None, pattern
        matcher = pattern_matcher(pattern)
        assert matcher is not None
        for _ in range(40):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
            assert matcher(value) == _re2_says(pattern, value), (pattern, value)



def _reference_validate_context(fields: tuple[ContextField, ...], context: object) -> list[str]:
    """The per-request loop `ContextValidator` replaced, kept verbatim as the oracle."""
    if context is None:
        context = {}
    if not isinstance(context, dict):
        return [f"context must be an object, got {type_name(context)}"]
    if not fields:
        return []
    problems: list[str] = []
    known = {f.name: f for f in fields}
    for name in context:
        if name not in known:
            problems.append(f"context.{name}: unknown field (expected one of: {', '.join(sorted(known))})")
    for spec in fields:
        if spec.name not in context:
            if spec.required:
                problems.append(f"context.{spec.name}: required")
            continue
        value = context[spec.name]
        where = f"context.{spec.name}"
        if spec.type.known and not conforms(value, spec.type):
            problems.append(f"{where}: expected {spec.type}, got {type_name(value)}")
            continue
        if spec.integer and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            problems.append(f"{where}: expected an integer, got {value!r}")
            continue
        if spec.enum is not None and value not in spec.enum:
            problems.append(f"{where}: must be one of {list(spec.enum)}")
        if isinstance(value, str):
            if spec.max_length is not None and len(value) > spec.max_length:
                problems.append(f"{where}: longer than {spec.max_length} characters")
            elif spec.pattern is not None:  # noqa: SIM102 (verbatim)
                if compile_regex(spec.pattern).search(value) is None:
                    problems.append(f"{where}: does not match {spec.pattern}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if spec.minimum is not None and value < spec.minimum:
                problems.append(f"{where}: must be >= {spec.minimum:g}")
            if spec.maximum is not None and value > spec.maximum:
                problems.append(f"{where}: must be <= {spec.maximum:g}")
    return problems


def _schema() -> tuple[ContextField, ...]:
    t = SCHEMA_TYPES
    return (
        ContextField("national_id", t["string"], required=True, pattern="^[A-Z0-9]{6,20}$"),
        ContextField("code", t["string"], pattern="^[a-z]+[0-9]+$", max_length=8),  # outside the subset: RE2
        ContextField("count", t["integer"], integer=True, minimum=1, maximum=10),
        ContextField("ratio", t["number"], minimum=0.5),
        ContextField("tier", t["string"], enum=("gold", "silver")),
        ContextField("flag", t["boolean"]),
        ContextField("tags", t["list"]),
        ContextField("anything", t["any"], pattern="^\\d{2}$"),
    )


CONTEXTS: list[object] = [
    None, {}, [], "x", 3, {"national_id": "AB123456"}, {"national_id": "AB123456\n"}, {"national_id": "ab"},
    {"national_id": 12345678}, {"national_id": "AB\u0661\u0662\u0663\u0664\u0665\u0666"},
    {"national_id": "AB123456", "code": "abc123"}, {"national_id": "AB123456", "code": "abc123456"},
    {"national_id": "AB123456", "code": "123abc"}, {"national_id": "AB123456", "count": 2.0},
    {"national_id": "AB123456", "count": 1.5}, {"national_id": "AB123456", "count": 0},
    {"national_id": "AB123456", "count": 11}, {"national_id": "AB123456", "count": True},
    {"national_id": "AB123456", "ratio": 0.1}, {"national_id": "AB123456", "tier": "bronze"},
    {"national_id": "AB123456", "tier": "gold"}, {"national_id": "AB123456", "flag": 1},
    {"national_id": "AB123456", "tags": ["a"]}, {"national_id": "AB123456", "zz": 1, "aa": 2},
    {"x": None}, {"national_id": "AB123456", "anything": "12"}, {"national_id": "AB123456", "anything": "12\n"},
    {"national_id": "AB123456", "anything": 12},
]


def test_compiled_validator_gives_the_reference_messages() -> None:
    fields = _schema()
    validate = ContextValidator(fields)
    for context in CONTEXTS:
        assert validate(context) == _reference_validate_context(fields, context), context
    assert ContextValidator(())({"anything": 1}) == []
    assert ContextValidator(())([1]) == ["context must be an object, got list"]
