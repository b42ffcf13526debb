"""Static types of the rule language, and what a provided fact is (`Fact`).

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
    """A fact a gateway provides: its name, its type, where it comes from. The gateway
    gives the engine its catalogue of them (`Scope.catalogue`)."""

    name: str
    type: Type
    source: str


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
