"""A slow, obvious tree-walking interpreter of the rule language, for cross-checking.

It restates the semantics of docs/policy-language.md (sections 4 to 6) directly on `dsl.ast` nodes and shares no
code with `dsl.runtime`'s helpers or `dsl.compiler`: property tests run both on the
same expression and facts and demand the same answer.

- a missing path is UNDEFINED; a comparison or predicate with an undefined operand is
  false; a value function, arithmetic or list literal with one is undefined;
- NOT is true unless its operand is exactly True; AND/OR count only True as true;
- values of different types are never equal (ints and floats are both numbers);
  ordering works on number/number and string/string only;
- `in`: list membership by strict equality, substring, map key; `not in` is false when
  membership cannot be decided;
- division or modulo by zero, overflow and non-finite results are undefined;
- any() is false on an empty list, all() true; both are false on a non-list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import re2

from dsl import ast
from dsl.runtime import UNDEFINED

_UNBOUND = object()
#: Results of `*` on two ints beyond this many bits are undefined (a resource limit).
MAX_PRODUCT_BITS = 4096
MAX_CONCAT_LENGTH = 1_000_000


def is_number(value: object) -> bool:
    return type(value) in (int, float)


def strictly_equal(a: object, b: object) -> bool:
    if is_number(a) and is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return set(a) == set(b) and all(strictly_equal(a[k], b[k]) for k in a)
    return a == b


def membership(item: object, container: object) -> bool | None:
    """True/False when `item in container` is meaningful, None when it is not."""
    if item is UNDEFINED or container is UNDEFINED:
        return None
    if isinstance(container, list):
        return any(strictly_equal(item, element) for element in container)
    if type(item) is str and type(container) in (str, dict):
        return item in container  # type: ignore[operator]
    return None


def parse_time(value: object) -> datetime | None:
    if is_number(value):
        try:  # NaN, infinities and huge numbers raise
            return datetime.fromtimestamp(value, UTC)  # type: ignore[arg-type]
        except (OverflowError, OSError, ValueError):
            return None
    if type(value) is str and 0 < len(value) <= 40:
        text = value[:-1] + "+00:00" if value.endswith("Z") else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _arith(op: str, a: object, b: object) -> object:
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if is_number(a) and is_number(b):
        x: Any = a
        y: Any = b
        if op in ("/", "%") and y == 0:
            return UNDEFINED
        if op == "*" and type(x) is int and type(y) is int and x.bit_length() + y.bit_length() > MAX_PRODUCT_BITS:
            return UNDEFINED
        try:
            result = {"+": x + y, "-": x - y}[op] if op in "+-" else _multiplicative(op, x, y)
        except OverflowError:
            return UNDEFINED
        if isinstance(result, float) and not math.isfinite(result):
            return UNDEFINED
        return result
    if op == "+" and type(a) is type(b) and type(a) in (str, list):
        if len(a) + len(b) > MAX_CONCAT_LENGTH:  # type: ignore[arg-type]
            return UNDEFINED
        return a + b  # type: ignore[operator]
    return UNDEFINED


def _multiplicative(op: str, x: Any, y: Any) -> Any:
    if op == "*":
        return x * y
    if op == "/":
        return x / y
    return x % y


def _search(pattern: str, text: str) -> bool:
    """RE2 search (the language's regex dialect); an invalid pattern never matches."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options).search(text) is not None
    except re2.error:
        return False


def _lookup(obj: object, key: object) -> object:
    if isinstance(obj, dict) and type(key) is str:
        return obj.get(key, UNDEFINED)
    if isinstance(obj, list) and type(key) is int:
        return obj[key] if 0 <= key < len(obj) else UNDEFINED
    return UNDEFINED


class Interpreter:
    """Evaluates expressions against one facts mapping."""

    def __init__(
        self,
        facts: Mapping[str, object],
        data: Mapping[str, object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.facts = facts
        self.data = dict(data or {})
        self.clock = clock or (lambda: datetime.now(UTC))
        self.variables: dict[str, object] = {}

    def holds(self, node: ast.Expr) -> bool:
        return self.value(node) is True

    def value(self, node: ast.Expr) -> object:
        if isinstance(node, ast.Literal):
            return node.value
        if isinstance(node, ast.ListExpr):
            items = [self.value(item) for item in node.items]
            return UNDEFINED if any(item is UNDEFINED for item in items) else items
        if isinstance(node, ast.Name):
            if node.name in self.variables:
                return self.variables[node.name]
            if node.name == "data":
                return self.data
            return self.facts.get(node.name, UNDEFINED)
        if isinstance(node, ast.Attr):
            return _lookup(self.value(node.obj), node.name)
        if isinstance(node, ast.Index):
            return _lookup(self.value(node.obj), self.value(node.index))
        if isinstance(node, ast.Not):
            return not self.holds(node.operand)
        if isinstance(node, ast.BoolOp):
            if node.op == "and":
                return all(self.holds(operand) for operand in node.operands)
            return any(self.holds(operand) for operand in node.operands)
        if isinstance(node, ast.Compare):
            return self._compare(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, ast.Arith):
            return _arith(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, ast.Neg):
            operand = self.value(node.operand)
            return -operand if is_number(operand) else UNDEFINED  # type: ignore[operator]
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Quantifier):
            return self._quantify(node)
        raise TypeError(f"not an expression node: {node!r}")

    def _compare(self, op: str, a: object, b: object) -> bool:
        if op == "in":
            return membership(a, b) is True
        if op == "not in":
            return membership(a, b) is False
        if a is UNDEFINED or b is UNDEFINED:
            return False
        if op == "==":
            return strictly_equal(a, b)
        if op == "!=":
            return not strictly_equal(a, b)
        comparable = (is_number(a) and is_number(b)) or (type(a) is str and type(b) is str)
        if not comparable:
            return False
        x: Any = a
        y: Any = b
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]

    def _call(self, node: ast.Call) -> object:
        name = node.name
        if name == "exists":
            return self.value(node.args[0]) is not UNDEFINED
        if name == "now":
            return self.clock().timestamp()
        args = [self.value(arg) for arg in node.args]
        if name == "len":
            return len(args[0]) if type(args[0]) in (str, list, dict) else UNDEFINED  # type: ignore[arg-type]
        if name in ("lower", "upper"):
            text = args[0]
            if type(text) is not str:
                return UNDEFINED
            return text.lower() if name == "lower" else text.upper()
        if name in ("startswith", "endswith", "matches"):
            text, other = args
            if type(text) is not str or type(other) is not str:
                return False
            if name == "startswith":
                return text.startswith(other)
            if name == "endswith":
                return text.endswith(other)
            return _search(other, text)
        if name == "contains":
            return membership(args[1], args[0]) is True
        if name in ("days_since", "years_since"):
            when = parse_time(args[0])
            if when is None:
                return UNDEFINED
            now = self.clock()
            if name == "days_since":
                return (now - when).days
            born, today = when.date(), now.date()
            had_birthday = (today.month, today.day) >= (born.month, born.day)
            return today.year - born.year - (0 if had_birthday else 1)
        raise ValueError(f"unknown function {name}")

    def _quantify(self, node: ast.Quantifier) -> bool:
        items = self.value(node.iterable)
        if not isinstance(items, list):
            return False
        saved = self.variables.get(node.var, _UNBOUND)
        results = []
        try:
            for item in items:
                self.variables[node.var] = item
                results.append(self.holds(node.body))
                if node.kind == "any" and results[-1]:
                    break
                if node.kind == "all" and not results[-1]:
                    break
        finally:
            if saved is _UNBOUND:
                self.variables.pop(node.var, None)
            else:
                self.variables[node.var] = saved
        return any(results) if node.kind == "any" else all(results)


def evaluate(
    node: ast.Expr,
    facts: Mapping[str, object],
    data: Mapping[str, object] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> object:
    """The value of `node` (possibly UNDEFINED) for these facts."""
    return Interpreter(facts, data, clock).value(node)


def holds(
    node: ast.Expr,
    facts: Mapping[str, object],
    data: Mapping[str, object] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> bool:
    """Whether `node` as a rule condition matches these facts."""
    return Interpreter(facts, data, clock).holds(node)


__all__ = ["Interpreter", "evaluate", "holds", "membership", "strictly_equal"]
