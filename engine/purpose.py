"""A compiled purpose and its parts: declared evidence, context schema, rules.

Built by the loader, held by a `PolicySet`, never changed: a purpose carries the
compiled program of its rules and the compiled check of its request context, so
everything a decision needs was prepared at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dsl import UNDEFINED, Program, Type, refuses_every_mistyped

if TYPE_CHECKING:  # the policy set's decisions are what a purpose's program returns
    from engine.policyset import Decision

Status = Literal["pass", "pass_with_conditions", "fail"]
OUTCOMES: tuple[Status, ...] = ("pass", "pass_with_conditions", "fail")


@dataclass(frozen=True, slots=True)
class EvidenceSpec:
    """A fact the purpose declares: required, with a type and maybe an expected value."""

    name: str
    type: Type
    expected: object = UNDEFINED

    def problem(self, facts: Mapping[str, object]) -> str | None:
        value = lookup(facts, self.name)
        if value is UNDEFINED:
            return "missing"
        return None if conforms(value, self.type) else "invalid"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as written: where it is, its condition's text, what it decides."""

    index: int
    line: int
    column: int
    condition: str | None  # None for `else`
    status: Status
    reason: str
    conditions: tuple[str, ...]
    reads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContextField:
    """One field of a purpose's context schema."""

    name: str
    type: Type
    integer: bool = False
    required: bool = False
    pattern: str | None = None
    enum: tuple[object, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    #: Personal data: never stored in clear (decision records keep a keyed hash).
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class Purpose:
    """One compiled purpose."""

    name: str
    description: str
    file: str
    line: int
    consent: tuple[str, ...]
    context: tuple[ContextField, ...]
    evidence: tuple[EvidenceSpec, ...]
    rules: tuple[Rule, ...]
    program: Program[Decision] = field(repr=False)
    #: The request context's problems against the schema (empty when it is acceptable),
    #: compiled by the loader from `context`.
    context_check: Callable[[object], list[str]] = field(repr=False, default=lambda context: [])
    #: The purposes whose consent its rules read (`consent.<name>`), declared or not: the
    #: gateway provides each of them, and no other.
    consents_read: tuple[str, ...] = ()
    revision: str = ""
    #: Does the compiled evidence check fail closed on every declared fact given with
    #: another type (`dsl.refuses_every_mistyped`)? Derived from `evidence`.
    types_checked: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = all(refuses_every_mistyped(spec.type) for spec in self.evidence)
        object.__setattr__(self, "types_checked", checked)  # frozen: set once, here

    @property
    def facts(self) -> tuple[str, ...]:
        """The declared evidence fact names, in declaration order."""
        return tuple(e.name for e in self.evidence)

    def validate_context(self, context: object) -> list[str]:
        """Problems with a request context against this purpose's schema (empty if fine)."""
        return self.context_check(context)


def lookup(facts: Mapping[str, object], name: str) -> object:
    """The value of a fact name such as `is_pep` or `consent.registry_check`."""
    value: Any = facts
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return UNDEFINED
        value = value[part]
    return value


def conforms(value: object, t: Type) -> bool:
    """Is `value` of type `t` (a declared fact's or a context field's)?"""
    match t.kind:
        case "bool":
            return value.__class__ is bool
        case "number":
            return value.__class__ in (int, float)
        case "string":
            return value.__class__ is str
        case "list":
            if value.__class__ is not list:
                return False
            return t.item is None or not t.item.known or all(conforms(v, t.item) for v in value)
        case "map":
            return value.__class__ is dict
        case "null":
            return value is None
    return value is not UNDEFINED


def type_schema(t: Type) -> dict[str, Any]:
    """The JSON Schema of the values `conforms` accepts as `t` (`{}` for any value)."""
    match t.kind:
        case "bool":
            return {"type": "boolean"}
        case "number":
            return {"type": "number"}
        case "string":
            return {"type": "string"}
        case "null":
            return {"type": "null"}
        case "map":
            return {"type": "object"}
        case "list":
            if t.item is None or not t.item.known:
                return {"type": "array"}
            return {"type": "array", "items": type_schema(t.item)}
    return {}


__all__ = [
    "OUTCOMES", "ContextField", "EvidenceSpec", "Purpose", "Rule", "Status", "conforms", "lookup", "type_schema",
]
