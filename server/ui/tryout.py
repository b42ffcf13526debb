"""The Try page: a form generated from a purpose, read back into the facts of a decision.

    form = TryForm.blank(purpose)           one field per declared fact, consent read and
                                            context field, each typed
    facts = form.fill(posted)               the facts, or None with `field.error` set
    decision = policy_set.decide(purpose.name, facts, explain=True)
    curl_command(url, purpose, facts, bearer), as_test_case(name, facts, decision)

The checks are the data API's: the context against the purpose's schema (the same
messages, each next to its field) and a declared fact of another type than declared. A
field left empty (or `missing`) is left out of the facts. A try is not a decision of the
gateway: it is neither counted, nor audited, nor recorded.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from dsl import UNDEFINED, Type, type_name
from engine import Decision, Purpose
from engine.purpose import conforms, lookup
from server import json_codec

Control = Literal["choice", "select", "number", "text", "json"]
_MISSING = ""


@dataclass(slots=True)
class FormField:
    """One input of the form. `name` is the fact's path (`is_pep`, `consent.registry_check`,
    `context.amount`), which is also the form control's name."""

    name: str
    control: Control
    notes: tuple[str, ...] = ()
    #: (value, label) of a choice's radio buttons or a select's options
    options: tuple[tuple[str, str], ...] = ()
    integer: bool = False
    value: str = _MISSING
    error: str | None = None

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")


@dataclass(slots=True)
class TryForm:
    purpose: Purpose
    facts: list[FormField]
    context: list[FormField]
    #: problems that belong to no field
    errors: list[str] = field(default_factory=list)

    @classmethod
    def blank(cls, purpose: Purpose) -> TryForm:
        facts = [_fact_field(spec.name, spec.type, spec.expected) for spec in purpose.evidence]
        declared = set(purpose.facts)
        facts += [
            FormField(f"consent.{name}", "choice", ("bool", "consent the rules read"), _BOOLEAN)
            for name in purpose.consents_read if f"consent.{name}" not in declared
        ]
        context = [_context_field(spec) for spec in purpose.context]
        return cls(purpose, facts, context)

    @property
    def fields(self) -> list[FormField]:
        return [*self.facts, *self.context]

    def fill(self, posted: Mapping[str, str]) -> dict[str, Any] | None:
        """Set each field's value from `posted`; the facts they make, or None when a field
        has an error (then `error` says which and why)."""
        facts: dict[str, Any] = {}
        for item in self.fields:
            item.value = posted.get(item.name, _MISSING).strip() if item.control != "text" else posted.get(item.name, "")
            try:
                value = _parse(item)
            except ValueError as err:
                item.error = str(err)
                continue
            if value is not UNDEFINED:
                _put(facts, item.name, value)
        by_name = {item.name: item for item in self.fields}
        for spec in self.purpose.evidence:
            value = lookup(facts, spec.name)
            if spec.type.known and value is not UNDEFINED and not conforms(value, spec.type):
                by_name[spec.name].error = f"expected {spec.type}, got {type_name(value)}"
        for problem in self.purpose.validate_context(facts.get("context")):
            where, _, message = problem.partition(": ")
            target = by_name.get(where)
            if target is None:
                self.errors.append(problem)
            elif target.error is None:
                target.error = message
        if self.errors or any(item.error for item in self.fields):
            return None
        return facts


_BOOLEAN = (("true", "true"), ("false", "false"), (_MISSING, "missing"))


def _fact_field(name: str, t: Type, expected: object) -> FormField:
    notes = [str(t)]
    if expected is not UNDEFINED:
        notes.append(f"expected {json_codec.dumps(expected).decode()}")
    return FormField(name, _control(t), tuple(notes), _BOOLEAN if t.kind == "bool" else ())


def _control(t: Type) -> Control:
    return {"bool": "choice", "number": "number", "string": "text"}.get(t.kind, "json")  # type: ignore[return-value]


def _context_field(spec: Any) -> FormField:
    notes = [str(spec.type) if not spec.integer else "integer"]
    if spec.required:
        notes.append("required")
    if spec.pattern is not None:
        notes.append(f"pattern {spec.pattern}")
    if spec.minimum is not None:
        notes.append(f">= {spec.minimum:g}")
    if spec.maximum is not None:
        notes.append(f"<= {spec.maximum:g}")
    if spec.max_length is not None:
        notes.append(f"at most {spec.max_length} characters")
    name = f"context.{spec.name}"
    if spec.enum is not None:
        options = tuple((json_codec.dumps(v).decode(), json_codec.dumps(v).decode()) for v in spec.enum)
        return FormField(name, "select", tuple(notes), ((_MISSING, "missing"), *options))
    control = _control(spec.type)
    return FormField(name, control, tuple(notes), _BOOLEAN if control == "choice" else (), integer=spec.integer)


def _parse(item: FormField) -> object:
    text = item.value
    if item.control == "text":
        return UNDEFINED if text == "" else text
    if text == _MISSING:
        return UNDEFINED
    if item.control in ("choice", "select"):
        if text not in {value for value, _ in item.options}:
            raise ValueError("choose one of the options")
        return json_codec.loads(text)
    try:
        value = json_codec.loads(text)
    except ValueError:
        raise ValueError("enter a number" if item.control == "number" else "enter a JSON value") from None
    if item.control == "number" and (value.__class__ not in (int, float)):
        raise ValueError("enter a number")
    if json_codec.non_finite_path(text.encode(), value) is not None:  # NaN, Infinity, 1e999: the data API refuses them
        raise ValueError("enter a finite number")
    return value


def _put(facts: dict[str, Any], name: str, value: object) -> None:
    *parents, last = name.split(".")
    target = facts
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def curl_command(url: str, purpose: str, facts: Mapping[str, Any], bearer: bool) -> str:
    """The same question to the data API (`url`: the gateway's base URL), explained; with
    `bearer`, the token is read from `$IDGW_TOKEN` rather than written out."""
    body = json_codec.dumps({"input": facts}).decode()
    lines = [f"curl -sS -X POST {shlex.quote(f'{url}/v1/data/{purpose}?explain=true')}",
             "-H 'content-type: application/json'"]
    if bearer:
        lines.append('-H "authorization: Bearer $IDGW_TOKEN"')
    lines.append(f"-d {shlex.quote(body)}")
    return " \\\n  ".join(lines)


def as_test_case(name: str, facts: Mapping[str, Any], decision: Decision) -> str:
    """A test case expecting `decision`, indented to go under `cases:` of a test file."""
    expect: dict[str, Any] = {"status": decision.status, "reason": decision.reason}
    if decision.conditions:
        expect["conditions"] = list(decision.conditions)
    lines = [
        f"- name: {_flow(name)}",
        f"  input: {_flow(dict(facts))}",
        f"  expect: {_flow(expect)}",
    ]
    return "\n".join("  " + line for line in lines) + "\n"


def _flow(value: object) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 16, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


__all__ = ["FormField", "TryForm", "as_test_case", "curl_command"]
