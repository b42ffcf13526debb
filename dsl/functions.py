"""The fixed function library: signatures for the checker, helper names for the compiler.

Adding a function means one entry here and its helper in `dsl.runtime.namespace`.
`exists`, `any` and `all` are special forms handled by the checker and compiler.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.types import ANY, BOOL, NUMBER, STRING, Type


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    params: tuple[Type, ...]
    returns: Type
    helper: str
    summary: str
    example: str
    #: Predicates return true/false (false on undefined); other functions return undefined.
    predicate: bool = False


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("len", (ANY,), NUMBER, "_fn_len", "length of a string, list or map", "len(context.items) > 0"),
        Function("lower", (STRING,), STRING, "_fn_lower", "lower-case a string", 'lower(context.country) == "gb"'),
        Function("upper", (STRING,), STRING, "_fn_upper", "upper-case a string", 'upper(context.country) == "GB"'),
        Function(
            "startswith", (STRING, STRING), BOOL, "_fn_startswith", "string starts with a prefix",
            'startswith(context.national_id, "GB")', predicate=True,
        ),
        Function(
            "endswith", (STRING, STRING), BOOL, "_fn_endswith", "string ends with a suffix",
            'endswith(subject.client_id, "-internal")', predicate=True,
        ),
        Function(
            "contains", (ANY, ANY), BOOL, "_fn_contains",
            "a list holds an item, a string holds a substring, or a map holds a key",
            'contains(credentials, "AgeOver18")', predicate=True,
        ),
        Function(
            "matches", (STRING, STRING), BOOL, "_fn_matches",
            "a string matches a regular expression (RE2 syntax, linear time, searched anywhere)",
            'matches(context.national_id, "^[A-Z]{2}[0-9]+$")', predicate=True,
        ),
        Function("exists", (ANY,), BOOL, "", "the path is defined", "exists(context.amount)", predicate=True),
        Function("now", (), NUMBER, "_fn_now", "the current time as Unix seconds", "now() > 0"),
        Function(
            "days_since", (ANY,), NUMBER, "_fn_days_since",
            "whole days since an ISO-8601 timestamp or Unix seconds", "days_since(context.last_checked) <= 30",
        ),
        Function(
            "years_since", (ANY,), NUMBER, "_fn_years_since",
            "whole years since an ISO-8601 date (an age)", 'years_since(context.date_of_birth) >= 18',
        ),
    )
}

#: Quantifiers: `any(x in list, condition)` / `all(x in list, condition)`.
QUANTIFIERS = {
    "any": "some item of the list satisfies the condition (false for an empty list)",
    "all": "every item of the list satisfies the condition (true for an empty list)",
}

__all__ = ["FUNCTIONS", "QUANTIFIERS", "Function"]
