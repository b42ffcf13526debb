"""Shared test helpers for the dsl tests: a fixed clock, check/compile shortcuts, a recorder."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dsl
from dsl import UNDEFINED, Checked, Diagnostic, Fact, Scope, SourceText
from dsl.types import BOOL, LIST_OF_STRINGS

#: The instant every injected clock returns.
NOW = datetime(2024, 3, 15, 12, 0, 0, tzinfo=UTC)

#: A gateway's fact catalogue for the checker (the shape of the server's, which the dsl
#: never imports).
CATALOGUE: dict[str, Fact] = {
    f.name: f
    for f in (
        Fact("citizen_valid", BOOL, "citizen registry"), Fact("is_over_18", BOOL, "citizen registry"),
        Fact("sanctions_listed", BOOL, "sanctions registry"), Fact("is_pep", BOOL, "sanctions registry"),
        Fact("has_credential", BOOL, "credential store"), Fact("credentials", LIST_OF_STRINGS, "credential store"),
    )
}

#: Context fields are typed `any` (no schema), so most expressions type-check.
OPEN_SCOPE = Scope(context=None)


def fixed_clock() -> datetime:
    return NOW


def checked(text: str, scope: Scope = OPEN_SCOPE) -> Checked:
    """Parse and check `text`; fail the test if it does not parse."""
    source = SourceText(text)
    return dsl.check(dsl.parse(source), source, scope)


def value_of(
    text: str,
    facts: dict[str, Any] | None = None,
    scope: Scope = OPEN_SCOPE,
    data: dict[str, object] | None = None,
) -> object:
    """The compiled value of a well-typed expression (the test fails on a check error)."""
    if data and scope is OPEN_SCOPE:
        scope = Scope(context=None, data=data)
    result = checked(text, scope)
    errors = [d.render() for d in result.diagnostics if d.severity == "error"]
    assert not errors, errors
    return dsl.compile_expression(result, data=data, clock=fixed_clock)(facts or {})


def diagnostics(text: str, scope: Scope = OPEN_SCOPE) -> list[Diagnostic]:
    """Every diagnostic of `text`, from the parser or else from the checker."""
    source = SourceText(text)
    try:
        node = dsl.parse(source)
    except dsl.ParseFailure as failure:
        return [failure.diagnostic]
    return dsl.check(node, source, scope).diagnostics


def codes(text: str, scope: Scope = OPEN_SCOPE) -> list[str]:
    return [d.code for d in diagnostics(text, scope)]


def same_value(a: object, b: object) -> bool:
    """Exact equality of results: same types (True is not 1, 1 is not 1.0), UNDEFINED only to itself."""
    if a is UNDEFINED or b is UNDEFINED:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


class Recorder:
    """What an explaining program reports: rules tried, paths read, notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.reads: list[tuple[str, object]] = []
        self.events: list[tuple[str, object]] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def read(self, path: str, value: object) -> None:
        self.reads.append((path, value))

    def begin(self, index: int) -> None:
        self.events.append(("begin", index))

    def end(self, matched: bool) -> None:
        self.events.append(("end", matched))
