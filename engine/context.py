"""Validation of a request's `context` object against a purpose's context schema.

A schema is compiled once, by the loader, into a `ContextValidator` (field lookup,
messages, pattern matchers) that the purpose holds: a request's context is checked
with no work left over from the schema.

Patterns are RE2 (linear time: no catastrophic backtracking) and RE2 decides whether a
pattern is valid. The Python wrapper of RE2 costs several times what Python's `re` costs
on the short values of a context, so a pattern of
the subset `LINEAR_SUBSET` describes is matched with Python's `re` instead: anchored at
both ends, made only of single-character atoms (literals, classes of literals and
ranges, `\\d` under `re.ASCII`), with at most one of them repeated a variable number
of times. Such a pattern cannot backtrack more than the length of its fixed tail per
input character, and `fullmatch` of its body means what RE2's `^...$` means (`$` is
the end of the text in RE2: no trailing newline is allowed). Any other pattern is
searched with RE2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import re2

from dsl import type_name
from dsl.runtime import compile_regex
from engine.purpose import ContextField, conforms

# The accepted pattern language, one single-character atom at a time.
_CLASS_ITEM = r"(?:[A-Za-z0-9]-[A-Za-z0-9]|[A-Za-z0-9_ ,:;@#%=!/.]|\\d|\\[-.\]\[\\^/])"
_ATOM = rf"(?:[A-Za-z0-9_ ,:;@#%&=!~/-]|\\d|\\[.^$*+?()\[\]{{}}|\\/-]|\[{_CLASS_ITEM}+\])"
_QUANTIFIER = r"(?:[*+?]|\{[0-9]+(?:,[0-9]*)?\})"
_TOKEN = re.compile(rf"({_ATOM})({_QUANTIFIER})?", re.ASCII)
_FIXED = re.compile(r"\{([0-9]+)\}", re.ASCII)

#: What `linear_subset_body` accepts, for the documentation.
LINEAR_SUBSET = f"^ {_ATOM}{_QUANTIFIER}? ... $ (at most one variable quantifier)"

Matcher = Callable[[str], bool]


def linear_subset_body(pattern: str) -> str | None:
    """The body of `^body$` when `pattern` belongs to the linear-time subset, else None.

    The caller must have compiled `pattern` with RE2 first: RE2 is the judge of what is
    a valid pattern (repetition counts over 1000, reversed ranges, ...).
    """
    if len(pattern) < 2 or pattern[0] != "^" or pattern[-1] != "$":
        return None
    body = pattern[1:-1]
    variable = 0
    position = 0
    while position < len(body):
        token = _TOKEN.match(body, position)
        if token is None:
            return None
        quantifier = token.group(2)
        if quantifier is not None and _FIXED.fullmatch(quantifier) is None:
            variable += 1
            if variable > 1:
                return None
        position = token.end()
    # Consumed atom by atom: an escaped final `$` (`^a\$`) leaves a lone `\`, rejected above.
    return body


def pattern_matcher(pattern: str) -> Matcher | None:
    """A test `value -> matches` for a schema pattern; None when RE2 rejects the pattern."""
    try:
        compiled = compile_regex(pattern)
    except re2.error:
        return None
    body = linear_subset_body(pattern)
    if body is not None:
        fullmatch = re.compile(body, re.ASCII).fullmatch
        return lambda value: fullmatch(value) is not None
    search = compiled.search
    return lambda value: search(value) is not None


class _Field:
    """One context field with its message prefix and pattern test prepared."""

    __slots__ = ("check_type", "enum", "integer", "matcher", "max_length", "maximum", "minimum", "name",
                 "pattern", "required", "type", "where")

    def __init__(self, spec: ContextField) -> None:
        self.name = spec.name
        self.where = f"context.{spec.name}"
        self.type = spec.type
        self.check_type = spec.type.known
        self.integer = spec.integer
        self.required = spec.required
        self.enum = spec.enum
        self.max_length = spec.max_length
        self.pattern = spec.pattern
        self.matcher = pattern_matcher(spec.pattern) if spec.pattern is not None else None
        self.minimum = spec.minimum
        self.maximum = spec.maximum

    def check(self, value: Any, problems: list[str]) -> None:
        where = self.where
        if self.check_type and not conforms(value, self.type):
            problems.append(f"{where}: expected {self.type}, got {type_name(value)}")
            return
        if self.integer and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            problems.append(f"{where}: expected an integer, got {value!r}")
            return
        if self.enum is not None and value not in self.enum:
            problems.append(f"{where}: must be one of {list(self.enum)}")
        if isinstance(value, str):
            if self.max_length is not None and len(value) > self.max_length:
                problems.append(f"{where}: longer than {self.max_length} characters")
            elif self.pattern is not None:
                if self.matcher is None:
                    problems.append(f"{where}: schema pattern is invalid")
                elif not self.matcher(value):
                    problems.append(f"{where}: does not match {self.pattern}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                problems.append(f"{where}: must be >= {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                problems.append(f"{where}: must be <= {self.maximum:g}")


class ContextValidator:
    """`validate_context` for one schema, with the per-field work done once."""

    __slots__ = ("expected", "fields", "known")

    def __init__(self, fields: Sequence[ContextField]) -> None:
        self.fields = tuple(_Field(spec) for spec in fields)
        self.known = frozenset(spec.name for spec in fields)
        self.expected = ", ".join(sorted(self.known))

    def __call__(self, context: object) -> list[str]:
        if context is None:
            context = {}
        if not isinstance(context, dict):
            return [f"context must be an object, got {type_name(context)}"]
        if not self.fields:
            return []
        problems: list[str] = []
        known = self.known
        for name in context:
            if name not in known:
                problems.append(f"context.{name}: unknown field (expected one of: {self.expected})")
        for spec in self.fields:
            if spec.name in context:
                spec.check(context[spec.name], problems)
            elif spec.required:
                problems.append(f"{spec.where}: required")
        return problems


__all__ = ["LINEAR_SUBSET", "ContextValidator", "linear_subset_body", "pattern_matcher"]
