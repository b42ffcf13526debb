"""Validation of a request's `context` object against a purpose's context schema."""

from __future__ import annotations

from collections.abc import Sequence

import re2

from dsl import type_name
from dsl.runtime import compile_regex
from engine.policyset import ContextField, conforms


def validate_context(fields: Sequence[ContextField], context: object) -> list[str]:
    """Every problem with `context` (an empty list when it is acceptable).

    With no schema any object is accepted; with one, unknown fields are rejected so a
    typo in a client cannot silently become an undefined value in a rule.
    """
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
            elif spec.pattern is not None:
                try:
                    if compile_regex(spec.pattern).search(value) is None:
                        problems.append(f"{where}: does not match {spec.pattern}")
                except re2.error:
                    problems.append(f"{where}: schema pattern is invalid")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if spec.minimum is not None and value < spec.minimum:
                problems.append(f"{where}: must be >= {spec.minimum:g}")
            if spec.maximum is not None and value > spec.maximum:
                problems.append(f"{where}: must be <= {spec.maximum:g}")
    return problems


__all__ = ["validate_context"]
