"""AST of the rule language: small frozen nodes with a source span and no behaviour.

Spans are character offsets into the expression text; `SourceText` maps them to file
positions. The parser's transformer is the only producer of these nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral
from typing import TypeAlias

Scalar: TypeAlias = bool | int | float | str | None


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Literal:
    value: Scalar
    span: Span


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Attr:
    obj: Expr
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Index:
    obj: Expr
    index: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: TypingLiteral["and", "or"]
    operands: tuple[Expr, ...]
    span: Span


CompareOp = TypingLiteral["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
ArithOp = TypingLiteral["+", "-", "*", "/", "%"]


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Arith:
    op: ArithOp
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Quantifier:
    """`any(x in items, body)` / `all(x in items, body)`; `var` is bound inside `body`."""

    kind: TypingLiteral["any", "all"]
    var: str
    iterable: Expr
    body: Expr
    span: Span


Expr: TypeAlias = (
    Literal | ListExpr | Name | Attr | Index | Not | BoolOp | Compare | Arith | Neg | Call | Quantifier
)


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of a node, in source order."""
    match node:
        case Literal() | Name():
            return ()
        case ListExpr(items=items):
            return items
        case Attr(obj=obj):
            return (obj,)
        case Index(obj=obj, index=index):
            return (obj, index)
        case Not(operand=operand) | Neg(operand=operand):
            return (operand,)
        case BoolOp(operands=operands):
            return operands
        case Compare(left=left, right=right) | Arith(left=left, right=right):
            return (left, right)
        case Call(args=args):
            return args
        case Quantifier(iterable=iterable, body=body):
            return (iterable, body)
    raise TypeError(f"not an expression node: {node!r}")


def walk(node: Expr) -> list[Expr]:
    """Every node of the tree, parents before children."""
    out: list[Expr] = []
    stack: list[Expr] = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(children(current)))
    return out


def path_text(node: Expr) -> str | None:
    """`context.items[0]` for a path of names, attributes and literal indexes, else None."""
    match node:
        case Name(name=name):
            return name
        case Attr(obj=obj, name=name):
            base = path_text(obj)
            return None if base is None else f"{base}.{name}"
        case Index(obj=obj, index=Literal(value=value)) if isinstance(value, (int, str)) and not isinstance(
            value, bool
        ):
            base = path_text(obj)
            if base is None:
                return None
            return f"{base}[{value!r}]" if isinstance(value, str) else f"{base}[{value}]"
    return None


def root_name(node: Expr) -> Name | None:
    """The `Name` a path starts from (`context` for `context.a[0].b`)."""
    while isinstance(node, (Attr, Index)):
        node = node.obj
    return node if isinstance(node, Name) else None


__all__ = [
    "Arith",
    "ArithOp",
    "Attr",
    "BoolOp",
    "Call",
    "Compare",
    "CompareOp",
    "Expr",
    "Index",
    "ListExpr",
    "Literal",
    "Name",
    "Neg",
    "Not",
    "Quantifier",
    "Scalar",
    "Span",
    "children",
    "path_text",
    "root_name",
    "walk",
]
