"""Code generation for one condition: a checked tree -> a Python expression and its kind.

Source is generated only from AST nodes: names are identifiers the grammar accepted,
literals go through `repr` or the constant pool. Where the checker proved a value's type
(declared evidence facts are validated before any rule runs) the code is what a person
would write by hand, `if sanctions_listed:`; everything else keeps the undefined
semantics of `dsl.runtime`, inline where that is cheaper than a helper call.

Two things make the code of a rule list cheaper than its rules one by one:

- **Shared values.** A `Shared` names the sub-expressions that several rules of one
  generated function compute (`context.country`, `lower(context.region)`, "is
  `context.amount` a number"): each is computed once, in a statement placed just before
  the first rule that needs it, and read from a local after that.
- **Parameters.** A `Literals` writes the literals of one rule's shape: inlined, or as
  names bound when a function is made, so one code object serves every rule of a shape.

The explaining variant (`trace=True`) shares nothing and calls the helpers that report
reads and type mismatches.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from typing import Any

from dsl import ast
from dsl.checker import Checked, data_value
from dsl.conditions import Condition, Shape
from dsl.functions import FUNCTIONS
from dsl.runtime import UNDEFINED
from dsl.types import Type

_KIND_OF_TYPE = {"bool": "bool", "number": "num", "string": "str"}
#: Locals holding the roots of the facts mapping.
ROOT_LOCALS = {"context": "_ctx", "subject": "_subj", "consent": "_cons"}
_COMPARE_HELPERS = {"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge",
                    "in": "_in", "not in": "_not_in"}
_ARITH_HELPERS = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_TYPE_TESTS = {"num": "in _NUM", "str": "is _str"}


class Pool:
    """Constants of one program, each stored once however many rules use it."""

    def __init__(self) -> None:
        self.values: list[object] = []
        self._names: dict[int, str] = {}
        self._sets: dict[int, str] = {}
        self._keep: list[object] = []  # keeps ids stable while the pool lives

    def add(self, value: object) -> str:
        name = self._names.get(id(value))
        if name is None:
            self.values.append(value)
            name = self._names[id(value)] = f"_k{len(self.values) - 1}"
        return name

    def members(self, values: list[Any]) -> str:
        """A frozenset of `values` for membership tests, shared by every rule using it."""
        name = self._sets.get(id(values))
        if name is None:
            self._keep.append(values)
            name = self._sets[id(values)] = self.add(frozenset(values))
        return name


def literal_code(value: object, pool: Pool) -> str:
    """Python source for a scalar: itself where repr is exact, else a pool constant."""
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, int) and value.bit_length() < 4000:
        return repr(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(value)
    return pool.add(value)


class Literals:
    """How the literals of one rule's shape are written.

    Inline (`prefix` None): a parameter becomes its value in this rule. Named: a parameter
    `i` becomes the name `<prefix><i>`, and a list of literals that holds parameters a
    name `<prefix>L<n>` (`<prefix>S<n>` for its membership set), computed by `bind()` when
    a function is made for one rule.
    """

    def __init__(self, condition: Condition, pool: Pool, prefix: str | None = None) -> None:
        self.condition = condition
        self.params = condition.shape.params
        self.pool = pool
        self.prefix = prefix
        #: Named mode: (name, list node, as a set) of each derived list, in order.
        self.lists: list[tuple[str, ast.ListExpr, bool]] = []

    def literal(self, node: ast.Literal) -> str | None:
        index = self.params.get(id(node))
        if index is None:
            return None
        if self.prefix is not None:
            return f"{self.prefix}{index}"
        return literal_code(self.condition.values[index], self.pool)

    def values(self, node: ast.ListExpr) -> list[Any] | None:
        """The values of a list of literals in this rule; None when an item is not a literal."""
        if not all(isinstance(item, ast.Literal) for item in node.items):
            return None
        return [self.condition.value(item) for item in node.items if isinstance(item, ast.Literal)]

    def has_params(self, node: ast.ListExpr) -> bool:
        return any(id(item) in self.params for item in node.items)

    def constant_list(self, node: ast.ListExpr, as_set: bool) -> str | None:
        """A name for the list (or its frozenset), or None when not all items are literals."""
        values = self.values(node)
        if values is None:
            return None
        if self.prefix is not None and self.has_params(node):
            for name, other, kind in self.lists:
                if other is node and kind == as_set:
                    return name
            name = f"{self.prefix}{'S' if as_set else 'L'}{len(self.lists)}"
            self.lists.append((name, node, as_set))
            return name
        return self.pool.members(values) if as_set else self.pool.add(values)

    def bind(self, condition: Condition) -> list[object]:
        """The values of the named parameters and lists for one rule of the shape."""
        out: list[object] = list(condition.values)
        for _, node, as_set in self.lists:
            values = [condition.value(item) for item in node.items if isinstance(item, ast.Literal)]
            out.append(frozenset(values) if as_set else values)
        return out

    def names(self) -> list[str]:
        assert self.prefix is not None
        return [f"{self.prefix}{i}" for i in range(len(self.condition.values))] + [n for n, _, _ in self.lists]


# -- shared values ------------------------------------------------------------------------
def shareable_keys(shape: Shape) -> dict[int, str]:
    """id(node) -> a canonical text, for each node whose value several rules may share.

    A node qualifies when it reads the facts (a path, a function call, arithmetic, a
    comparison, a quantifier), holds no parameter, and uses no quantifier variable from
    outside itself; data-document paths are constants already.
    """
    keys: dict[int, str] = {}
    params = shape.params
    guaranteed = shape.checked.guaranteed

    def visit(node: ast.Expr) -> tuple[str | None, frozenset[str]]:
        text: str | None
        free: frozenset[str] = frozenset()
        share = False
        match node:
            case ast.Literal(value=value):
                return (None if id(node) in params else f"{type(value).__name__}:{value!r}"), free
            case ast.ListExpr(items=items):
                parts = [visit(item) for item in items]
                text = None if any(p[0] is None for p in parts) else "[" + ", ".join(str(p[0]) for p in parts) + "]"
                free = frozenset().union(*(p[1] for p in parts))
                return text, free
            case ast.Name(name=name):
                if name in bound:
                    return f"${name}", frozenset((name,))
                share = name not in ROOT_LOCALS and name != "data" and name not in guaranteed
                text = name
            case ast.Attr(obj=obj, name=name):
                inner, free = visit(obj)
                root = ast.root_name(node)
                text = None if inner is None else f"{inner}.{name}"
                share = root is not None and root.name != "data"
            case ast.Index(obj=obj, index=index):
                left, lfree = visit(obj)
                right, rfree = visit(index)
                free = lfree | rfree
                text = None if left is None or right is None else f"{left}[{right}]"
                root = ast.root_name(node)
                share = root is None or root.name != "data"
            case ast.Call(name=name, args=args):
                parts = [visit(arg) for arg in args]
                free = frozenset().union(*(p[1] for p in parts))
                text = None if any(p[0] is None for p in parts) else f"{name}(" + ", ".join(str(p[0]) for p in parts) + ")"
                share = name != "exists"
            case ast.Not(operand=operand):
                inner, free = visit(operand)
                text = None if inner is None else f"not {inner}"
            case ast.BoolOp(op=op, operands=operands):
                parts = [visit(o) for o in operands]
                free = frozenset().union(*(p[1] for p in parts))
                text = None if any(p[0] is None for p in parts) else f" {op} ".join(f"({p[0]})" for p in parts)
            case ast.Compare(op=op, left=left, right=right) | ast.Arith(op=op, left=left, right=right):
                (lt, lfree), (rt, rfree) = visit(left), visit(right)
                free = lfree | rfree
                text = None if lt is None or rt is None else f"({lt} {op} {rt})"
                share = True
            case ast.Neg(operand=operand):
                inner, free = visit(operand)
                text = None if inner is None else f"-({inner})"
                share = True
            case ast.Quantifier(kind=kind, var=var, iterable=iterable, body=body):
                it, ifree = visit(iterable)
                bound.append(var)
                try:
                    inner, bfree = visit(body)
                finally:
                    bound.pop()
                free = ifree | (bfree - {var})
                text = None if it is None or inner is None else f"{kind}(${var} in {it}, {inner})"
                share = True
            case _:  # pragma: no cover
                raise TypeError(f"unknown node {node!r}")
        if share and text is not None and not free and data_value(node, {}) is UNDEFINED:
            keys[id(node)] = text
        return text, free

    bound: list[str] = []
    visit(shape.checked.node)
    return keys


class Shared:
    """The values one generated function computes once for all its rules.

    Collecting (`share` None), it counts which values each rule asks for; emitting, it
    gives each value in `share` a local, defined by a statement in `pending` the first
    time a rule needs it. `bound` names values already held in locals (an index key).
    """

    def __init__(self, share: set[str] | None = None, bound: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.share = share
        self.counts: Counter[str] = Counter()
        self.names: dict[str, tuple[str, str]] = dict(bound or {})
        self.pending: list[str] = []
        self._keys: dict[int, dict[int, str]] = {}
        self._numbers = itertools.count()

    def keys(self, shape: Shape) -> dict[int, str]:
        found = self._keys.get(id(shape))
        if found is None:
            found = self._keys[id(shape)] = shareable_keys(shape)
        return found

    def lookup(self, key: str) -> tuple[str, str] | None:
        if self.share is None:
            self.counts[key] += 1
            return self.names.get(key)  # a bound value is read, not computed: its parts are not asked
        return self.names.get(key)

    def wanted(self, key: str) -> bool:
        return self.share is not None and key in self.share

    def define(self, key: str, code: str, kind: str) -> str:
        name = f"_c{next(self._numbers)}"
        self.pending.append(f"{name} = {code}")
        self.names[key] = (name, kind)
        return name

    def take(self) -> list[str]:
        """The definitions the last rule needs, in order."""
        pending, self.pending = self.pending, []
        return pending


def conjuncts(node: ast.Expr) -> list[ast.Expr]:
    """The top-level conjuncts of a condition (itself when it is not an AND)."""
    if isinstance(node, ast.BoolOp) and node.op == "and":
        return [c for operand in node.operands for c in conjuncts(operand)]
    return [node]


class Codegen:
    """Emits one Python expression per AST node, with the kind of value it yields.

    Kinds: `bool` (always True/False), `num`, `str` (guaranteed, never undefined) and
    `value` (anything, including UNDEFINED).
    """

    def __init__(
        self,
        checked: Checked,
        literals: Literals | None,
        pool: Pool,
        data: Mapping[str, object],
        trace: bool = False,
        shared: Shared | None = None,
        keys: Mapping[int, str] | None = None,
        assume: int | None = None,
    ) -> None:
        self.checked = checked
        #: id of a top-level conjunct known to hold where this code runs (not generated)
        self.assume = assume
        self.literals = literals
        self.pool = pool
        self.data = data
        self.trace = trace
        self.shared = None if trace else shared
        self.keys = keys or {}
        self.temps = itertools.count()
        self.bound: list[str] = []
        self.roots_used: set[str] = set()

    def const(self, value: object) -> str:
        return self.pool.add(value)

    def condition(self, node: ast.Expr) -> str:
        """The code of a rule's whole condition (its assumed conjunct left out)."""
        if self.assume is not None:
            rest = [c for c in conjuncts(node) if id(c) != self.assume]
            if len(rest) != len(conjuncts(node)):
                return "(" + " and ".join(self.cond(c) for c in rest) + ")" if rest else "True"
        return self.cond(node)

    def cond(self, node: ast.Expr) -> str:
        if isinstance(node, ast.Literal) and not self._is_param(node):  # `(0 is True)` warns
            return repr(node.value is True)
        code, kind = self.expr(node)
        return code if kind == "bool" else f"({code} is True)"

    def _is_param(self, node: ast.Literal) -> bool:
        return self.literals is not None and id(node) in self.literals.params

    def expr(self, node: ast.Expr, wrap: bool = True) -> tuple[str, str]:
        shared = self.shared
        if shared is not None:
            key = self.keys.get(id(node))
            if key is not None:
                found = shared.lookup(key)
                if found is None and shared.wanted(key):
                    code, kind = self._expr(node)
                    return shared.define(key, code, kind), kind
                if found is not None:
                    return found
        code, kind = self._expr(node)
        if self.trace and wrap and isinstance(node, (ast.Name, ast.Attr, ast.Index)):
            path = ast.path_text(node)
            root = ast.root_name(node)
            if path is not None and root is not None and root.name not in self.bound:
                return f"_rd({path!r}, {code})", kind
        return code, kind

    def _shared_test(self, node: ast.Expr, code: str, test: str) -> str | None:
        """A local holding "the value of `node` is a number" (or a string), if shared."""
        shared = self.shared
        key = self.keys.get(id(node))
        if shared is None or key is None:
            return None
        key = f"{test}|{key}"
        found = shared.lookup(key)
        if found is not None:
            return found[0]
        if shared.wanted(key) and code.isidentifier():
            return shared.define(key, f"{code}.__class__ {_TYPE_TESTS[test]}", "bool")
        return None

    def _root_dict(self, root: str) -> str | None:
        """A local holding the root if it is a map, else an empty map (when shared)."""
        shared = self.shared
        if shared is None:
            return None
        key = f"dict|{root}"
        found = shared.lookup(key)
        if found is not None:
            return found[0]
        if shared.wanted(key):
            local = ROOT_LOCALS[root]
            return shared.define(key, f"({local} if {local}.__class__ is _dict else _EMPTY)", "value")
        return None

    def _expr(self, node: ast.Expr) -> tuple[str, str]:
        match node:
            case ast.Literal(value=value):
                written = self.literals.literal(node) if self.literals is not None else None
                if isinstance(value, bool):
                    return repr(value), "bool"
                if isinstance(value, (int, float)):
                    return written or literal_code(value, self.pool), "num"
                if isinstance(value, str):
                    return written or repr(value), "str"
                return "None", "value"
            case ast.ListExpr(items=items):
                named = self._constant_list(node, as_set=False)
                if named is not None:
                    return named, "value"
                return "_mklist(" + ", ".join(self.expr(item)[0] for item in items) + ")", "value"
            case ast.Name(name=name):
                if name in self.bound:
                    return f"v_{name}", "value"
                if name == "data":
                    return self.const(dict(self.data)), "value"
                if name in ROOT_LOCALS:
                    self.roots_used.add(name)
                    return ROOT_LOCALS[name], "value"
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
                if isinstance(node, ast.Attr):
                    return self._attr(node), "value"
                obj, _ = self.expr(node.obj, wrap=False)
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
                fast = None if self.trace else self._call(node)
                if fast is not None:
                    return fast
                function = FUNCTIONS[name]
                code = f"{function.helper}(" + ", ".join(self.expr(a)[0] for a in args) + ")"
                return code, "bool" if function.predicate else ("num" if name == "now" else "value")
            case ast.Quantifier(kind=kind, var=var, iterable=iterable, body=body):
                element = None if self.trace else self._element_test(node)
                if element is not None:
                    return element, "bool"
                sequence, _ = self.expr(iterable)
                self.bound.append(var)
                try:
                    condition = self.cond(body)
                finally:
                    self.bound.pop()
                return f"_{kind}({sequence}, lambda v_{var}: {condition})", "bool"
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _attr(self, node: ast.Attr) -> str:
        obj = node.obj
        if self.trace:
            code, _ = self.expr(obj, wrap=False)
            return f"_key({code}, {node.name!r})"
        if isinstance(obj, ast.Name) and obj.name in ROOT_LOCALS and obj.name not in self.bound:
            self.roots_used.add(obj.name)
            local = self._root_dict(obj.name)
            if local is not None:
                return f"{local}.get({node.name!r}, _U)"
            local = ROOT_LOCALS[obj.name]
            return f"({local}.get({node.name!r}, _U) if {local}.__class__ is _dict else _U)"
        code, _ = self.expr(obj, wrap=False)
        if code.isidentifier():
            return f"({code}.get({node.name!r}, _U) if {code}.__class__ is _dict else _U)"
        return f"_key({code}, {node.name!r})"

    def _type(self, node: ast.Expr) -> Type:
        return self.checked.types.get(id(node), Type("any"))

    def _data_constant(self, node: ast.Attr | ast.Index) -> object:
        """The value of a `data.` path with literal steps, resolved at compile time."""
        return UNDEFINED if "data" in self.bound else data_value(node, self.data)

    def _constant_list(self, node: ast.ListExpr, as_set: bool) -> str | None:
        if self.literals is not None:
            return self.literals.constant_list(node, as_set)
        if not all(isinstance(item, ast.Literal) for item in node.items):
            return None
        values = [item.value for item in node.items if isinstance(item, ast.Literal)]
        return self.pool.members(values) if as_set else self.pool.add(values)

    def _is_str_constant(self, node: ast.Expr) -> bool:
        return isinstance(node, ast.Literal) and isinstance(node.value, str)

    def _name_of(self, code: str) -> tuple[str, str]:
        """A way to read `code` twice: (prefix binding it, the name to read)."""
        if code.isidentifier():
            return code, code
        t = f"_t{next(self.temps)}"
        return f"({t} := {code})", t

    def _call(self, node: ast.Call) -> tuple[str, str] | None:
        """Inline forms of the cheap functions, same results as their helpers."""
        name, args = node.name, node.args
        if name in ("lower", "upper") and len(args) == 1:
            code, kind = self.expr(args[0])
            if kind == "str":
                return f"{code}.{name}()", "str"
            first, again = self._name_of(code)
            return f"({again}.{name}() if {first}.__class__ is _str else _U)", "value"
        if name in ("startswith", "endswith") and len(args) == 2 and self._is_str_constant(args[1]):
            code, kind = self.expr(args[0])
            argument, _ = self.expr(args[1])
            if kind == "str":
                return f"{code}.{name}({argument})", "bool"
            first, again = self._name_of(code)
            return f"({first}.__class__ is _str and {again}.{name}({argument}))", "bool"
        if name == "len" and len(args) == 1:
            code, _ = self.expr(args[0])
            if self._guaranteed(args[0]) and self._type(args[0]).kind in ("list", "string", "map"):
                return f"_len({code})", "num"
            first, again = self._name_of(code)
            return f"(_len({again}) if {first}.__class__ in _LSD else _U)", "value"
        if name == "contains" and len(args) == 2 and self._is_str_constant(args[1]):
            return self._contains(args[0], args[1]), "bool"
        return None

    def _guaranteed(self, node: ast.Expr) -> bool:
        return isinstance(node, ast.Name) and node.name in self.checked.guaranteed and node.name not in self.bound

    def _contains(self, container: ast.Expr, item: ast.Expr) -> str:
        """`item in container` for a string item: list item, substring or map key."""
        code, _ = self.expr(container)
        needle, _ = self.expr(item)
        if self._guaranteed(container) and self._type(container).kind in ("list", "string", "map"):
            return f"({needle} in {code})"
        first, again = self._name_of(code)
        return f"({first}.__class__ in _LSD and {needle} in {again})"

    def _element_test(self, node: ast.Quantifier) -> str | None:
        """`any(x in items, x == "s")` as `"s" in items` (for a string, `==` is `in`'s test)."""
        body = node.body
        if node.kind != "any" or not isinstance(body, ast.Compare) or body.op != "==":
            return None
        sides = (body.left, body.right)
        if isinstance(sides[1], ast.Name) and sides[1].name == node.var:
            sides = (sides[1], sides[0])
        var, item = sides
        if not (isinstance(var, ast.Name) and var.name == node.var and self._is_str_constant(item)):
            return None
        code, _ = self.expr(node.iterable)
        needle, _ = self.expr(item)
        if self._guaranteed(node.iterable) and self._type(node.iterable).kind == "list":
            return f"({needle} in {code})"
        first, again = self._name_of(code)
        return f"({first}.__class__ is _list and {needle} in {again})"

    def _compare(self, node: ast.Compare) -> str:
        op = node.op
        if not self.trace and op == "in" and self._is_str_constant(node.left):
            return self._contains(node.right, node.left)
        left, lk = self.expr(node.left)
        right, rk = self.expr(node.right)
        if self.trace:
            return f"{_COMPARE_HELPERS[op]}({left}, {right})"
        if lk == rk and lk in ("num", "str"):
            return f"({left} {op} {right})"
        if lk == rk == "bool" and op in ("==", "!="):
            return f"({left} {'is' if op == '==' else 'is not'} {right})"
        if op in ("==", "!="):
            fast = self._equality(node, op, (left, lk), (right, rk))
            if fast is not None:
                return fast
        if op in ("<", "<=", ">", ">=") and {lk, rk} <= {"value", "num", "str"} and "value" in (lk, rk):
            known = rk if lk == "value" else lk
            if known != "value":
                value_node, value_code = (node.left, left) if lk == "value" else (node.right, right)
                test = self._shared_test(value_node, value_code, known)
                if test is not None:
                    return f"({test} and {left} {op} {right})"
                first, again = self._name_of(value_code)
                if lk == "value":
                    return f"({first}.__class__ {_TYPE_TESTS[known]} and {again} {op} {right})"
                return f"({first}.__class__ {_TYPE_TESTS[known]} and {left} {op} {again})"
        if op in ("in", "not in"):
            fast = self._membership(node, left, lk)
            if fast is not None:
                return fast
        return f"{_COMPARE_HELPERS[op]}({left}, {right})"

    def _equality(self, node: ast.Compare, op: str, a: tuple[str, str], b: tuple[str, str]) -> str | None:
        """`==`/`!=` between an undefined-aware value and a value of known kind."""
        (left, lk), (right, rk) = a, b
        if lk == "value" and rk == "value":
            for side, other in ((node.right, left), (node.left, right)):
                if isinstance(side, ast.Literal) and side.value is None and not self._is_param(side):
                    first, again = self._name_of(other)
                    if op == "==":
                        return f"({other} is None)"
                    return f"({first} is not _U and {again} is not None)"
            return None
        if "value" not in (lk, rk):
            return None
        value_node, value, known, kind = (
            (node.left, left, right, rk) if lk == "value" else (node.right, right, left, lk)
        )
        if kind == "str":
            if op == "==":
                return f"({value} == {known})"
            first, again = self._name_of(value)
            return f"({first} is not _U and {again} != {known})"
        if kind == "bool":
            if op == "==":
                return f"({value} is {known})"
            first, again = self._name_of(value)
            return f"({first} is not _U and {again} is not {known})"
        # a number: of another type, a value is never equal (`true == 1` is false)
        test = self._shared_test(value_node, value, "num")
        if test is not None:
            if op == "==":
                return f"({test} and {value} == {known})"
            return f"({value} is not _U and (not {test} or {value} != {known}))"
        first, again = self._name_of(value)
        if op == "==":
            return f"({first}.__class__ in _NUM and {again} == {known})"
        return f"({first} is not _U and ({again}.__class__ not in _NUM or {again} != {known}))"

    def _membership(self, node: ast.Compare, left: str, lk: str) -> str | None:
        """`x in <constant list of strings>` becomes a set lookup guarded by a type test."""
        right = node.right
        members: str | None = None
        if isinstance(right, ast.ListExpr):
            values = self.literals.values(right) if self.literals is not None else (
                [i.value for i in right.items if isinstance(i, ast.Literal)]
                if all(isinstance(i, ast.Literal) for i in right.items) else None
            )
            if values and all(type(v) is str for v in values):
                members = self._constant_list(right, as_set=True)
        elif isinstance(right, (ast.Attr, ast.Index)):
            document = self._data_constant(right)
            if isinstance(document, list) and document and all(type(v) is str for v in document):
                members = self.pool.members(document)
        if members is None:
            return None
        if lk == "str":
            return f"({left} {node.op} {members})"
        first, again = self._name_of(left)
        if node.op == "not in":
            return f"({first} is not _U and ({again}.__class__ is not _str or {again} not in {members}))"
        return f"({first}.__class__ is _str and {again} in {members})"


__all__ = ["ROOT_LOCALS", "Codegen", "Literals", "Pool", "Shared", "conjuncts", "literal_code", "shareable_keys"]
