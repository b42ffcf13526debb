"""Compile stage: checked ASTs -> Python source -> one code object, compiled once.

Source is generated only from AST nodes (names are identifiers the grammar accepted,
literals go through `repr` or the constant pool), compiled with `compile()` and run in
a namespace holding the helpers of `dsl.runtime` and nothing else: no builtins, no
`eval` of policy text.

Where the checker proved a value's type (declared evidence facts are validated before
any rule runs), the generated code is what a person would write by hand: `if
sanctions_listed:`. Everything else goes through the undefined-aware helpers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from dsl import ast
from dsl.checker import Checked, data_value
from dsl.functions import FUNCTIONS
from dsl.runtime import UNDEFINED, Clock, Recorder, namespace, utc_now
from dsl.types import Type

_KIND_OF_TYPE = {"bool": "bool", "number": "num", "string": "str"}
_ROOT_LOCALS = {"context": "_ctx", "subject": "_subj", "consent": "_cons"}
_COMPARE_HELPERS = {"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge",
                    "in": "_in", "not in": "_not_in"}
_ARITH_HELPERS = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}


class _Pool:
    """Constants of one program, each stored once however many rules use it."""

    def __init__(self) -> None:
        self.values: list[object] = []
        self._names: dict[int, str] = {}
        self._sets: dict[int, str] = {}

    def add(self, value: object) -> str:
        name = self._names.get(id(value))
        if name is None:
            self.values.append(value)
            name = self._names[id(value)] = f"_k{len(self.values) - 1}"
        return name

    def members(self, values: list[str]) -> str:
        """A frozenset of `values` for membership tests, shared by every rule using it."""
        name = self._sets.get(id(values))
        if name is None:
            name = self._sets[id(values)] = self.add(frozenset(values))
        return name


class _Codegen:
    """Emits one Python expression per AST node, with the kind of value it yields.

    Kinds: `bool` (always True/False), `num`, `str` (guaranteed, never undefined) and
    `value` (anything, including UNDEFINED).
    """

    def __init__(self, checked: Checked, pool: _Pool, data: Mapping[str, object], trace: bool) -> None:
        self.checked = checked
        self.pool = pool
        self.data = data
        self.trace = trace
        self.temps = itertools.count()
        self.bound: list[str] = []
        self.roots_used: set[str] = set()

    def const(self, value: object) -> str:
        return self.pool.add(value)

    def cond(self, node: ast.Expr) -> str:
        if isinstance(node, ast.Literal):  # `(0 is True)` compiles, but with a SyntaxWarning
            return repr(node.value is True)
        code, kind = self.expr(node)
        return code if kind == "bool" else f"({code} is True)"

    def expr(self, node: ast.Expr, wrap: bool = True) -> tuple[str, str]:
        code, kind = self._expr(node)
        if self.trace and wrap and isinstance(node, (ast.Name, ast.Attr, ast.Index)):
            path = ast.path_text(node)
            root = ast.root_name(node)
            if path is not None and root is not None and root.name not in self.bound:
                return f"_rd({path!r}, {code})", kind
        return code, kind

    def _expr(self, node: ast.Expr) -> tuple[str, str]:
        match node:
            case ast.Literal(value=value):
                if isinstance(value, bool):
                    return repr(value), "bool"
                if isinstance(value, int):
                    return repr(value), "num"
                if isinstance(value, float):
                    return (repr(value) if value == value and abs(value) != float("inf") else self.const(value)), "num"
                if isinstance(value, str):
                    return repr(value), "str"
                return "None", "value"
            case ast.ListExpr(items=items):
                if all(isinstance(item, ast.Literal) for item in items):
                    return self.const([item.value for item in items if isinstance(item, ast.Literal)]), "value"
                return "_mklist(" + ", ".join(self.expr(item)[0] for item in items) + ")", "value"
            case ast.Name(name=name):
                if name in self.bound:
                    return f"v_{name}", "value"
                if name == "data":
                    return self.const(dict(self.data)), "value"
                if name in _ROOT_LOCALS:
                    self.roots_used.add(name)
                    return _ROOT_LOCALS[name], "value"
                guaranteed = self.checked.guaranteed.get(name)
                if guaranteed is not None:
                    return f"f_{name}", _KIND_OF_TYPE.get(guaranteed.kind, "value")
                return f"_f.get({name!r}, _U)", "value"
            case ast.Attr() | ast.Index():
                constant = self._data_constant(node)
                if constant is not UNDEFINED:
                    kind = _KIND_OF_TYPE.get(self._type(node).kind, "value")
                    if isinstance(constant, bool) or constant is None:
                        return repr(constant), kind
                    return self.const(constant), kind
                obj, _ = self.expr(node.obj, wrap=False)
                if isinstance(node, ast.Attr):
                    return f"_key({obj}, {node.name!r})", "value"
                index, _ = self.expr(node.index)
                return f"_key({obj}, {index})", "value"
            case ast.Not(operand=operand):
                return f"(not {self.cond(operand)})", "bool"
            case ast.BoolOp(op=op, operands=operands):
                return "(" + f" {op} ".join(self.cond(o) for o in operands) + ")", "bool"
            case ast.Compare():
                return self._compare(node), "bool"
            case ast.Arith(op=op, left=left, right=right):
                return f"{_ARITH_HELPERS[op]}({self.expr(left)[0]}, {self.expr(right)[0]})", "value"
            case ast.Neg(operand=operand):
                return f"_neg({self.expr(operand)[0]})", "value"
            case ast.Call(name=name, args=args):
                if name == "exists":
                    return f"({self.expr(args[0])[0]} is not _U)", "bool"
                function = FUNCTIONS[name]
                code = f"{function.helper}(" + ", ".join(self.expr(a)[0] for a in args) + ")"
                return code, "bool" if function.predicate else ("num" if name == "now" else "value")
            case ast.Quantifier(kind=kind, var=var, iterable=iterable, body=body):
                sequence, _ = self.expr(iterable)
                self.bound.append(var)
                try:
                    condition = self.cond(body)
                finally:
                    self.bound.pop()
                return f"_{kind}({sequence}, lambda v_{var}: {condition})", "bool"
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _type(self, node: ast.Expr) -> Type:
        return self.checked.types.get(id(node), Type("any"))

    def _data_constant(self, node: ast.Attr | ast.Index) -> object:
        """The value of a `data.` path with literal steps, resolved at compile time."""
        return UNDEFINED if "data" in self.bound else data_value(node, self.data)

    def _compare(self, node: ast.Compare) -> str:
        op = node.op
        left, lk = self.expr(node.left)
        right, rk = self.expr(node.right)
        if not self.trace:
            if lk == rk and lk in ("num", "str"):
                return f"({left} {op} {right})"
            if lk == rk == "bool" and op in ("==", "!="):
                return f"({left} {'is' if op == '==' else 'is not'} {right})"
            if op == "==" and "str" in (lk, rk):
                return f"({left} == {right})"
            if op in ("<", "<=", ">", ">=") and "value" in (lk, rk) and {lk, rk} <= {"value", "num", "str"}:
                known = rk if lk == "value" else lk
                if known != "value":
                    t = f"_t{next(self.temps)}"
                    test = "in _NUM" if known == "num" else "is _str"
                    if lk == "value":
                        return f"(({t} := {left}).__class__ {test} and {t} {op} {right})"
                    return f"(({t} := {right}).__class__ {test} and {left} {op} {t})"
            if op in ("in", "not in"):
                fast = self._membership(node, left, lk)
                if fast is not None:
                    return fast
        return f"{_COMPARE_HELPERS[op]}({left}, {right})"

    def _membership(self, node: ast.Compare, left: str, lk: str) -> str | None:
        """`x in <constant list of strings>` becomes a set lookup guarded by a type test."""
        values: object = UNDEFINED
        if isinstance(node.right, ast.ListExpr) and all(isinstance(i, ast.Literal) for i in node.right.items):
            values = [i.value for i in node.right.items if isinstance(i, ast.Literal)]
        elif isinstance(node.right, (ast.Attr, ast.Index)):
            values = self._data_constant(node.right)
        if not (isinstance(values, list) and values and all(type(v) is str for v in values)):
            return None
        members = self.pool.members(values)  # type: ignore[arg-type]
        if lk == "str":
            test = f"({left} in {members})"
        else:
            t = f"_t{next(self.temps)}"
            test = f"(({t} := {left}).__class__ is _str and {t} in {members})"
            if node.op == "not in":
                return f"(({t} := {left}) is not _U and ({t}.__class__ is not _str or {t} not in {members}))"
        return test if node.op == "in" else f"({left} not in {members})"


@dataclass(frozen=True, slots=True)
class Required:
    """A fact that must be present with this type before any rule runs."""

    name: str
    type: Type


def _type_test(var: str, t: Type) -> str:
    """Python that is true when `var` does NOT hold a value of type `t`."""
    match t.kind:
        case "bool":
            return f"{var}.__class__ is not _bool"
        case "number":
            return f"{var}.__class__ not in _NUM"
        case "string":
            return f"{var}.__class__ is not _str"
        case "list":
            if t.item is not None and t.item.kind == "string":
                return f"not _str_list({var})"
            return f"{var}.__class__ is not _list"
        case "map":
            return f"{var}.__class__ is not _dict"
        case "null":
            return f"{var} is not None"
    return f"{var} is _U"


def _fetch(name: str) -> str:
    if name.startswith("consent."):
        return f"_key(_f.get('consent', _U), {name.split('.', 1)[1]!r})"
    return f"_f.get({name!r}, _U)"


Outcome = TypeVar("Outcome")

#: The facts mapping a compiled program reads: JSON-like values by name.
Facts: TypeAlias = dict[str, object]


@dataclass(frozen=True, slots=True)
class Program(Generic[Outcome]):
    """A compiled rule list: `run(facts)` returns the outcome of the first match."""

    run: Callable[[Facts], Outcome | None]
    source: str


#: Rules per generated function. Small policies compile to a single function (the
#: form a person would write); large ones to a chain of functions compiled one by one,
#: which keeps the compiler's peak memory small.
CHUNK_SIZE = 200


def compile_program(
    conditions: Sequence[Checked | None],
    outcomes: Sequence[Outcome],
    default: Outcome,
    required: Sequence[Required] = (),
    invalid: Outcome | None = None,
    data: Mapping[str, object] | None = None,
    clock: Clock = utc_now,
    recorder: Recorder | None = None,
    failures: Mapping[tuple[str | None, ...], Outcome] | None = None,
) -> Program[Outcome]:
    """Compile an ordered rule list into one function of the facts mapping.

    `conditions[i]` is the checked condition of rule `i` (None for `else`); the function
    returns `outcomes[i]` for the first rule that matches, `default` when none does, and
    `invalid` when a `required` fact is missing or of the wrong type (or, when the
    `failures` mapping holds one for the per-fact verdicts of `compile_evidence_check`,
    that prepared outcome: the caller may fill the mapping as it goes). With a `recorder`
    the function reports each rule it tries (`begin(i)`/`end(matched)`), the paths it
    reads and the mismatches it meets; without one it is the fast path. Outcomes must
    not be None.
    """
    trace = recorder is not None
    pool = _Pool()
    data = data or {}
    bodies: list[list[str]] = [[]]
    roots: set[str] = set()
    closed = False
    for i, checked in enumerate(conditions):
        body = bodies[-1]
        if checked is None:
            if trace:
                body += [f"    _rec.begin({i})", "    _rec.end(True)"]
            body.append(f"    return _o{i}")
            closed = True
            break
        gen = _Codegen(checked, pool, data, trace)
        condition = gen.cond(checked.node)
        roots |= gen.roots_used
        if trace:
            body += [f"    _rec.begin({i})", f"    _m = {condition}", "    _rec.end(_m)", "    if _m:"]
        else:
            body.append(f"    if {condition}:")
        body.append(f"        return _o{i}")
        if (i + 1) % CHUNK_SIZE == 0 and i + 1 < len(conditions):
            bodies.append([])
    prelude = [f"    f_{req.name} = {_fetch(req.name)}" for req in required if "." not in req.name]
    if required and not trace:
        # one test for the common case; on failure, the per-fact verdicts pick a
        # prepared outcome (see compile_evidence_check for the same verdicts)
        values = [f"f_{req.name}" if "." not in req.name else _fetch(req.name) for req in required]
        tests = [_type_test(value, req.type) for value, req in zip(values, required, strict=True)]
        prelude.append("    if " + " or ".join(f"({test})" for test in tests) + ":")
        prelude.append(f"        return _failures.get({_verdicts(values, tests)}, _invalid)")
    for root in sorted(roots):
        prelude.append(f"    {_ROOT_LOCALS[root]} = _f.get({root!r}, _U)")
    env = namespace(clock, recorder)
    env.update({f"_k{i}": value for i, value in enumerate(pool.values)})
    env.update({f"_o{i}": outcome for i, outcome in enumerate(outcomes)})
    env["_default"] = default
    env["_invalid"] = invalid
    env["_failures"] = failures if failures is not None else {}
    env["_rec"] = recorder
    ending = [] if closed else ["    return _default"]
    if len(bodies) == 1:
        sources = ["\n".join(["def _program(_f):", *prelude, *bodies[0], *ending]) + "\n"]
    else:
        params = ", ".join(
            ["_f", *(f"f_{r.name}" for r in required if "." not in r.name), *(_ROOT_LOCALS[r] for r in sorted(roots))]
        )
        sources = [
            "\n".join([f"def _chunk{n}({params}):", *body]) + "\n" for n, body in enumerate(bodies)
        ]
        calls: list[str] = []
        for n in range(len(bodies)):
            calls += [f"    _r = _chunk{n}({params})", "    if _r is not None:", "        return _r"]
        sources.append("\n".join(["def _program(_f):", *prelude, *calls, *ending]) + "\n")
    for source in sources:
        # each source is generated from the AST above, never from policy text
        exec(compile(source, "<policy>", "exec"), env)
    return Program(run=env["_program"], source="".join(sources))


def _verdicts(values: Sequence[str], tests: Sequence[str]) -> str:
    """A tuple expression: per fact None (fine), 'missing' or 'invalid'."""
    items = [
        f"(None if not ({test}) else 'missing' if {value} is _U else 'invalid')"
        for value, test in zip(values, tests, strict=True)
    ]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def compile_evidence_check(required: Sequence[Required]) -> Callable[[Facts], tuple[str | None, ...]]:
    """A function giving, for each required fact, None (fine), "missing" or "invalid"."""
    lines = ["def _evidence(_f):"]
    values = [f"_v{i}" for i in range(len(required))]
    lines += [f"    {value} = {_fetch(req.name)}" for value, req in zip(values, required, strict=True)]
    tests = [_type_test(value, req.type) for value, req in zip(values, required, strict=True)]
    lines.append(f"    return {_verdicts(values, tests)}")
    env = namespace()
    exec(compile("\n".join(lines) + "\n", "<evidence>", "exec"), env)  # generated from fact names only
    function: Callable[[Facts], tuple[str | None, ...]] = env["_evidence"]
    return function


def compile_expression(
    checked: Checked, data: Mapping[str, object] | None = None, clock: Clock = utc_now
) -> Callable[[Facts], object]:
    """A function computing one expression's value (or UNDEFINED) from a facts mapping.

    Used by the REPL and tests; no fact is treated as guaranteed.
    """
    unguarded = Checked(
        node=checked.node, type=checked.type, types=checked.types, diagnostics=checked.diagnostics,
        facts_used=checked.facts_used, data_used=checked.data_used, guaranteed={}, constant=checked.constant,
    )
    pool = _Pool()
    gen = _Codegen(unguarded, pool, data or {}, trace=False)
    code, _ = gen.expr(checked.node)
    lines = ["def _value(_f):"]
    lines += [f"    {_ROOT_LOCALS[root]} = _f.get({root!r}, _U)" for root in sorted(gen.roots_used)]
    lines.append(f"    return {code}")
    env = namespace(clock)
    env.update({f"_k{i}": value for i, value in enumerate(pool.values)})
    exec(compile("\n".join(lines) + "\n", "<expression>", "exec"), env)
    function: Callable[[Facts], object] = env["_value"]
    return function


__all__ = ["Facts", "Program", "Required", "compile_evidence_check", "compile_expression", "compile_program"]
