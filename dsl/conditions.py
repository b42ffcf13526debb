"""Prepare stage: condition text -> a `Condition`, a checked *shape* and its literal values.

Large policy sets are usually generated: thousands of rules of a few shapes that differ
only in their string and number literals (`context.country == "C17" AND context.amount
> 500`). The first condition of a shape is parsed and checked; the shape keeps that
checked tree with its literals marked as parameters, and every later condition of the
same shape is only scanned for its literal values: no parse, no check. The compiler
generates code per shape (literals inlined, or passed as parameters) and the rule index
reads the literal values to build its tables.

A shape is reused only when no check result can depend on a literal's value: the
template checked without any diagnostic, is not constant, and has no literal where the
checker or the compiler looks at the value (a regular expression, a divisor, an index).
Every other condition is parsed and checked on its own, exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl import ast
from dsl.checker import Checked, Scope, check
from dsl.diagnostics import SourceText
from dsl.parser import MAX_EXPRESSION_LENGTH, literal_shape, parse_literals


@dataclass(frozen=True, slots=True, eq=False)
class Shape:
    """A checked condition whose string and number literals may be parameters."""

    checked: Checked
    #: id(Literal node of `checked.node`) -> index of its value in `Condition.values`.
    params: dict[int, int]
    #: For each parameter: the literal is the negation of the number written (`-5`).
    negated: tuple[bool, ...] = ()

    @property
    def minus(self) -> bool:
        return True in self.negated


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """One rule's condition: its shape and the values of the shape's parameters."""

    shape: Shape
    values: tuple[ast.Scalar, ...] = ()

    @property
    def checked(self) -> Checked:
        return self.shape.checked

    @property
    def node(self) -> ast.Expr:
        return self.shape.checked.node

    def value(self, node: ast.Literal) -> ast.Scalar:
        """The value this condition gives to a literal of its shape."""
        index = self.shape.params.get(id(node))
        return node.value if index is None else self.values[index]


def as_condition(checked: Checked) -> Condition:
    """A condition compiled exactly as checked (no parameters)."""
    return Condition(Shape(checked, {}))


class Shapes:
    """The shapes met so far under one scope (one purpose's facts, context and data)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._shapes: dict[str, Shape | None] = {}

    def instance(self, text: str) -> Condition | None:
        """The condition of `text` if it is an instance of a shape met before, else None."""
        found = literal_shape(text) if len(text) <= MAX_EXPRESSION_LENGTH else None
        if found is None:
            return None
        shape = self._shapes.get(found[0])
        if shape is None:
            return None
        written = found[1]
        if not shape.minus:
            return Condition(shape, written)
        values = tuple(
            -v if minus else v  # type: ignore[operator]
            for v, minus in zip(written, shape.negated, strict=True)
        )
        return Condition(shape, values)

    def prepare(self, source: SourceText) -> Condition:
        """The condition of `source`; raise `ParseFailure` when it does not parse.

        The diagnostics of a condition that is not an instance of a known shape are in
        `condition.checked.diagnostics`; a shape's instances have none.
        """
        known = self.instance(source.text)
        if known is not None:
            return known
        parsed = parse_literals(source)
        checked = check(parsed.node, source, self.scope)
        if parsed.literals is None or parsed.shape in self._shapes or not _reusable(checked, parsed.literals):
            if parsed.literals is not None and parsed.shape not in self._shapes:
                self._shapes[parsed.shape] = None  # not reusable: every instance parsed on its own
            return as_condition(checked)
        shape = Shape(checked, parsed.literals, parsed.negated)
        self._shapes[parsed.shape] = shape
        return Condition(shape, parsed.values)


def _reusable(checked: Checked, literals: dict[int, int]) -> bool:
    """No check or compile decision of this tree depends on the value of a parameter."""
    if checked.diagnostics or checked.constant or not literals:
        return False
    if checked.type.known and checked.type.kind != "bool":  # the loader reports it (E105)
        return False
    for node in ast.walk(checked.node):
        sensitive: tuple[ast.Expr, ...] = ()
        match node:
            case ast.Call(name="matches", args=args) if len(args) == 2:
                sensitive = (args[1],)
            case ast.Arith(op="/" | "%", right=right):
                sensitive = (right,)
            case ast.Index(index=index):
                sensitive = (index,)
        for part in sensitive:
            if any(id(item) in literals for item in ast.walk(part)):
                return False
    return True


__all__ = ["Condition", "Shape", "Shapes", "as_condition"]
