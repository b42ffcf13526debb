"""Check stage: names, functions, arity and types of one expression, all errors collected.

The checker infers a static type for every node (kept for the compiler, which emits
inline code where a type is guaranteed) and records which facts and data documents the
expression reads. It never stops at the first problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

import re2

from dsl import ast
from dsl.diagnostics import Diagnostic, SourceText
from dsl.functions import FUNCTIONS, QUANTIFIERS
from dsl.runtime import UNDEFINED, compile_regex, regex_error
from dsl.types import (
    ANY,
    BOOL,
    LIST,
    MAP,
    NUMBER,
    ROOTS,
    STRING,
    SUBJECT_FIELDS,
    Fact,
    Type,
    compatible,
    list_of,
    type_of_value,
)


@dataclass(frozen=True, slots=True)
class FactBinding:
    """A bare name the expression may use: its type and whether run time guarantees it."""

    type: Type
    guaranteed: bool


@dataclass(frozen=True, slots=True)
class Scope:
    """What an expression can see: declared facts, the context schema, data documents."""

    facts: Mapping[str, FactBinding] = field(default_factory=dict)
    context: Mapping[str, Type] | None = None
    data: Mapping[str, object] = field(default_factory=dict)
    #: The facts a gateway provides: usable undeclared (with warning W303), typed as given.
    catalogue: Mapping[str, Fact] = field(default_factory=dict)


@dataclass(slots=True)
class Checked:
    """The result of checking one expression."""

    node: ast.Expr
    type: Type
    types: dict[int, Type]
    diagnostics: list[Diagnostic]
    facts_used: set[str]
    data_used: set[str]
    #: Guaranteed run-time types of bare fact names (the compiler may inline them).
    guaranteed: dict[str, Type]
    #: True when the value does not depend on any input (a constant condition).
    constant: bool

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def _step(value: object, step: object) -> object:
    if isinstance(value, dict) and isinstance(step, str):
        return value.get(step, UNDEFINED)
    if isinstance(value, list) and type(step) is int and 0 <= step < len(value):
        return value[step]
    return UNDEFINED


def data_value(node: ast.Expr, data: Mapping[str, object]) -> object:
    """The load-time value of a `data.` path with literal steps, or UNDEFINED."""
    steps: list[object] = []
    current = node
    while isinstance(current, (ast.Attr, ast.Index)):
        if isinstance(current, ast.Attr):
            steps.append(current.name)
        elif isinstance(current.index, ast.Literal):
            steps.append(current.index.value)
        else:
            return UNDEFINED
        current = current.obj
    if not (isinstance(current, ast.Name) and current.name == "data"):
        return UNDEFINED
    value: object = dict(data)
    for step in reversed(steps):
        value = _step(value, step)
        if value is UNDEFINED:
            break
    return value


def _suggest(name: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.7)
    return f"did you mean `{close[0]}`?" if close else None


class _Checker:
    def __init__(self, source: SourceText, scope: Scope) -> None:
        self.source = source
        self.scope = scope
        self.types: dict[int, Type] = {}
        self.diagnostics: list[Diagnostic] = []
        self.facts_used: set[str] = set()
        self.data_used: set[str] = set()
        self.guaranteed: dict[str, Type] = {}
        self.inputs = 0
        self.bound: dict[str, Type] = {}

    def error(self, code: str, message: str, span: ast.Span, hint: str | None = None) -> None:
        self.diagnostics.append(self.source.diagnostic(code, message, span.start, span.end, hint=hint))

    def warn(self, code: str, message: str, span: ast.Span, hint: str | None = None) -> None:
        self.diagnostics.append(
            self.source.diagnostic(code, message, span.start, span.end, severity="warning", hint=hint)
        )

    def check(self, node: ast.Expr) -> Type:
        result = self._infer(node)
        self.types[id(node)] = result
        return result

    def _expect_bool(self, node: ast.Expr, what: str) -> None:
        t = self.check(node)
        if t.known and t != BOOL:
            self.error("E105", f"{what} expects a bool, got {t}", node.span)

    def _infer(self, node: ast.Expr) -> Type:
        match node:
            case ast.Literal(value=value):
                return type_of_value(value)
            case ast.ListExpr(items=items):
                kinds = {self.check(item) for item in items}
                return list_of(kinds.pop() if len(kinds) == 1 else ANY)
            case ast.Name():
                return self._name(node)
            case ast.Attr():
                return self._attr(node)
            case ast.Index(obj=obj, index=index):
                obj_t, index_t = self.check(obj), self.check(index)
                if obj_t.kind == "list":
                    if index_t.known and index_t != NUMBER:
                        self.error("E105", f"a list index must be a number, got {index_t}", index.span)
                    return obj_t.item or ANY
                if obj_t.kind == "map":
                    if index_t.known and index_t != STRING:
                        self.error("E105", f"a map key must be a string, got {index_t}", index.span)
                    return self._data_value_type(node)
                if obj_t.known:
                    self.error("E105", f"cannot index a {obj_t}", node.span)
                return ANY
            case ast.Not(operand=operand):
                self._expect_bool(operand, "NOT")
                return BOOL
            case ast.BoolOp(op=op, operands=operands):
                for operand in operands:
                    self._expect_bool(operand, op.upper())
                return BOOL
            case ast.Compare():
                self._compare(node)
                return BOOL
            case ast.Arith(op=op, left=left, right=right):
                lt, rt = self.check(left), self.check(right)
                if op == "+" and {lt.kind, rt.kind} & {"string", "list"}:
                    # concatenation: fine when the other side is the same kind or unknown
                    other = rt if lt.kind in ("string", "list") else lt
                    kind = lt.kind if lt.kind in ("string", "list") else rt.kind
                    if other.known and other.kind != kind:
                        self.error("E105", f"`+` cannot join a {lt} and a {rt}", node.span)
                    return STRING if kind == "string" else LIST
                for side, t in ((left, lt), (right, rt)):
                    if t.known and t != NUMBER:
                        self.error("E105", f"`{op}` needs numbers, got {t}", side.span)
                if op in "/%" and isinstance(right, ast.Literal) and right.value == 0 and right.value is not False:
                    self.error("E108", "division by zero", right.span)
                if op == "+" and not (lt.known and rt.known):
                    return ANY
                return NUMBER
            case ast.Neg(operand=operand):
                t = self.check(operand)
                if t.known and t != NUMBER:
                    self.error("E105", f"unary `-` needs a number, got {t}", operand.span)
                return NUMBER
            case ast.Call():
                return self._call(node)
            case ast.Quantifier(kind=kind, var=var, iterable=iterable, body=body):
                items_t = self.check(iterable)
                if items_t.known and items_t.kind != "list":
                    self.error("E105", f"{kind}() iterates over a list, got {items_t}", iterable.span)
                if var in ROOTS:
                    self.error("E108", f"`{var}` is reserved and cannot name a quantifier variable", node.span)
                saved = self.bound.get(var)
                self.bound[var] = items_t.item if items_t.kind == "list" and items_t.item else ANY
                self._expect_bool(body, f"{kind}()")
                if saved is None:
                    del self.bound[var]
                else:
                    self.bound[var] = saved
                return BOOL
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _name(self, node: ast.Name) -> Type:
        name = node.name
        if name in self.bound:
            return self.bound[name]
        if name in ROOTS:
            self.inputs += 1
            if name == "data":
                self.data_used.update(self.scope.data)
            return MAP
        binding = self.scope.facts.get(name)
        self.inputs += 1
        if binding is not None:
            self.facts_used.add(name)
            if binding.guaranteed:
                self.guaranteed[name] = binding.type
            return binding.type
        provided = self.scope.catalogue.get(name)
        if provided is not None:
            self.facts_used.add(name)
            self.warn(
                "W303",
                f"fact `{name}` is used but not declared in `evidence`",
                node.span,
                hint=f"add `- {name}` to the purpose's evidence so the gateway gathers it",
            )
            return provided.type
        options = [*self.scope.facts, *ROOTS, *self.bound, *self.scope.catalogue]
        self.error("E102", f"unknown name `{name}`", node.span, hint=_suggest(name, options))
        return ANY

    def _attr(self, node: ast.Attr) -> Type:
        obj, name = node.obj, node.name
        if isinstance(obj, ast.Name) and obj.name in ROOTS and obj.name not in self.bound:
            self.types[id(obj)] = MAP
            self.inputs += 1
            root = obj.name
            if root == "context":
                if self.scope.context is None:
                    return ANY
                if name not in self.scope.context:
                    self.error(
                        "E102",
                        f"`context.{name}` is not in the purpose's context schema",
                        node.span,
                        hint=_suggest(name, list(self.scope.context)),
                    )
                    return ANY
                return self.scope.context[name]
            if root == "data":
                if name not in self.scope.data:
                    self.error(
                        "E102",
                        f"unknown data document `data.{name}`",
                        node.span,
                        hint=_suggest(name, list(self.scope.data)) or "data documents live in the `data/` folder",
                    )
                    return ANY
                self.data_used.add(name)
                return type_of_value(self.scope.data[name])
            if root == "subject":
                if name not in SUBJECT_FIELDS:
                    self.error(
                        "E102", f"unknown subject field `subject.{name}`", node.span,
                        hint=_suggest(name, list(SUBJECT_FIELDS)) or "subject has sub, scope and client_id",
                    )
                    return ANY
                return SUBJECT_FIELDS[name]
            self.facts_used.add(f"consent.{name}")  # the gateway provides every consent rules read
            return BOOL  # consent.<purpose>
        obj_t = self.check(obj)
        if obj_t.known and obj_t.kind != "map":
            self.error("E105", f"a {obj_t} has no field `{name}`", node.span)
            return ANY
        return self._data_value_type(node)

    def _data_value_type(self, node: ast.Attr | ast.Index) -> Type:
        """Inside a data document the value is known at load time: use its type."""
        if "data" in self.bound:
            return ANY
        value = data_value(node, self.scope.data)
        return ANY if value is UNDEFINED else type_of_value(value)

    def _compare(self, node: ast.Compare) -> None:
        op = node.op
        lt, rt = self.check(node.left), self.check(node.right)
        if op in ("==", "!="):
            if not compatible(lt, rt):
                always = "false" if op == "==" else "true when both are defined"
                self.error(
                    "E105", f"comparing {lt} with {rt}: values of different types are never equal ({op} is {always})",
                    node.span,
                )
        elif op in ("<", "<=", ">", ">="):
            for side, t in ((node.left, lt), (node.right, rt)):
                if t.known and t.kind not in ("number", "string"):
                    self.error("E105", f"`{op}` orders numbers or strings, got {t}", side.span)
            if lt.kind in ("number", "string") and rt.kind in ("number", "string") and lt != rt:
                self.error("E105", f"cannot order {lt} against {rt}", node.span)
        else:
            if rt.kind == "list":
                if rt.item and not compatible(lt, rt.item):
                    self.error("E105", f"a {lt} is never in a list of {rt.item}", node.span)
            elif rt.kind in ("string", "map"):
                if lt.known and lt != STRING:
                    self.error("E105", f"`{op}` on a {rt} needs a string on the left, got {lt}", node.left.span)
            elif rt.known:
                self.error("E105", f"`{op}` needs a list, string or map on the right, got {rt}", node.right.span)

    def _call(self, node: ast.Call) -> Type:
        name = node.name
        if name in QUANTIFIERS:
            for arg in node.args:
                self.check(arg)
            self.error(
                "E108", f"{name}() takes `variable in list, condition`", node.span,
                hint=f"for example {name}(x in context.items, x.amount > 100)",
            )
            return BOOL
        function = FUNCTIONS.get(name)
        if function is None:
            for arg in node.args:
                self.check(arg)
            self.error(
                "E103", f"unknown function `{name}`", node.name_span,
                hint=_suggest(name, [*FUNCTIONS, *QUANTIFIERS]) or "see docs/policy-language.md for the library",
            )
            return ANY
        arg_types = [self.check(arg) for arg in node.args]
        if len(node.args) != len(function.params):
            count = len(function.params)
            self.error(
                "E104",
                f"{name}() takes {count} argument{'s' if count != 1 else ''}, got {len(node.args)}",
                node.span,
                hint=f"for example {function.example}",
            )
            return function.returns
        for arg, expected, actual in zip(node.args, function.params, arg_types, strict=True):
            if expected.known and actual.known and expected != actual:
                self.error("E105", f"{name}() expects a {expected}, got {actual}", arg.span)
        if name == "exists" and ast.root_name(node.args[0]) is None:
            self.error("E108", "exists() takes a path such as `context.amount`", node.args[0].span)
        if name == "len" and arg_types[0].known and arg_types[0].kind not in ("string", "list", "map"):
            self.error("E105", f"len() needs a string, list or map, got {arg_types[0]}", node.args[0].span)
        if name == "matches" and isinstance(node.args[1], ast.Literal) and isinstance(node.args[1].value, str):
            try:
                compile_regex(node.args[1].value)
            except re2.error as err:
                self.error("E107", f"invalid regular expression: {regex_error(err)}", node.args[1].span)
        if name in ("now", "days_since", "years_since"):
            self.inputs += 1
        return function.returns


def check(node: ast.Expr, source: SourceText, scope: Scope | None = None) -> Checked:
    """Check one expression against a scope; every problem lands in `diagnostics`."""
    checker = _Checker(source, scope or Scope())
    result = checker.check(node)
    return Checked(
        node=node,
        type=result,
        types=checker.types,
        diagnostics=checker.diagnostics,
        facts_used=checker.facts_used,
        data_used=checker.data_used,
        guaranteed=checker.guaranteed,
        constant=checker.inputs == 0,
    )


__all__ = ["Checked", "FactBinding", "Scope", "check", "data_value"]
