"""Compile stage: an ordered rule list -> Python functions, compiled once.

A program is what a person would write by hand for the rule list, in one of two forms:

- **In order** (`dsl.codegen` for each condition): after the evidence checks, one `if`
  per rule, first match returns. Values several rules read are computed once, in a
  statement just before the first rule that needs them.
- **Indexed** (`dsl.index` chose keys): the program computes each key's value, looks up
  the *bucket* of rules its value admits, runs the bucket, and runs the *scan* rules
  (those no key covers) that come before the best match so far; the smallest matching
  rule index wins, exactly as a linear scan. Buckets are functions generated once per
  sequence of rule shapes and called with each bucket's literal values, so 100,000
  rules of one shape compile to a handful of functions.

The explaining variant tries every rule in order with the helpers that report reads
and mismatches; rules the index rules out are reported with the probe that excluded
them, without being tried.

Generated code runs in a namespace holding the helpers of `dsl.runtime` and nothing
else: no builtins, no `eval` of policy text.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from dsl.checker import Checked
from dsl.codegen import ROOT_LOCALS, Codegen, Literals, Pool, Shared
from dsl.conditions import Condition, as_condition
from dsl.index import IndexKey, Plan, Probe, interval_of, plan_index, show_value
from dsl.runtime import UNDEFINED, Clock, Recorder, namespace, utc_now
from dsl.types import Type

Outcome = TypeVar("Outcome")

#: The facts mapping a compiled program reads: JSON-like values by name.
Facts: TypeAlias = dict[str, object]
#: For each required fact: None (fine), "missing" or "invalid".
Verdicts: TypeAlias = tuple[str | None, ...]
#: Up to this many required facts, the outcome of every pattern of verdicts is prepared
#: at compile time (3 ** 6 = 729 at most) and picked by a number; above, `failure` is
#: called with the verdicts.
PREPARED_FACTS = 6

#: Rules per generated function when trying rules in order: small rule lists compile to a
#: single function; large ones to a chain of functions compiled one by one, which keeps
#: the compiler's peak memory small.
CHUNK_SIZE = 200
#: Rules per generated bucket function: a larger bucket is tried chunk by chunk, so a
#: decision stops at the chunk holding its first match.
BUCKET_SIZE = 64


@dataclass(frozen=True, slots=True)
class Required:
    """A fact that must be present with this type before any rule runs."""

    name: str
    type: Type


class Tracer(Recorder, Protocol):
    """What an explaining evaluation reports to: each rule tried, what it read and met."""

    def begin(self, index: int) -> None: ...

    def end(self, matched: bool) -> None: ...


@dataclass(eq=False)
class Program(Generic[Outcome]):
    """A compiled rule list.

    `run(facts)` returns the outcome of the first matching rule (the fast path);
    `explain(facts, tracer)` does the same while reporting every rule tried to `tracer`;
    `plan` is the rule index (None when the rules are tried in order).
    """

    run: Callable[[Facts], Outcome | None]
    source: str
    plan: Plan | None = None
    _explainer: _Explainer[Outcome] | None = field(default=None, repr=False)

    @property
    def conditions(self) -> tuple[Condition | None, ...]:
        """The rules' conditions, in order (None for an `else`)."""
        assert self._explainer is not None
        return tuple(self._explainer.rules)

    def explain(self, facts: Facts, tracer: Tracer) -> Outcome | None:
        """The outcome, reporting to `tracer` each rule tried (`begin(i)`, reads, notes,
        `end(matched)`), up to the deciding one. Evidence is not checked here."""
        assert self._explainer is not None
        return self._explainer.explain(facts, tracer)


@dataclass(frozen=True, slots=True)
class EvidenceCheck(Generic[Outcome]):
    """The facts a program checks before any rule, and its answer when one fails.

    The answer is `failure(verdicts)`, the verdicts saying for each required fact None
    (fine), "missing" or "invalid" (prepared at compile time for up to `PREPARED_FACTS`
    facts), or `invalid` when there is no `failure` function.
    """

    required: Sequence[Required]
    failure: Callable[[Verdicts], Outcome] | None = None
    invalid: Outcome | None = None


def compile_program(
    conditions: Sequence[Condition | Checked | None],
    outcomes: Sequence[Outcome],
    default: Outcome,
    evidence: EvidenceCheck[Outcome] | None = None,
    *,
    data: Mapping[str, object] | None = None,
    clock: Clock = utc_now,
    index: bool | None = None,
    recorder: Tracer | None = None,
) -> Program[Outcome]:
    """Compile an ordered rule list into a function of the facts mapping.

    `conditions[i]` is the condition of rule `i` (None for `else`); the function returns
    `outcomes[i]` for the first rule that matches and `default` when none does, after
    the `evidence` check. `index` None lets the compiler decide whether to index the
    rules, True indexes whatever can be, False never. With a `recorder`, `run` is the
    explaining variant reporting to it. Outcomes must not be None.
    """
    evidence = evidence or EvidenceCheck(())
    rules = [c if c is None or isinstance(c, Condition) else as_condition(c) for c in conditions]
    end = next((i for i, c in enumerate(rules) if c is None), None)
    if end is not None:
        rules = rules[: end + 1]  # rules after an `else` are never reached
    data = data or {}
    explainer = _Explainer(rules, list(outcomes), default, data, clock, evidence.required)
    if recorder is not None:
        tracer = recorder

        def traced(facts: Facts) -> Outcome | None:
            return explainer.explain(facts, tracer)

        return Program(run=traced, source="", plan=None, _explainer=explainer)
    plan = plan_index(rules, data, force=index)
    builder = _Builder(rules, outcomes, default, evidence, data, clock)
    run, source = builder.indexed(plan) if plan is not None else builder.in_order()
    if plan is not None:
        explainer.keys = builder.key_function(plan)
    explainer.plan = plan
    return Program(run=run, source=source, plan=plan, _explainer=explainer)


# -- generated source ---------------------------------------------------------------------
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


def refuses_every_mistyped(t: Type) -> bool:
    """Does the evidence check fail closed on every value that is not of type `t`? For
    every type but a list whose items have a known type other than string: of such a
    list it checks that it is one, not its items (the rules meet them as they are)."""
    item = t.item
    return t.kind != "list" or item is None or not item.known or item.kind == "string"


def _fetch(name: str) -> str:
    if name.startswith("consent."):
        return f"_key(_f.get('consent', _U), {name.split('.', 1)[1]!r})"
    return f"_f.get({name!r}, _U)"


def _verdicts(values: Sequence[str], tests: Sequence[str]) -> str:
    """A tuple expression: per fact None (fine), 'missing' or 'invalid'."""
    items = [
        f"(None if not ({test}) else 'missing' if {value} is _U else 'invalid')"
        for value, test in zip(values, tests, strict=True)
    ]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


class _Builder(Generic[Outcome]):
    """Writes the functions of one program and compiles them into one namespace."""

    def __init__(
        self,
        rules: list[Condition | None],
        outcomes: Sequence[Outcome],
        default: Outcome,
        evidence: EvidenceCheck[Outcome],
        data: Mapping[str, object],
        clock: Clock,
    ) -> None:
        self.rules = rules
        self.outcomes = outcomes
        self.default = default
        self.required = evidence.required
        self.data = data
        self.pool = Pool()
        self.env = namespace(clock)
        self.env["_default"] = default
        self.failure = evidence.failure
        self.env["_invalid"] = evidence.invalid
        self.env["_failure"] = evidence.failure
        self.sources: list[str] = []
        self.facts = [f"f_{r.name}" for r in self.required if "." not in r.name]
        #: Per shape (and bound keys, assumed conjunct): the shared-value keys one rule
        #: of the shape asks for, and its roots.
        self._asks: dict[tuple[object, ...], tuple[list[str], set[str]]] = {}
        self.roots = self._roots()
        self._bound: dict[int, dict[str, tuple[str, str]]] = {}
        self._signatures: dict[tuple[object, ...], tuple[str, list[Literals]]] = {}
        self._assumed: list[int | None] = []
        self._single = False
        self._buckets: dict[tuple[int, ...], object] = {}

    # -- pieces ----------------------------------------------------------------------
    def _asked(
        self, condition: Condition, bound: Mapping[str, tuple[str, str]] | None = None, assume: int | None = None
    ) -> tuple[list[str], set[str]]:
        """What one rule of this shape asks to share, counted once per shape (and place)."""
        shape = condition.shape
        place = (id(shape), tuple(bound or ()), assume)
        found = self._asks.get(place)
        if found is None:
            counting = Shared(None, bound)
            gen = Codegen(shape.checked, Literals(condition, Pool()), Pool(), self.data,
                          shared=counting, keys=counting.keys(shape), assume=assume)
            gen.condition(shape.checked.node)
            found = self._asks[place] = (list(counting.counts.elements()), gen.roots_used)
        return found

    def _roots(self) -> list[str]:
        roots: set[str] = set()
        for condition in self.rules:
            if condition is not None:
                roots |= self._asked(condition)[1]
        return sorted(roots)

    def prelude(self, roots: bool = True) -> list[str]:
        """Evidence facts read and checked; with `roots`, the roots the rules read too."""
        lines = [f"    f_{req.name} = {_fetch(req.name)}" for req in self.required if "." not in req.name]
        if self.required:
            # one test for the common case; on failure, the per-fact verdicts pick the outcome
            values = [f"f_{req.name}" if "." not in req.name else _fetch(req.name) for req in self.required]
            tests = [_type_test(value, req.type) for value, req in zip(values, self.required, strict=True)]
            lines.append("    if " + " or ".join(f"({test})" for test in tests) + ":")
            lines.append(f"        return {self._failing(values, tests)}")
        if roots:
            lines += [f"    {ROOT_LOCALS[root]} = _f.get({root!r}, _U)" for root in self.roots]
        return lines

    def _failing(self, values: Sequence[str], tests: Sequence[str]) -> str:
        """The expression of the outcome for facts that failed their tests."""
        if self.failure is None:
            return "_invalid"
        if len(self.required) > PREPARED_FACTS:
            return f"_failure({_verdicts(values, tests)})"
        # each fact's verdict as a digit in base 3 (0 fine, 1 missing, 2 invalid)
        prepared: list[object] = [None]
        for code in range(1, 3 ** len(self.required)):
            verdicts = tuple((None, "missing", "invalid")[code // 3**i % 3] for i in range(len(self.required)))
            prepared.append(self.failure(verdicts))
        self.env["_FAIL"] = prepared
        digits = [
            f"(0 if not ({test}) else 1 if {value} is _U else 2){f' * {3**i}' if i else ''}"
            for i, (value, test) in enumerate(zip(values, tests, strict=True))
        ]
        return f"_FAIL[{' + '.join(digits)}]"

    def params(self, *extra: str) -> str:
        return ", ".join(["_f", *self.facts, *(ROOT_LOCALS[r] for r in self.roots), *extra])

    def chain(
        self,
        rules: Sequence[tuple[int, Condition | None]],
        returns: Callable[[int], str],
        literals: Callable[[int, int, Condition], Literals],
        bound: Mapping[str, tuple[str, str]] | None = None,
        assumed: Mapping[int, int] | None = None,
        indent: str = "    ",
        fetch_roots: bool = False,
    ) -> list[str]:
        """`if` statements trying `rules` in order; values asked twice are shared.

        `assumed[i]` is a conjunct of rule `i` known to hold here (not tested again).
        With `fetch_roots`, a root (`context`, ...) is read just before the first rule
        that needs it, as a person writes it: rules before it never pay for it.
        """
        fetched: set[str] = set()
        assumed = assumed or {}
        counts: dict[str, int] = {}
        for index, condition in rules:
            if condition is not None:
                for key in self._asked(condition, bound, assumed.get(index))[0]:
                    counts[key] = counts.get(key, 0) + 1
        shared = Shared({key for key, n in counts.items() if n > 1}, bound)
        lines: list[str] = []
        for slot, (index, condition) in enumerate(rules):
            if condition is None:
                lines.append(f"{indent}return {returns(index)}")
                break
            shape = condition.shape
            if fetch_roots:
                for root in sorted(self._asked(condition, bound, assumed.get(index))[1] - fetched):
                    lines.append(f"{indent}{ROOT_LOCALS[root]} = _f.get({root!r}, _U)")
                    fetched.add(root)
            gen = Codegen(shape.checked, literals(slot, index, condition), self.pool, self.data,
                          shared=shared, keys=shared.keys(shape), assume=assumed.get(index))
            code = gen.condition(shape.checked.node)
            lines += [f"{indent}{statement}" for statement in shared.take()]
            if code == "True":
                lines.append(f"{indent}return {returns(index)}")
                break
            lines += [f"{indent}if {code}:", f"{indent}    return {returns(index)}"]
        return lines

    def inline(self, slot: int, index: int, condition: Condition) -> Literals:
        return Literals(condition, self.pool)

    def compile(self, source: str) -> None:
        self.sources.append(source)
        # each source is generated from the AST, never from policy text
        exec(compile(source, "<policy>", "exec"), self.env)

    def finish(self) -> None:
        self.env.update({f"_k{i}": value for i, value in enumerate(self.pool.values)})

    # -- rules in order ---------------------------------------------------------------
    def in_order(self) -> tuple[Callable[[Facts], Any], str]:
        self.env.update({f"_o{i}": outcome for i, outcome in enumerate(self.outcomes)})
        numbered = list(enumerate(self.rules))
        closed = bool(numbered) and numbered[-1][1] is None
        ending = [] if closed else ["    return _default"]
        chunks = [numbered[i : i + CHUNK_SIZE] for i in range(0, len(numbered), CHUNK_SIZE)] or [[]]
        if len(chunks) == 1:
            body = self.chain(chunks[0], lambda i: f"_o{i}", self.inline, fetch_roots=True)
            self.finish()
            self.compile("\n".join(["def _program(_f):", *self.prelude(roots=False), *body, *ending]) + "\n")
        else:
            calls: list[str] = []
            for n, chunk in enumerate(chunks):
                body = self.chain(chunk, lambda i: f"_o{i}", self.inline)
                self.compile("\n".join([f"def _chunk{n}({self.params()}):", *body]) + "\n")
                calls += [f"    _r = _chunk{n}({self.params()})", "    if _r is not None:", "        return _r"]
            self.finish()
            self.compile("\n".join(["def _program(_f):", *self.prelude(), *calls, *ending]) + "\n")
        return self.env["_program"], "".join(self.sources)

    # -- indexed ----------------------------------------------------------------------
    def key_code(self, key: IndexKey, shared: Shared) -> str:
        gen = Codegen(key.shape.checked, None, self.pool, self.data, shared=shared, keys=shared.keys(key.shape))
        code, _ = gen.expr(key.node)
        return code

    def key_function(self, plan: Plan) -> Callable[[Facts], dict[str, object]]:
        """Each key's value for some facts (for explanations)."""
        shared = Shared(set())
        values = [self.key_code(key, shared) for key in plan.keys]
        lines = ["def _keys(_f):", *(f"    {name} = {_fetch(name[2:])}" for name in self.facts)]
        lines += [f"    {ROOT_LOCALS[root]} = _f.get({root!r}, _U)" for root in ROOT_LOCALS]
        lines += [f"    {s}" for s in shared.take()]
        lines.append("    return (" + "".join(f"{v}, " for v in values) + ")")
        self.finish()
        self.compile("\n".join(lines) + "\n")
        function = self.env["_keys"]
        names = [key.key for key in plan.keys]

        def key_values(facts: Facts) -> dict[str, object]:
            return dict(zip(names, function(facts), strict=True))

        return key_values

    def indexed(self, plan: Plan) -> tuple[Callable[[Facts], Any], str]:
        n = len(self.rules)
        self.env["_O"] = (*self.outcomes[:n], self.default)
        self.env["_interval"] = interval_of
        self._assumed = plan.assumed
        body: list[str] = []
        shared = Shared(set())
        scan = [i for i in plan.scan if i < n]
        # one key whose value picks one bucket, nothing to scan: its answer is the answer
        self._single = not scan and len(plan.keys) == 1 and plan.keys[0].kind in ("eq", "truth", "range")
        if not self._single:
            body.append(f"    _i = {n}")
        # keys in the order of their first rule; a key whose rules all come after the
        # best match so far is not even computed
        for k, key in sorted(enumerate(plan.keys), key=lambda item: item[1].rules[0]):
            code = self.key_code(key, shared)
            block = [f"    {s}" for s in shared.take()]
            block.append(f"    _kv{k} = {code}")
            block += self.lookup(k, key)
            if self._single or key.rules[0] == 0:
                body += block
            else:
                body.append(f"    if _i > {key.rules[0]}:")
                body += [f"    {line}" for line in block]
        chunks = [scan[i : i + CHUNK_SIZE] for i in range(0, len(scan), CHUNK_SIZE)]
        for c, chunk in enumerate(chunks):
            lines = self.chain([(i, self.rules[i]) for i in chunk], str, self.inline)
            self.compile("\n".join([f"def _scan{c}({self.params()}):", *lines, f"    return {n}"]) + "\n")
            body += [
                f"    if _i > {chunk[0]}:",
                f"        _r = _scan{c}({self.params()})",
                "        if _r < _i:",
                "            _i = _r",
            ]
        body.append("    return _default" if self._single else "    return _O[_i]")
        self.finish()
        self.compile("\n".join(["def _program(_f):", *self.prelude(), *body]) + "\n")
        return self.env["_program"], "".join(self.sources)

    def bucket(self, rules: Sequence[int], k: int) -> object:
        """What a table holds for these rules of key `k`: with one key and no scan rules,
        `(function, values)`; else the chunks `((first rule, function, values), ...)`."""
        if not rules:
            return None
        if len(rules) == 1 and self._single:  # the common case of a large set: no cache needed
            return self.chunk(rules, k)
        cached = self._buckets.get((k, *rules))
        if cached is not None:
            return cached
        chunks = [self.chunk(rules[i : i + BUCKET_SIZE], k) for i in range(0, len(rules), BUCKET_SIZE)]
        made: object
        if not self._single:
            made = tuple((rules[i * BUCKET_SIZE], function, args) for i, (function, args) in enumerate(chunks))
        elif len(chunks) == 1:
            made = chunks[0]
        else:
            made = (self.runner(), tuple(chunks))
        self._buckets[(k, *rules)] = made
        return made

    def runner(self) -> Any:
        """A function trying the chunks of a large bucket in turn (one key, no scan)."""
        if "_chunks" not in self.env:
            n = len(self.rules)
            self.compile("\n".join([
                f"def _chunks({self.params('_kv', '_a')}):",
                "    for _fn, _b in _a:",
                f"        _r = _fn({self.params('_kv', '_b')})",
                f"        if _r < {n}:",
                "            return _r",
                f"    return {n}",
            ]) + "\n")
        return self.env["_chunks"]

    def chunk(self, rules: Sequence[int], k: int) -> tuple[Any, tuple[object, ...]]:
        """The function trying these rules (in order) and the values it is called with."""
        if len(rules) == 1:
            first = rules[0]
            signature: tuple[object, ...] = (k, id(self.rules[first].shape), self._assumed[first])  # type: ignore[union-attr]
            made = self._signatures.get(signature)
            if made is not None:
                condition = self.rules[first]
                assert condition is not None
                return self.env[made[0]], (first, *made[1][0].bind(condition))
        assumed = {i: a for i in rules if (a := self._assumed[i]) is not None}
        if len(rules) != 1:
            signature = (k, *((id(self.rules[i].shape), assumed.get(i)) for i in rules))  # type: ignore[union-attr]
            made = self._signatures.get(signature)
        if made is None:
            name = f"_bucket{len(self._signatures)}"
            slots: list[Literals] = []

            def named(slot: int, index: int, condition: Condition) -> Literals:
                literals = Literals(condition, self.pool, prefix=f"_p{slot}_")
                slots.append(literals)
                return literals

            slot_of = {index: slot for slot, index in enumerate(rules)}
            lines = self.chain([(i, self.rules[i]) for i in rules], lambda i: f"_i{slot_of[i]}", named,
                               bound=self._bound[k], assumed=assumed)
            unpack: list[str] = []
            for slot, literals in enumerate(slots):
                unpack += [f"_i{slot}", *literals.names()]
            used = set(re.findall(r"\b_[ip]\d+_?\w*", "\n".join(lines)))
            unpack = [n if n in used else "_" for n in unpack]  # a probe's own constant is not read
            head = [f"def {name}({self.params(f'_kv{k}', '_a')}):"]
            if unpack:
                head.append(f"    {', '.join(unpack)}{',' if len(unpack) == 1 else ''} = _a")
            self.compile("\n".join([*head, *lines, f"    return {len(self.rules)}"]) + "\n")
            made = self._signatures[signature] = (name, slots)
        name, slots = made
        args: list[object] = []
        # the rules after one known to match here were not generated (never tried)
        for slot, index in enumerate(rules[: len(slots)]):
            condition = self.rules[index]
            assert condition is not None
            args.append(index)
            args += slots[slot].bind(condition)
        return self.env[name], tuple(args)

    def lookup(self, k: int, key: IndexKey) -> list[str]:
        """Statements finding the buckets key `k`'s value admits and running them."""
        self._bound[k] = {key.key: (f"_kv{k}", "value")}
        v = f"_kv{k}"
        if self._single:
            call = [f"return _O[_b[0]({self.params(v, '_b[1]')})]"]
        else:
            call = [
                "for _first, _fn, _a in _b:",
                "    if _first >= _i:",
                "        break",
                f"    _r = _fn({self.params(v, '_a')})",
                "    if _r < _i:",
                "        _i = _r",
                "        break",
            ]

        def run(indent: str) -> list[str]:
            return [f"{indent}if _b is not None:", *(f"{indent}    {line}" for line in call)]

        def tables(prefix: str) -> dict[str, str]:
            names: dict[str, str] = {}
            for value_class, table in key.table.items():
                name = f"_T{k}{prefix}{value_class}"
                self.env[name] = {value: self.bucket(rules, k) for value, rules in table.items()}
                names[value_class] = name
            return names

        lines: list[str] = []
        if key.kind == "truth":
            names = tables("")
            table = self.env.get(names.get("truth", ""), {})
            for flag in ("T", "F", "O"):
                self.env[f"_T{k}{flag}"] = table.get(flag)
            lines.append(f"    _b = _T{k}T if {v} is True else _T{k}F if {v} is False else _T{k}O")
            return lines + run("    ")
        if key.kind == "range":
            self.env[f"_B{k}"] = key.bounds
            self.env[f"_R{k}"] = [self.bucket(rules, k) for rules in key.intervals]
            lines.append(f"    if {v}.__class__ in _NUM and {v} == {v}:")
            lines.append(f"        _b = _R{k}[_interval(_B{k}, {v})]")
            return lines + run("        ")
        names = tables("")
        if key.kind == "eq":
            return lines + self._typed_lookup(v, names, "    ") + run("    ")
        if key.kind in ("prefix", "suffix"):
            # each length of the constants: the value's prefix (suffix) of that length
            self.env[f"_L{k}"] = key.bounds
            piece = f"{v}[:_n]" if key.kind == "prefix" else f"{v}[_len({v}) - _n:]"
            lines.append(f"    if {v}.__class__ is _str:")
            lines.append(f"        for _n in _L{k}:")
            lines.append(f"            if _n > _len({v}):")
            lines.append("                break")
            lines.append(f"            _b = {names['str']}.get({piece})")
            return lines + run("            ")
        # has / elem: the value is a list whose items are looked up (has: also a map's keys,
        # or, for a string, each string constant it contains)
        lines.append(f"    if {v}.__class__ is _list:")
        lines.append(f"        for _x in {v}:")
        lines += self._typed_lookup("_x", names, "            ")
        lines += run("            ")
        if key.kind == "has" and "str" in names:
            lines.append(f"    elif {v}.__class__ is _dict:")
            lines.append(f"        for _x in {v}:")
            lines.append(f"            _b = {names['str']}.get(_x)")
            lines += run("            ")
            self.env[f"_H{k}"] = list(self.env[names["str"]].items())
            lines.append(f"    elif {v}.__class__ is _str:")
            lines.append(f"        for _x, _b in _H{k}:")
            lines.append(f"            if _x in {v}:")
            lines += [f"                {line}" for line in call]
        return lines

    def _typed_lookup(self, v: str, names: dict[str, str], indent: str) -> list[str]:
        """`_b = <the bucket of v's value>`: values of another type are never equal."""
        branches: list[tuple[str, str]] = []
        if "str" in names:
            branches.append((f"{v}.__class__ is _str", f"{names['str']}.get({v})"))
        if "num" in names:
            branches.append((f"{v}.__class__ in _NUM", f"{names['num']}.get({v})"))
        for flag, test in (("true", "is True"), ("false", "is False"), ("null", "is None")):
            if flag in names:
                branches.append((f"{v} {test}", f"{names[flag]}.get({v})"))
        if not branches:
            return [f"{indent}_b = None"]
        expression = "None"
        for test, found in reversed(branches):
            expression = f"{found} if {test} else {expression}"
        return [f"{indent}_b = {expression}"]


# -- the explaining variant -------------------------------------------------------------------
class _Explainer(Generic[Outcome]):
    """Tries every rule in order through the helpers that report to a tracer."""

    def __init__(
        self,
        rules: list[Condition | None],
        outcomes: list[Outcome],
        default: Outcome,
        data: Mapping[str, object],
        clock: Clock,
        required: Sequence[Required],
    ) -> None:
        self.rules = rules
        self.outcomes = outcomes
        self.default = default
        self.data = data
        self.clock = clock
        self.plan: Plan | None = None
        self.keys: Callable[[Facts], dict[str, object]] | None = None
        #: Per shape: the traced code object, its constants and its literal names.
        self._traced: dict[int, tuple[types.CodeType, dict[str, object], Literals]] = {}

    def _code(self, condition: Condition) -> tuple[types.CodeType, dict[str, object], Literals]:
        shape = condition.shape
        found = self._traced.get(id(shape))
        if found is None:
            pool = Pool()
            literals = Literals(condition, pool, prefix="_p")
            gen = Codegen(shape.checked, literals, pool, self.data, trace=True)
            code = gen.cond(shape.checked.node)
            names = literals.names()
            lines = [f"def _traced(_f, {', '.join(ROOT_LOCALS.values())}{''.join(', ' + n for n in names)}):"]
            lines += [f"    f_{name} = _f.get({name!r}, _U)" for name in shape.checked.guaranteed]
            lines.append(f"    return {code}")
            module = compile("\n".join(lines) + "\n", "<policy>", "exec")
            function_code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
            constants = {f"_k{i}": value for i, value in enumerate(pool.values)}
            found = self._traced[id(shape)] = (function_code, constants, literals)
        return found

    def explain(self, facts: Facts, tracer: Tracer) -> Outcome | None:
        env = namespace(self.clock, tracer)
        roots = [facts.get(root, UNDEFINED) for root in ROOT_LOCALS]
        excluded: dict[int, tuple[Probe, ...]] = {}
        values: dict[str, object] = {}
        if self.plan is not None and self.keys is not None:
            values = self.keys(facts)
            excluded = self.plan.excluded(values)
        functions: dict[int, Callable[..., bool]] = {}
        for i, condition in enumerate(self.rules):
            tracer.begin(i)
            if condition is None:
                tracer.end(True)
                return self.outcomes[i]
            probes = excluded.get(i)
            if probes is not None:
                for probe in probes:
                    value = values.get(probe.key, UNDEFINED)
                    tracer.read(probe.key, value)
                    tracer.note(f"{probe.key} is {_shown(value)}, rule needs {probe.describe()}")
                tracer.end(False)
                continue
            function = functions.get(id(condition.shape))
            code, constants, literals = self._code(condition)
            if function is None:
                function = functions[id(condition.shape)] = types.FunctionType(code, {**env, **constants})
            matched = function(facts, *roots, *literals.bind(condition))
            tracer.end(matched)
            if matched:
                return self.outcomes[i]
        return self.default


def _shown(value: object) -> str:
    if value is UNDEFINED:
        return "undefined"
    text = show_value(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    pool = Pool()
    gen = Codegen(unguarded, None, pool, data or {})
    code, _ = gen.expr(checked.node)
    lines = ["def _value(_f):"]
    lines += [f"    {ROOT_LOCALS[root]} = _f.get({root!r}, _U)" for root in sorted(gen.roots_used)]
    lines.append(f"    return {code}")
    env = namespace(clock)
    env.update({f"_k{i}": value for i, value in enumerate(pool.values)})
    exec(compile("\n".join(lines) + "\n", "<expression>", "exec"), env)
    function: Callable[[Facts], object] = env["_value"]
    return function


__all__ = [
    "PREPARED_FACTS", "EvidenceCheck", "Facts", "Program", "Required", "Tracer", "Verdicts", "compile_expression",
    "compile_program", "refuses_every_mistyped",
]
