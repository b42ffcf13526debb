"""Static types of the rule language and the catalogue of facts the gateway provides.

Types are a small lattice used by the checker (to report mismatches at load time) and
by the compiler (to emit inline code where a value's type is guaranteed at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["bool", "number", "string", "null", "list", "map", "any"]


@dataclass(frozen=True, slots=True)
class Type:
    kind: Kind
    item: Type | None = None

    def __str__(self) -> str:
        if self.kind == "list" and self.item is not None and self.item.kind != "any":
            return f"list[{self.item}]"
        return self.kind

    @property
    def known(self) -> bool:
        return self.kind != "any"


BOOL = Type("bool")
NUMBER = Type("number")
STRING = Type("string")
NULL = Type("null")
ANY = Type("any")
MAP = Type("map")
LIST = Type("list", ANY)
LIST_OF_STRINGS = Type("list", STRING)


def list_of(item: Type) -> Type:
    return Type("list", item)


def type_of_value(value: object) -> Type:
    """The type of a JSON-like value (data documents, literals, expected values)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        kinds = {type_of_value(v) for v in value}
        return list_of(kinds.pop() if len(kinds) == 1 else ANY)
    if isinstance(value, dict):
        return MAP
    return ANY


def compatible(a: Type, b: Type) -> bool:
    """Could values of these two types ever be equal / ordered against each other?"""
    if not a.known or not b.known:
        return True
    return a.kind == b.kind


@dataclass(frozen=True, slots=True)
class Fact:
    name: str
    type: Type
    source: str


#: The facts the gateway gathers (docs/policy-language.md, "Evidence facts"); `consent.<purpose>`
#: is handled apart.
FACTS: dict[str, Fact] = {
    f.name: f
    for f in (
        Fact("citizen_valid", BOOL, "citizen registry (needs context.national_id)"),
        Fact("is_over_18", BOOL, "derived from the citizen record's date of birth"),
        Fact("sanctions_listed", BOOL, "sanctions registry (needs context.national_id)"),
        Fact("is_pep", BOOL, "sanctions registry"),
        Fact("has_credential", BOOL, "subject holds an unrevoked AgeOver18 credential"),
        Fact("credentials", LIST_OF_STRINGS, "types of unrevoked credentials the subject holds"),
    )
}

#: Fields of `subject.*` (the caller's token).
SUBJECT_FIELDS: dict[str, Type] = {"sub": STRING, "scope": LIST_OF_STRINGS, "client_id": STRING}

#: Names a rule may start a path from besides declared facts.
ROOTS = ("context", "data", "subject", "consent")

#: Types of a purpose's `context` schema (`{type: ...}`).
SCHEMA_TYPES: dict[str, Type] = {
    "string": STRING,
    "number": NUMBER,
    "integer": NUMBER,
    "boolean": BOOL,
    "bool": BOOL,
    "list": LIST,
    "array": LIST,
    "object": MAP,
    "map": MAP,
    "any": ANY,
}

__all__ = [
    "ANY",
    "BOOL",
    "FACTS",
    "LIST",
    "LIST_OF_STRINGS",
    "MAP",
    "NULL",
    "NUMBER",
    "ROOTS",
    "SCHEMA_TYPES",
    "STRING",
    "SUBJECT_FIELDS",
    "Fact",
    "Kind",
    "Type",
    "compatible",
    "list_of",
    "type_of_value",
]
