"""Index stage: which rules a decision need not try, chosen at load time from their tests.

A rule's condition is a tree of AND, OR and NOT over tests. Some tests can be *looked
up* instead of tried: given the input's value of their key expression, a table says at
once whether they can hold. Such a test is a `Probe`:

- `eq`: the key equals one of some constants (`context.country == "GB"`, `x in ["a",
  "b"]`, `x in data.doc`);
- `has`: a constant is in the key (`"AgeOver18" in credentials`, `contains(k, "x")`): an
  item of a list, a substring of a string, a key of a map;
- `elem`: the key is a list holding one of some constants (`any(c in k, c == "x")`);
- `truth`: the key is true (`is_pep`), or not true (`NOT is_pep`);
- `range`: the key is a number above or below a bound (`context.amount > 100`);
- `prefix` / `suffix`: the key is a string starting or ending with one of some
  constants (`startswith(context.national_id, "GB")`).

If a condition holds, at least one probe of each of its *options* holds: an option is a
probe of one conjunct of an AND, or one probe per branch of an OR. So a rule whose
chosen option has no probe that holds for an input cannot match it, and a decision tries
only the rules some probe lets through, in rule order: the first of them that matches is
the rule a linear scan would have found. Rules with no option stay candidates for
every input (the scan rules).

The plan picks one option per rule by estimated selectivity, keeps only keys enough
rules share, and is used only when it is cheaper than trying the rules in order.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dsl import ast
from dsl.checker import data_value
from dsl.codegen import conjuncts, shareable_keys
from dsl.conditions import Condition, Shape
from dsl.runtime import UNDEFINED, same
from dsl.types import BOOL as _BOOL

Kind = Literal["eq", "has", "elem", "truth", "range", "prefix", "suffix"]
_TRUTH = {"T", "F", "O"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
#: Above this many distinct bounds, a range key keeps no table (each bound is a bucket).
MAX_RANGE_BOUNDS = 64


@dataclass(frozen=True, slots=True)
class Probe:
    """One test a table can answer: `kind` on the value of the key expression `key`.

    `values`: the constants (eq, has, elem), the subset of "T"/"F"/"O" (truth), or
    `(operator, bound)` (range).
    """

    kind: Kind
    key: str
    values: tuple[Any, ...]

    def admits(self, value: object) -> bool:
        """Could the test hold when the key's value is `value`? (Exact, as the rule reads it.)"""
        match self.kind:
            case "eq":
                return value is not UNDEFINED and any(same(value, c) for c in self.values)
            case "has":
                return any(_member(c, value) for c in self.values)
            case "elem":
                return value.__class__ is list and any(same(c, item) for c in self.values for item in value)
            case "truth":
                return ("T" if value is True else "F" if value is False else "O") in self.values
            case "range":
                op, bound = self.values
                if value.__class__ not in (int, float):
                    return False
                return bool(_ORDER[op](value, bound))
            case "prefix":
                return value.__class__ is str and any(value.startswith(c) for c in self.values)
            case "suffix":
                return value.__class__ is str and any(value.endswith(c) for c in self.values)
        return True  # pragma: no cover

    def describe(self) -> str:
        """What the rule needs of the key, for an explanation."""
        match self.kind:
            case "eq":
                shown = [show_value(v) for v in self.values]
                return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
            case "has":
                return "to contain " + " or ".join(show_value(v) for v in self.values)
            case "elem":
                return "a list holding " + " or ".join(show_value(v) for v in self.values)
            case "truth":
                if set(self.values) == {"F", "O"}:
                    return "not true"
                return " or ".join({"T": "true", "F": "false", "O": "neither"}[v] for v in self.values)
            case "range":
                return f"a number {self.values[0]} {show_value(self.values[1])}"
            case "prefix":
                return "a string starting with " + " or ".join(show_value(v) for v in self.values)
            case "suffix":
                return "a string ending with " + " or ".join(show_value(v) for v in self.values)
        return "?"  # pragma: no cover


_ORDER = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def show_value(value: object) -> str:
    """A constant as the rule language writes it."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _member(item: object, container: object) -> bool:
    cls = container.__class__
    if cls is list:
        return any(same(item, x) for x in container)  # type: ignore[attr-defined]
    if (cls is str or cls is dict) and item.__class__ is str:
        return item in container  # type: ignore[operator]
    return False


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


# -- per shape: the options of a condition, with references to its parameters -------------
#: A value in an option template: ("param", index) | ("const", value) | ("consts", values)
Ref = tuple[str, Any]
ProbeTemplate = tuple[Kind, str, tuple[Ref, ...]]
Option = tuple[ProbeTemplate, ...]


@dataclass(slots=True)
class ShapeProbes:
    """The options of one shape, and for each key the node its code is generated from.

    `sources[i]` is the id of the top-level conjunct option `i` is the one probe of (a
    rule reached through that probe's bucket need not test it again), else None.
    """

    options: list[Option]
    key_nodes: dict[str, ast.Expr]
    sources: list[int | None] = field(default_factory=list)


def shape_probes(shape: Shape, data: Mapping[str, object]) -> ShapeProbes:
    keys = shareable_keys(shape)
    found = ShapeProbes([], {})
    params = shape.params
    guaranteed = shape.checked.guaranteed

    def key_of(node: ast.Expr) -> str | None:
        if isinstance(node, ast.Name) and node.name in guaranteed:
            key: str | None = node.name  # a declared fact, read once by every program
        else:
            key = keys.get(id(node))
        if key is not None:
            found.key_nodes.setdefault(key, node)
        return key

    def const(node: ast.Expr) -> Ref | None:
        if isinstance(node, ast.Literal):
            if id(node) in params:
                return ("param", params[id(node)])
            return ("const", node.value)
        return None

    def constants(node: ast.Expr) -> Ref | None:
        """The constants a membership test's right side lists, if it is a constant list."""
        if isinstance(node, ast.ListExpr):
            refs = [const(item) for item in node.items]
            if any(r is None for r in refs):
                return None
            return ("refs", tuple(refs))
        if isinstance(node, (ast.Attr, ast.Index)):
            value = data_value(node, data)
            if isinstance(value, list) and all(_scalar(v) for v in value):
                return ("consts", tuple(value))
            if isinstance(value, dict):
                return ("keys", tuple(value))
        return None

    def options(node: ast.Expr) -> list[Option]:
        match node:
            case ast.BoolOp(op="and", operands=operands):
                return [option for o in operands for option in options(o)]
            case ast.BoolOp(op="or", operands=operands):
                branches = [options(o) for o in operands]
                if not all(branches):
                    return []
                combos = itertools.islice(itertools.product(*(b[:3] for b in branches)), 8)
                return [tuple(p for option in combo for p in option) for combo in combos]
            case ast.Not(operand=operand):
                key = _truth_key(operand)
                if key is None:
                    return []
                if isinstance(operand, ast.Name) and guaranteed.get(operand.name) == _BOOL:
                    return [(("truth", key, (("const", "F"),)),)]
                return [(("truth", key, (("const", "F"), ("const", "O"))),)]
            case ast.Compare(op="==", left=left, right=right):
                for side, other in ((left, right), (right, left)):
                    ref = const(other)
                    key = key_of(side) if ref is not None else None
                    if key is not None and ref is not None:
                        if ref[0] == "const" and isinstance(ref[1], bool):
                            return [(("truth", key, (("const", "T" if ref[1] else "F"),)),)]
                        return [(("eq", key, (ref,)),)]
                return []
            case ast.Compare(op="in", left=left, right=right):
                ref = const(left)
                if ref is not None:
                    key = key_of(right)
                    return [(("has", key, (ref,)),)] if key is not None else []
                listed = constants(right)
                key = key_of(left) if listed is not None else None
                if key is None or listed is None:
                    return []
                kind, items = listed
                if kind == "refs":
                    return [(("eq", key, items),)]
                if kind == "keys":  # `x in map`: x is a string key of the map
                    return [(("eq", key, tuple(("const", k) for k in items)),)]
                return [(("eq", key, tuple(("const", v) for v in items)),)]
            case ast.Compare(op="<" | "<=" | ">" | ">=" as op, left=left, right=right):
                for side, other, which in ((left, right, op), (right, left, _FLIP[op])):
                    ref = const(other)
                    if ref is None or (ref[0] == "const" and not _number(ref[1])):
                        continue
                    if ref[0] == "param" and not _number(_literal_value(other)):
                        continue
                    key = key_of(side)
                    if key is not None:
                        return [(("range", key, (("const", which), ref)),)]
                return []
            case ast.Call(name="startswith" | "endswith" as name, args=(text, written)):
                ref = const(written)
                if ref is None or not isinstance(_literal_value(written), str):
                    return []
                key = key_of(text)
                affix: Kind = "prefix" if name == "startswith" else "suffix"
                return [((affix, key, (ref,)),)] if key is not None else []
            case ast.Call(name="contains", args=(container, item)):
                ref = const(item)
                key = key_of(container) if ref is not None else None
                return [(("has", key, (ref,)),)] if key is not None and ref is not None else []
            case ast.Quantifier(kind="any", var=var, iterable=iterable, body=ast.Compare(op="==") as body):
                for side, other in ((body.left, body.right), (body.right, body.left)):
                    ref = const(other)
                    if isinstance(side, ast.Name) and side.name == var and ref is not None:
                        key = key_of(iterable)
                        return [(("elem", key, (ref,)),)] if key is not None else []
                return []
            case ast.Name() | ast.Attr() | ast.Index() | ast.Call():
                key = _truth_key(node)
                return [(("truth", key, (("const", "T"),)),)] if key is not None else []
        return []

    def _truth_key(node: ast.Expr) -> str | None:
        if isinstance(node, (ast.Name, ast.Attr, ast.Index, ast.Call)):
            return key_of(node)
        return None

    for conjunct in conjuncts(shape.checked.node):
        for option in options(conjunct):
            found.options.append(option)
            found.sources.append(id(conjunct) if len(option) == 1 else None)
    return found


def _literal_value(node: ast.Expr) -> object:
    return node.value if isinstance(node, ast.Literal) else None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def instantiate(option: Option, condition: Condition) -> tuple[Probe, ...]:
    """The probes of one option for one rule's literal values."""
    probes: list[Probe] = []
    for kind, key, refs in option:
        values: list[Any] = []
        for ref in refs:
            value = condition.values[ref[1]] if ref[0] == "param" else ref[1]
            values.append(value)
        if kind == "range":
            bound = values[1]
            if not _number(bound) or bound != bound:  # NaN: the test never holds
                probes.append(Probe("eq", key, ()))
                continue
        elif kind != "truth":
            # NaN equals nothing; lists and maps are not looked up (the option is dropped)
            if not all(_scalar(v) for v in values):
                return ()
            values = [v for v in values if v == v]
        probes.append(Probe(kind, key, tuple(values)))
    return tuple(probes)


# -- the plan -------------------------------------------------------------------------------
@dataclass(slots=True)
class IndexKey:
    """One looked-up key: its kind, canonical text, the node its code comes from, and the
    rules filed under each value."""

    kind: Kind
    key: str
    node: ast.Expr
    shape: Shape
    rules: list[int] = field(default_factory=list)
    #: eq/has/elem: value -> rule indexes, one map per value class ("str", "num", "true",
    #: "false", "null"); truth: "T"/"F"/"O" -> rule indexes.
    table: dict[str, dict[Any, list[int]]] = field(default_factory=dict)
    #: range: sorted distinct bounds, and the rules admitted in each elementary interval
    #: (below the first bound, at it, between it and the next, ..., above the last);
    #: prefix / suffix: the distinct lengths of the constants.
    bounds: list[float] = field(default_factory=list)
    intervals: list[list[int]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.key


@dataclass(slots=True)
class Plan:
    """The index of one rule list: keys, the probes each rule is filed under, scan rules."""

    keys: list[IndexKey]
    #: rule index -> its chosen probes (empty for scan rules)
    probes: list[tuple[Probe, ...]]
    scan: list[int]
    #: rule index -> id of the conjunct its one probe stands for (true in its buckets)
    assumed: list[int | None] = field(default_factory=list)

    @property
    def indexed(self) -> int:
        return sum(1 for p in self.probes if p)

    def excluded(self, values: Mapping[str, object]) -> dict[int, tuple[Probe, ...]]:
        """Rules no probe admits for these key values, each with the probes that say so."""
        out: dict[int, tuple[Probe, ...]] = {}
        for rule, probes in enumerate(self.probes):
            if probes and not any(p.admits(values.get(p.key, UNDEFINED)) for p in probes):
                out[rule] = probes
        return out


def _value_class(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return "str" if isinstance(value, str) else "num"


def plan_index(
    conditions: Sequence[Condition | None], data: Mapping[str, object], force: bool | None = None
) -> Plan | None:
    """The index for these rules, or None when trying them in order is as cheap.

    Costs are counted in rules tried: a rule filed under a probe that admits a share `p`
    of inputs costs `p` of a rule instead of one; a key costs `KEY_COST` (its value, a
    lookup, a bucket call). A rule takes its most selective option; a key is kept when
    the rules filed under it save more than it costs; the index is used when it is
    clearly cheaper than trying every rule in order. `force=True` (for tests) files every
    rule that has an option, `False` never indexes.
    """
    if force is False:
        return None
    per_shape: dict[int, ShapeProbes] = {}
    key_nodes: dict[str, tuple[ast.Expr, Shape]] = {}
    for condition in conditions:
        if condition is not None and id(condition.shape) not in per_shape:
            found = per_shape[id(condition.shape)] = shape_probes(condition.shape, data)
            for key, node in found.key_nodes.items():
                key_nodes.setdefault(key, (node, condition.shape))
    # A range key with too many distinct bounds keeps no table: its options are dropped
    # before any probe is made (large generated sets often compare against a bound each).
    ranges = {
        shape_id: [(key, refs[1]) for template in found.options for kind, key, refs in template if kind == "range"]
        for shape_id, found in per_shape.items()
    }
    bounds: dict[str, set[object]] = defaultdict(set)
    for condition in conditions:
        if condition is not None:
            for key, ref in ranges[id(condition.shape)]:
                bounds[key].add(condition.values[ref[1]] if ref[0] == "param" else ref[1])
    crowded = {key for key, found in bounds.items() if len(found) > MAX_RANGE_BOUNDS}
    # per shape, once: the options that do not look up a crowded range key
    usable = {
        shape_id: [
            (template, source) for template, source in zip(found.options, found.sources, strict=True)
            if not any(kind == "range" and key in crowded for kind, key, _ in template)
        ]
        for shape_id, found in per_shape.items()
    }
    choices: list[list[tuple[tuple[Probe, ...], int | None]]] = []
    for condition in conditions:
        if condition is None:
            choices.append([])
            continue
        rule_options: list[tuple[tuple[Probe, ...], int | None]] = []
        for template, source in usable[id(condition.shape)]:
            probes = instantiate(template, condition)
            if probes:
                rule_options.append((probes, source))
        choices.append(rule_options)
    if not any(choices):
        return None
    chance = _Chances(choices)
    # Forced (tests), every rule with an option is indexed, however little that pays.
    threshold = math.inf if force else 0.9
    dropped: set[tuple[str, str]] = set()
    while True:
        chosen: list[tuple[Probe, ...]] = []
        assumed: list[int | None] = []
        scores: list[float] = []
        for options in choices:
            best: tuple[Probe, ...] = ()
            best_source: int | None = None
            best_score = threshold
            for option, source in options:
                if dropped and any((p.kind, p.key) in dropped for p in option):
                    continue
                score = chance(option[0]) if len(option) == 1 else min(1.0, sum(chance(p) for p in option))
                if score < best_score or (score == best_score and not best):
                    best, best_score, best_source = option, score, source
            chosen.append(best)
            assumed.append(best_source)
            scores.append(best_score if best else 1.0)
        saving: dict[tuple[str, str], float] = defaultdict(float)
        for option, score in zip(chosen, scores, strict=True):
            if len(option) == 1:
                saving[(option[0].kind, option[0].key)] += 1.0 - score
                continue
            for filed in {(p.kind, p.key) for p in option}:
                saving[filed] += 1.0 - score
        weak = set() if force else {filed for filed, saved in saving.items() if saved < KEY_COST}
        if not weak:
            break
        dropped |= weak
    indexed = [i for i, option in enumerate(chosen) if option]
    if not indexed:
        return None
    scan = [i for i, option in enumerate(chosen) if not option]
    in_order = float(len(conditions))
    with_index = KEY_COST * len(saving) + sum(scores[i] for i in indexed) * 1.2 + len(scan)
    if force is not True and with_index > 0.8 * in_order:
        return None
    keys: dict[tuple[str, str], IndexKey] = {}
    for (kind_of_key, key_text) in sorted(saving):
        node, shape = key_nodes[key_text]
        keys[(kind_of_key, key_text)] = IndexKey(kind_of_key, key_text, node, shape)  # type: ignore[arg-type]
    for rule in indexed:
        for probe in chosen[rule]:
            entry = keys[(probe.kind, probe.key)]
            if not entry.rules or entry.rules[-1] != rule:
                entry.rules.append(rule)
            _file(entry, probe, rule)
    for entry in keys.values():
        if entry.kind == "range":
            _intervals(entry, [(r, p) for r in entry.rules for p in chosen[r] if (p.kind, p.key) == ("range", entry.key)])
        if entry.kind in ("prefix", "suffix"):
            entry.bounds = sorted({len(v) for v in entry.table.get("str", {})})
    return Plan(list(keys.values()), chosen, scan, assumed)


#: What a key costs a decision, in rules tried: computing its value, a lookup, a call.
KEY_COST = 6.0


class _Chances:
    """Estimated share of inputs a probe admits, from the constants the rules mention
    (inputs assumed spread over them, and over the gaps between bounds)."""

    def __init__(self, choices: Sequence[Sequence[tuple[tuple[Probe, ...], int | None]]]) -> None:
        self.distinct: dict[tuple[str, str], set[Any]] = defaultdict(set)
        for options in choices:
            for option, _ in options:
                for probe in option:
                    if probe.kind == "range":
                        self.distinct[(probe.kind, probe.key)].add(probe.values[1])
                    elif probe.kind != "truth":
                        # values of different types are different constants (1, 1.0 and true)
                        self.distinct[(probe.kind, probe.key)].update((v.__class__, v) for v in probe.values)
        self._sorted: dict[str, list[Any]] = {}
        #: the chance of any probe but a range depends on its kind, key and width only
        self._known: dict[tuple[str, str, int], float] = {}

    def __call__(self, probe: Probe) -> float:
        kind = probe.kind
        if kind != "range":
            known = self._known.get((kind, probe.key, len(probe.values)))
            if known is None:
                known = self._known[(kind, probe.key, len(probe.values))] = self._share(probe)
            return known
        return self._share(probe)

    def _share(self, probe: Probe) -> float:
        if probe.kind == "truth":
            return min(1.0, len(probe.values) / 2)
        if probe.kind == "range":
            ordered = self._sorted.get(probe.key)
            if ordered is None:
                ordered = self._sorted[probe.key] = sorted(self.distinct[("range", probe.key)])
            op, bound = probe.values
            # inputs spread over the gaps between the bounds: share of gaps above the bound
            above = (len(ordered) - bisect.bisect_left(ordered, bound)) / (len(ordered) + 1)
            return above if op in (">", ">=") else 1.0 - above
        spread = len(self.distinct[(probe.kind, probe.key)]) + 1
        weight = 1 if probe.kind in ("eq", "prefix", "suffix") else 2
        return min(1.0, len(probe.values) * weight / spread)


def indexable(condition: Condition | None, data: Mapping[str, object]) -> bool:
    """Does the condition have a test an index could look up?"""
    if condition is None:
        return False
    options = shape_probes(condition.shape, data).options
    return any(instantiate(option, condition) for option in options)


def _file(entry: IndexKey, probe: Probe, rule: int) -> None:
    """File `rule` under each value of its probe. Rules come in rule order, so each list
    stays sorted; a rule whose probe names a value twice is filed once."""
    if probe.kind == "range":
        return
    for value in probe.values:
        value_class = "truth" if probe.kind == "truth" else _value_class(value)
        table = entry.table.get(value_class)
        if table is None:
            table = entry.table[value_class] = {}
        rules = table.get(value)
        if rules is None:
            table[value] = [rule]
        elif rules[-1] != rule:
            rules.append(rule)


def _intervals(entry: IndexKey, probes: list[tuple[int, Probe]]) -> None:
    """Elementary intervals of the bounds, each with the rules a number there admits.

    Interval 2k is the open interval below bound k (above bound k-1), 2k+1 is bound k
    itself, and the last one is above every bound. Every bound of the key is one of
    `bounds`, so on an open interval each test is true throughout or false throughout.
    """
    bounds = sorted({p.values[1] for _, p in probes})
    entry.bounds = bounds
    entry.intervals = []
    for k in range(2 * len(bounds) + 1):
        if k % 2:
            point = bounds[k // 2]
            admitted = {rule for rule, p in probes if p.admits(point)}
        else:
            low = bounds[k // 2 - 1] if k else None
            admitted = {rule for rule, p in probes if _open_admits(p.values[0], p.values[1], low)}
        entry.intervals.append(sorted(admitted))


def _open_admits(op: str, bound: float, low: float | None) -> bool:
    """Does `x op bound` hold for x strictly between `low` and the next bound up?"""
    if op in (">", ">="):
        return low is not None and bound <= low
    return low is None or bound > low


def interval_of(bounds: list[float], value: float) -> int:
    """The elementary interval of `value`: 2k for below bound k (or above all), 2k+1 at it."""
    k = bisect.bisect_left(bounds, value)
    if k < len(bounds) and bounds[k] == value:
        return 2 * k + 1
    return 2 * k


__all__ = ["IndexKey", "Kind", "Plan", "Probe", "indexable", "interval_of", "plan_index", "shape_probes", "show_value"]
