"""The parser's shape cache: a cached shape gives exactly the tree a fresh parse gives."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import parser
from tests.dsl.test_properties import expressions


def fresh(text: str) -> object:
    return parser._parse_uncached(parser.SourceText(text))


def _relabel(text: str, numbers: list[int], strings: list[str]) -> str:
    """The same shape with other literal values (and so other lengths)."""
    nums = iter(numbers)
    strs = iter(strings)

    def swap(match: re.Match[str]) -> str:
        if match.lastgroup == "string":
            return '"' + next(strs, "zz") + '"'
        if match.lastgroup == "number":
            return str(next(nums, 7))
        return match.group()

    return parser._LITERAL_SCAN.sub(swap, text)


@pytest.mark.parametrize(
    "first, second",
    [
        ('context.country == "C1" AND context.amount > 1', 'context.country == "Country-long" AND context.amount > 123456'),
        ("x - 5 > -3", "x - 12345 > -1"),
        ("-0 == y", "-42 == y"),
        ("context.items[0].amount * 2.5 >= 100", "context.items[12].amount * 0.125 >= 7"),
        ("any(i in context.items, i.n in [1, 2, 3])", "any(i in context.items, i.n in [10, 200, 3000])"),
        ("matches(context.id, '^\\d+$')", 'matches(context.id, "^[A-Z]{2}\\\\d{6}$")'),
        # folded minus signs: for 0 the values cannot tell one minus from two
        ("(0 < --0)", "(7 < --7)"),
        ("x > -0", "x > -7"),
        ("x > --0.0", "x > --2.5"),
    ],
)
def test_second_expression_of_a_shape_equals_a_fresh_parse(first: str, second: str) -> None:
    assert parser.parse(first) == fresh(first)
    assert parser._shape(second)[0] in parser._templates  # the same shape, cached by the first
    assert parser.parse(second) == fresh(second)
    assert parser.parse(second) == fresh(second)  # now certainly from the cache


@settings(max_examples=300, deadline=None)
@given(
    text=expressions(),
    numbers=st.lists(st.integers(min_value=0, max_value=10**6), max_size=6),
    strings=st.lists(st.text(alphabet="abcXYZ019 -", max_size=8), max_size=6),
)
def test_cached_shapes_rebuild_the_exact_tree(text: str, numbers: list[int], strings: list[str]) -> None:
    try:
        expected = fresh(text)
    except parser.ParseFailure:
        return
    assert parser.parse(text) == expected
    other = _relabel(text, numbers, strings)
    try:
        other_expected = fresh(other)
    except parser.ParseFailure:
        return
    assert parser.parse(other) == other_expected


@settings(max_examples=500, deadline=None)
@given(
    text=expressions()
    | st.text(alphabet="ab_9.1eE+-\"'\\ \n[]()é", max_size=30)
    | st.lists(st.sampled_from(['"x"', "'y'", "12", "1.5", "2e3", "a1", "_7", ".5", " ", '"\\"', "\\", "é", "1e"]),
               max_size=12).map("".join)
)
def test_literal_shape_is_the_key_and_values_of_the_parser_scan(text: str) -> None:
    # the loader finds a rule's shape by `literal_shape`; the parser caches it under `_shape`
    try:
        key, tokens = parser._shape(text)
    except ValueError:
        return
    assert parser.literal_shape(text) == (key, tuple(token.value for token in tokens))
