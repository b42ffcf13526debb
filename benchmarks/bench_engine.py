#!/usr/bin/env python3
"""Decision-engine benchmark (issue 2): the engine against a hand-written floor and peers.

    make bench                                  # installs the [bench] extra, then runs this
    .venv/bin/python benchmarks/bench_engine.py [--quick] [--profile] [--json out.json]

One run, same inputs for every contender:

1. The shipped policies (`policies/`), in microseconds per decision, for
   - the engine (`engine.load("policies").decide(purpose, facts)`),
   - a hand-written Python function with the same rules and the same fail-closed
     evidence checks, returning precomputed result tuples (the floor),
   - peers from the `[bench]` extra: Rego (regopy), CEL (cel-python and the Rust-backed
     common-expression-language), rule-engine and Cedar (cedarpy). Their sources are in
     `benchmarks/peers/` (Rego, CEL, Cedar) and below (rule-engine).
   Every contender's decision is checked against the engine's on every input before any
   timing; the script exits 1 on a disagreement.
2. Synthetic policies of 200 and 10,000 rules in five shapes: `engine.load` time and the
   per-decision time of a first-rule match, a middle match and no match (the default).
3. The memory the loaded 10,000-rule set adds: tracemalloc's current size after the load,
   and RSS before/after, each in a fresh subprocess.

Timings are timeit-style: the best of --repeat runs of a loop sized to take --min-time.
Missed targets are reported, not failed: this is a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import itertools
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "peers"
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402  (after the path fix, so a plain checkout runs too)

Facts = dict[str, Any]
Result = tuple[str, str, tuple[str, ...]]

# Targets of issue 2.
TARGET_RATIO = 1.5
TARGET_LOAD_S = 2.0
TARGET_MEMORY_MB = 50.0

# -- outcomes: the decision tuples every contender returns -------------------------------
MISSING_EVIDENCE: Result = ("fail", "missing_evidence", ())
INVALID_EVIDENCE: Result = ("fail", "invalid_evidence", ())
SANCTIONED: Result = ("fail", "sanctioned", ())
INVALID_CITIZEN: Result = ("fail", "invalid_citizen", ())
UNDERAGE: Result = ("fail", "underage", ())
ALL_CHECKS_PASSED: Result = ("pass", "all_checks_passed", ())
MISSING_CREDENTIAL: Result = ("pass_with_conditions", "missing_credential", ("obtain_age_credential",))
POLITICALLY_EXPOSED: Result = ("pass_with_conditions", "politically_exposed", ("enhanced_due_diligence",))
NOT_LISTED: Result = ("pass", "not_listed", ())
MANUAL_REVIEW: Result = ("pass_with_conditions", "manual_review_required", ("compliance_review",))
APPROVED: Result = ("pass", "approved", ())

#: Reason -> outcome, per policy. Peers answer with the reason; this turns it into the tuple.
OUTCOMES: dict[str, dict[str, Result]] = {
    policy: {r[1]: r for r in (MISSING_EVIDENCE, INVALID_EVIDENCE, *results)}
    for policy, results in {
        "age_verification": (SANCTIONED, INVALID_CITIZEN, UNDERAGE, ALL_CHECKS_PASSED, MISSING_CREDENTIAL),
        "sanctions_screening": (SANCTIONED, POLITICALLY_EXPOSED, NOT_LISTED),
        "high_value_transfer": (SANCTIONED, INVALID_CITIZEN, MANUAL_REVIEW, APPROVED),
    }.items()
}
POLICIES = tuple(OUTCOMES)

# -- the floor: the shipped policies written by hand ---------------------------------------
_ABSENT = object()
_NUMBERS = (int, float)


def age_verification(facts: Facts) -> Result:
    get = facts.get
    sanctioned = get("sanctions_listed", _ABSENT)
    citizen = get("citizen_valid", _ABSENT)
    adult = get("is_over_18", _ABSENT)
    credential = get("has_credential", _ABSENT)
    if sanctioned is _ABSENT or citizen is _ABSENT or adult is _ABSENT or credential is _ABSENT:
        return MISSING_EVIDENCE
    if (
        sanctioned.__class__ is not bool
        or citizen.__class__ is not bool
        or adult.__class__ is not bool
        or credential.__class__ is not bool
    ):
        return INVALID_EVIDENCE
    if sanctioned:
        return SANCTIONED
    if not citizen:
        return INVALID_CITIZEN
    if not adult:
        return UNDERAGE
    if credential:
        return ALL_CHECKS_PASSED
    return MISSING_CREDENTIAL


def sanctions_screening(facts: Facts) -> Result:
    get = facts.get
    sanctioned = get("sanctions_listed", _ABSENT)
    pep = get("is_pep", _ABSENT)
    if sanctioned is _ABSENT or pep is _ABSENT:
        return MISSING_EVIDENCE
    if sanctioned.__class__ is not bool or pep.__class__ is not bool:
        return INVALID_EVIDENCE
    if sanctioned:
        return SANCTIONED
    if pep:
        return POLITICALLY_EXPOSED
    return NOT_LISTED


def high_value_transfer(facts: Facts) -> Result:
    get = facts.get
    citizen = get("citizen_valid", _ABSENT)
    sanctioned = get("sanctions_listed", _ABSENT)
    pep = get("is_pep", _ABSENT)
    if citizen is _ABSENT or sanctioned is _ABSENT or pep is _ABSENT:
        return MISSING_EVIDENCE
    if citizen.__class__ is not bool or sanctioned.__class__ is not bool or pep.__class__ is not bool:
        return INVALID_EVIDENCE
    if sanctioned:
        return SANCTIONED
    if not citizen:
        return INVALID_CITIZEN
    if pep:
        context = get("context")
        if context.__class__ is dict:
            amount = context.get("amount")
            if amount.__class__ in _NUMBERS and amount > 10000:
                return MANUAL_REVIEW
    return APPROVED


HAND_WRITTEN: dict[str, Callable[[Facts], Result]] = {
    "age_verification": age_verification,
    "sanctions_screening": sanctions_screening,
    "high_value_transfer": high_value_transfer,
}

# -- inputs ------------------------------------------------------------------------------
EVIDENCE = {
    "age_verification": ("sanctions_listed", "citizen_valid", "is_over_18", "has_credential"),
    "sanctions_screening": ("sanctions_listed", "is_pep"),
    "high_value_transfer": ("citizen_valid", "sanctions_listed", "is_pep"),
}
_NO_AMOUNT = object()
_NO_CONTEXT = object()
AMOUNTS: tuple[object, ...] = (
    0, 9999, 9999.99, 10000, 10000.0, 10000.01, 10001, 250000,  # numbers around the threshold
    "20000", None, True, [20000], _NO_AMOUNT, _NO_CONTEXT,  # ill-typed or missing: no match
)


def rule_inputs(policy: str) -> list[Facts]:
    """Every combination of the declared boolean facts (times the amounts, for transfers)."""
    names = EVIDENCE[policy]
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product((False, True), repeat=len(names))]
    if policy != "high_value_transfer":
        return [{**c, "context": {"national_id": "AB123456"}} for c in combos]
    inputs = []
    for combo, amount in itertools.product(combos, AMOUNTS):
        facts: Facts = dict(combo)
        if amount is _NO_CONTEXT:
            pass
        elif amount is _NO_AMOUNT:
            facts["context"] = {"national_id": "AB123456"}
        else:
            facts["context"] = {"national_id": "AB123456", "amount": amount}
        inputs.append(facts)
    return inputs


def evidence_inputs(policy: str) -> list[Facts]:
    """Declared evidence missing or ill-typed: every contender must fail closed."""
    names = EVIDENCE[policy]
    valid: Facts = {name: False for name in names}
    valid["context"] = {"national_id": "AB123456", "amount": 500}
    cases: list[Facts] = [{}, {"context": valid["context"]}]
    for name in names:
        cases.append({k: v for k, v in valid.items() if k != name})  # missing
        for bad in ("false", None, 0, 1, [True], {"value": True}):  # present, not a bool
            cases.append({**valid, name: bad})
    first, last = names[0], names[-1]
    cases.append({k: ("true" if k == first else v) for k, v in valid.items() if k != last})  # both: missing wins
    return cases


# -- peers -------------------------------------------------------------------------------
class NotExpressible(Exception):
    """The peer cannot express this policy faithfully."""


class Unrepresentable(Exception):
    """The peer cannot even receive this input (e.g. Cedar has no null, no 10000.5)."""


@dataclass
class Peer:
    name: str
    distribution: str
    #: policy -> a function facts -> Result (raises NotExpressible).
    prepare: Callable[[str], Callable[[Facts], Result]]
    note: str = ""


def _read(policy: str, suffix: str) -> str:
    return (PEERS_DIR / f"{policy}{suffix}").read_text(encoding="utf-8")


def rego_peer() -> Peer:
    import regopy

    def prepare(policy: str) -> Callable[[Facts], Result]:
        # Compile once into a bundle; per decision: set the input, run the entrypoint's plan.
        # (Interpreter.query() re-compiles every time: about 10x slower.)
        rego = regopy.Interpreter()
        rego.add_module(f"{policy}.rego", _read(policy, ".rego"))
        entrypoint = f"{policy}/decision"
        bundle = rego.build(None, [entrypoint])
        if not bundle.ok():
            raise NotExpressible(f"bundle did not build: {bundle.node()}")
        set_input, query, table = rego.set_input, rego.query_bundle_entrypoint, OUTCOMES[policy]

        def decide(facts: Facts) -> Result:
            set_input(facts)
            return table[query(bundle, entrypoint).results[0].expressions[0]]

        return decide

    return Peer("Rego (regopy)", "regopy", prepare, "bundle + query_bundle_entrypoint")


def cel_python_peer() -> Peer:
    import celpy

    def prepare(policy: str) -> Callable[[Facts], Result]:
        source = _read(policy, ".cel")
        try:  # the transpiling runner, when it copes with the expression
            env = celpy.Environment(runner_class=celpy.CompiledRunner)
            program = env.program(env.compile(source))
            runner = "CompiledRunner"
        except Exception as err:  # celpy 0.5.0: AttributeError on these ternary chains
            env = celpy.Environment()
            program = env.program(env.compile(source))
            runner = f"InterpretedRunner (CompiledRunner failed: {type(err).__name__})"
        if runner not in peer.note:
            peer.note = "; ".join(filter(None, (peer.note, runner)))
        evaluate, to_cel, table = program.evaluate, celpy.json_to_cel, OUTCOMES[policy]

        def decide(facts: Facts) -> Result:
            return table[evaluate({"f": to_cel(facts)})]

        return decide

    peer = Peer("CEL (cel-python)", "cel-python", prepare)
    return peer


def cel_rust_peer() -> Peer:
    import cel

    def prepare(policy: str) -> Callable[[Facts], Result]:
        program = cel.compile(_read(policy, ".cel"))
        execute, table = program.execute, OUTCOMES[policy]

        def decide(facts: Facts) -> Result:
            return table[execute({"f": facts})]

        return decide

    return Peer("CEL (common-expression-language)", "common-expression-language", prepare, "compile + execute")


#: rule-engine: (expression, reason) in order; the last reason is the `else`. The facts are
#: `f`. An evaluation error (a type mismatch, a missing key) makes a rule not match, which
#: is the engine's undefined semantics; rule-engine has no type test to write it in-line.
RULE_ENGINE_RULES: dict[str, tuple[tuple[str, str], ...]] = {}


def _rule_engine_evidence(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    present = " and ".join(f"'{n}' in f" for n in names)
    typed = " and ".join(f"(f['{n}'] == true or f['{n}'] == false)" for n in names)
    return ((f"not ({present})", "missing_evidence"), (f"not ({typed})", "invalid_evidence"))


RULE_ENGINE_RULES["age_verification"] = (
    *_rule_engine_evidence(EVIDENCE["age_verification"]),
    ("f['sanctions_listed']", "sanctioned"),
    ("not f['citizen_valid']", "invalid_citizen"),
    ("not f['is_over_18']", "underage"),
    ("f['has_credential']", "all_checks_passed"),
    ("true", "missing_credential"),
)
RULE_ENGINE_RULES["sanctions_screening"] = (
    *_rule_engine_evidence(EVIDENCE["sanctions_screening"]),
    ("f['sanctions_listed']", "sanctioned"),
    ("f['is_pep']", "politically_exposed"),
    ("true", "not_listed"),
)
RULE_ENGINE_RULES["high_value_transfer"] = (
    *_rule_engine_evidence(EVIDENCE["high_value_transfer"]),
    ("f['sanctions_listed']", "sanctioned"),
    ("not f['citizen_valid']", "invalid_citizen"),
    ("f['is_pep'] and f&['context']&['amount'] > 10000", "manual_review_required"),
    ("true", "approved"),
)


def rule_engine_peer() -> Peer:
    import rule_engine

    def prepare(policy: str) -> Callable[[Facts], Result]:
        context = rule_engine.Context(resolver=rule_engine.resolve_item)
        *rules, (_, default) = RULE_ENGINE_RULES[policy]
        compiled = [(rule_engine.Rule(text, context=context).matches, reason) for text, reason in rules]
        table, error = OUTCOMES[policy], rule_engine.EvaluationError

        def decide(facts: Facts) -> Result:
            thing = {"f": facts}
            for matches, reason in compiled:
                try:
                    if matches(thing):
                        return table[reason]
                except error:
                    continue
            return table[default]

        return decide

    return Peer("rule-engine", "rule-engine", prepare, "one Rule per rule, first match")


CEDAR_ELSE = {"age_verification": "missing_credential", "sanctions_screening": "not_listed",
              "high_value_transfer": "approved"}


def cedar_peer() -> Peer:
    import cedarpy

    def prepare(policy: str) -> Callable[[Facts], Result]:
        policies = cedarpy.PolicySet.from_str(_read(policy, ".cedar"))
        entities = cedarpy.Entities.from_json_str("[]")
        request = {  # the dict form: about 2x faster than Cedar surface-syntax strings
            "principal": {"type": "Gateway", "id": "bench"},
            "action": {"type": "Action", "id": "decide"},
            "resource": {"type": "Purpose", "id": policy},
        }
        is_authorized, table, default = cedarpy.is_authorized, OUTCOMES[policy], CEDAR_ELSE[policy]
        no_decision = cedarpy.Decision.NoDecision

        def decide(facts: Facts) -> Result:
            result = is_authorized({**request, "context": facts}, policies, entities)
            diagnostics = result.diagnostics
            reasons = diagnostics.reasons
            if not reasons:
                if result.decision is no_decision:
                    raise Unrepresentable("; ".join(diagnostics.errors))
                return table[default]
            if len(reasons) > 1:
                return ("cedar", "several policies determined", tuple(reasons))
            return table[diagnostics.id_annotations_by_reason[reasons[0]]]

        return decide

    return Peer("Cedar (cedarpy)", "cedarpy", prepare, "PolicySet handle + is_authorized")


PEER_FACTORIES = (rego_peer, cel_python_peer, cel_rust_peer, rule_engine_peer, cedar_peer)


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- timing --------------------------------------------------------------------------------
@dataclass
class Timing:
    min_time: float
    repeat: int

    def per_item_us(self, stmt: str, namespace: dict[str, Any], items: int) -> float:
        """Best-of-`repeat` microseconds per item of a loop over `items` inputs."""
        timer = timeit.Timer(stmt, globals=namespace)
        number = 1
        while True:  # as timeit.autorange, to at least min_time per run
            elapsed = timer.timeit(number)
            if elapsed >= self.min_time:
                break
            number = max(number * 2, int(number * self.min_time / max(elapsed, 1e-9) * 1.1))
        best = min([elapsed, *timer.repeat(repeat=self.repeat - 1, number=number)])
        return best / (number * items) * 1e6


# -- part 1: shipped policies -----------------------------------------------------------
@dataclass
class Row:
    policy: str
    inputs: str
    count: int
    engine_us: float
    hand_us: float
    peers: dict[str, float | str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.engine_us / self.hand_us


def as_result(decision: engine.Decision) -> Result:
    return (decision.status, decision.reason, decision.conditions)


def check(
    name: str, policy: str, fn: Callable[[Facts], Result], inputs: list[Facts], expected: list[Result]
) -> tuple[list[str], int]:
    """Disagreements of `fn` with the engine on `inputs`, and how many inputs it could not take."""
    problems: list[str] = []
    unrepresentable = 0
    for facts, want in zip(inputs, expected, strict=True):
        try:
            got = fn(facts)
        except Unrepresentable:
            unrepresentable += 1
            continue
        except Exception as err:
            got = ("error", f"{type(err).__name__}: {err}", ())
        if got != want:
            problems.append(f"{name} / {policy}: {facts!r}: engine {want}, {name} {got}")
    return problems, unrepresentable


def shipped(timing: Timing, out: dict[str, Any]) -> list[str]:
    policies = engine.load(ROOT / "policies")
    peers: list[Peer] = []
    out["peers"] = {}
    for factory in PEER_FACTORIES:
        label = factory.__name__
        try:
            peer = factory()
        except ImportError as err:
            out["peers"][label] = {"status": f"not installed: {err}"}
            print(f"  peer {label}: NOT INSTALLED ({err})")
            continue
        peers.append(peer)
        out["peers"][peer.name] = {"version": version(peer.distribution)}

    disagreements: list[str] = []
    prepared: dict[tuple[str, str], Callable[[Facts], Result] | str] = {}
    sets = {p: {"rules": rule_inputs(p), "evidence": evidence_inputs(p)} for p in POLICIES}
    unrepresentable: dict[tuple[str, str, str], int] = {}
    for policy in POLICIES:
        decide = policies.decide
        for kind, inputs in sets[policy].items():
            expected = [as_result(decide(policy, f)) for f in inputs]
            problems, _ = check("hand-written", policy, HAND_WRITTEN[policy], inputs, expected)
            disagreements += problems
            for peer in peers:
                key = (peer.name, policy)
                if key not in prepared:
                    try:
                        prepared[key] = peer.prepare(policy)
                    except NotExpressible as err:
                        prepared[key] = f"not expressible: {err}"
                    except Exception as err:
                        prepared[key] = f"failed to compile: {type(err).__name__}: {err}"
                fn = prepared[key]
                if isinstance(fn, str):
                    continue
                problems, skipped = check(peer.name, policy, fn, inputs, expected)
                disagreements += problems
                unrepresentable[(peer.name, policy, kind)] = skipped
    for peer in peers:
        out["peers"][peer.name]["note"] = peer.note
    out["unrepresentable"] = {"/".join(k): v for k, v in unrepresentable.items() if v}
    if disagreements:
        return disagreements

    rows: list[Row] = []
    for policy in POLICIES:
        for kind, inputs in sets[policy].items():
            n = len(inputs)
            engine_us = timing.per_item_us(
                "for f in inputs: decide(purpose, f)",
                {"inputs": inputs, "decide": policies.decide, "purpose": policy}, n,
            )
            hand_us = timing.per_item_us("for f in inputs: fn(f)", {"inputs": inputs, "fn": HAND_WRITTEN[policy]}, n)
            row = Row(policy, kind, n, engine_us, hand_us)
            for peer in peers:
                fn = prepared[(peer.name, policy)]
                skipped = unrepresentable.get((peer.name, policy, kind), 0)
                if isinstance(fn, str):
                    row.peers[peer.name] = fn
                elif skipped:
                    row.peers[peer.name] = f"cannot take {skipped} of {n} inputs"
                else:
                    row.peers[peer.name] = timing.per_item_us("for f in inputs: fn(f)", {"inputs": inputs, "fn": fn}, n)
            rows.append(row)
            print_row(row)
    out["shipped"] = [
        {"policy": r.policy, "inputs": r.inputs, "count": r.count, "engine_us": r.engine_us,
         "hand_us": r.hand_us, "ratio": r.ratio, "peers": r.peers}
        for r in rows
    ]
    return []


def print_row(row: Row) -> None:
    print(f"  {row.policy:<20} {row.inputs:<8} n={row.count:<4} engine {row.engine_us:8.3f} us"
          f"   hand-written {row.hand_us:7.3f} us   ratio {row.ratio:4.2f}x")
    for name, value in row.peers.items():
        if isinstance(value, float):
            print(f"  {'':<35} {name:<34} {value:10.2f} us   engine is {value / row.engine_us:8.1f}x faster")
        else:
            print(f"  {'':<35} {name:<34} {value}")


# -- part 2: synthetic rule sets -------------------------------------------------------------
HIGH_RISK = ["AF", "BY", "CU", "IR", "KP", "MM", "RU", "SS", "SY", "VE", "YE", "ZW"]
TEMPLATES = (
    'context.amount > {amount} AND context.country == "C{i}"',  # context comparisons
    'context.country in data.high_risk_countries AND context.segment == "seg{i}"',  # `in` a data doc
    'NOT is_pep AND (context.channel == "web{i}" OR context.channel == "app{i}")',  # NOT/AND/OR
    'startswith(context.national_id, "N{i}X") AND len(credentials) >= {k}',  # function calls
    'any(c in credentials, c == "cred{i}") OR lower(context.region) == "region{i}"',  # quantifier
)
NO_MATCH: Facts = {
    "is_pep": False,
    "credentials": ["passport", "driving_licence"],
    "context": {"amount": 0, "country": "ZZ", "segment": "none", "channel": "none",
                "national_id": "QQ000000", "region": "nowhere"},
}


def synthetic_policy(rules: int) -> str:
    lines = [
        "purposes:",
        "  synthetic:",
        f"    description: {rules} generated rules in {len(TEMPLATES)} shapes",
        "    context:",
        *(f"      {name}: {{type: {kind}}}" for name, kind in (
            ("amount", "number"), ("country", "string"), ("segment", "string"),
            ("channel", "string"), ("national_id", "string"), ("region", "string"))),
        "    evidence: [is_pep, credentials]",
        "    rules:",
    ]
    for i in range(rules):
        condition = TEMPLATES[i % len(TEMPLATES)].format(i=i, amount=1000 + i, k=i % 4)
        status = ("fail", "pass", "pass_with_conditions")[i % 3]
        lines += [f"      - if: '{condition}'", f"        then: {status}", f"        reason: rule_{i}"]
        if status == "pass_with_conditions":
            lines.append("        conditions: [manual_review]")
    return "\n".join(lines) + "\n"


def write_synthetic(directory: Path, rules: int) -> Path:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "data" / "high_risk_countries.yaml").write_text(
        "".join(f"- {c}\n" for c in HIGH_RISK), encoding="utf-8"
    )
    (directory / "synthetic.yaml").write_text(synthetic_policy(rules), encoding="utf-8")
    return directory


def matching_facts(i: int) -> Facts:
    """Facts that match rule `i` and no earlier rule."""
    facts: Facts = json.loads(json.dumps(NO_MATCH))
    context = facts["context"]
    match i % len(TEMPLATES):
        case 0:
            context.update(amount=10**9, country=f"C{i}")
        case 1:
            context.update(country="IR", segment=f"seg{i}")
        case 2:
            context["channel"] = f"web{i}"
        case 3:
            context["national_id"] = f"N{i}X0001"
            facts["credentials"] = ["passport", "driving_licence", "residence_permit"]
        case 4:
            context["region"] = f"REGION{i}"
    return facts


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, directory: str) -> None:
    """Run in a fresh interpreter: what loading `directory` adds (printed as JSON)."""
    engine.load(ROOT / "policies")  # warm: grammar, parser tables, pydantic models
    gc.collect()
    if kind == "rss":
        before = rss_bytes()
        start = time.perf_counter()
        policy_set = engine.load(directory)
        seconds = time.perf_counter() - start
        gc.collect()
        after = rss_bytes()
        trimmed = after
        try:  # diagnostic: how much of the growth is freed memory the C allocator kept
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            trimmed = rss_bytes()
        except (OSError, AttributeError):
            pass
        print(json.dumps({"rss_before": before, "rss_after": after, "rss_after_trim": trimmed,
                          "first_load_s": seconds}))
    else:
        tracemalloc.start()
        policy_set = engine.load(directory)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        print(json.dumps({"traced_current": current, "traced_peak": peak}))
    del policy_set


def run_child(kind: str, directory: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(directory)],
        capture_output=True, text=True, check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def synthetic(timing: Timing, sizes: list[int], loads: dict[int, int], profile: bool, out: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    out["synthetic"] = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        for rules in sizes:
            directory = write_synthetic(Path(tmp) / f"rules{rules}", rules)
            policy_set = None
            samples = []
            for _ in range(loads.get(rules, 3)):
                policy_set = None
                gc.collect()
                start = time.perf_counter()
                policy_set = engine.load(directory)
                samples.append(time.perf_counter() - start)
            assert policy_set is not None
            middle = rules // 2
            cases = {
                "first": (matching_facts(0), "rule_0"),
                "middle": (matching_facts(middle), f"rule_{middle}"),
                "no match": (NO_MATCH, "no_rule_matched"),
            }
            entry: dict[str, Any] = {"rules": rules, "load_s": min(samples), "load_samples_s": samples,
                                     "yaml_bytes": (directory / "synthetic.yaml").stat().st_size}
            for label, (facts, reason) in cases.items():
                got = policy_set.decide("synthetic", facts).reason
                if got != reason:
                    problems.append(f"synthetic {rules} rules, {label}: expected {reason}, got {got}")
                    continue
                entry[f"{label}_us"] = timing.per_item_us(
                    "decide('synthetic', facts)", {"decide": policy_set.decide, "facts": facts}, 1
                )
            del policy_set
            gc.collect()
            if rules == max(sizes):
                entry.update(run_child("rss", directory))
                entry.update(run_child("tracemalloc", directory))
                if profile:
                    profile_load(directory)
            out["synthetic"].append(entry)
            print_synthetic(entry)
    return problems


def print_synthetic(e: dict[str, Any]) -> None:
    mb = 1024 * 1024
    print(f"  {e['rules']:>6} rules ({e['yaml_bytes'] / 1024:.0f} KiB YAML): load best {e['load_s']:.3f} s "
          f"(runs: {', '.join(f'{s:.3f}' for s in e['load_samples_s'])})")
    print(f"  {'':>6} per decision: first match {e.get('first_us', float('nan')):.2f} us, "
          f"middle {e.get('middle_us', float('nan')):.1f} us, no match {e.get('no match_us', float('nan')):.1f} us")
    if "rss_before" in e:
        print(f"  {'':>6} fresh process: first load {e['first_load_s']:.3f} s; RSS {e['rss_before'] / mb:.1f} -> "
              f"{e['rss_after'] / mb:.1f} MB (+{(e['rss_after'] - e['rss_before']) / mb:.1f} MB); "
              f"after malloc_trim(0) {e['rss_after_trim'] / mb:.1f} MB; "
              f"tracemalloc current {e['traced_current'] / mb:.1f} MB (peak {e['traced_peak'] / mb:.1f} MB)")


def profile_load(directory: Path) -> None:
    """Where a large load spends its time: cyclic GC, then cProfile's view."""
    pauses: list[float] = []
    collections = [0, 0, 0]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])
            collections[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(on_gc)
    try:
        start = time.perf_counter()
        engine.load(directory)
        total = time.perf_counter() - start
    finally:
        gc.callbacks.remove(on_gc)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        engine.load(directory)
        without = time.perf_counter() - start
    finally:
        gc.enable()
    print(f"\n  engine.load({directory.name}): {total:.3f} s, of which cyclic GC {sum(pauses):.3f} s "
          f"(collections by generation: {collections}); with gc.disable(): {without:.3f} s")
    profiler = cProfile.Profile()
    profiler.enable()
    engine.load(directory)
    profiler.disable()
    print(f"\n  cProfile of engine.load({directory.name}):")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)


# -- main --------------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "?")
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return "?"
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_changes_uncommitted": git("status", "--porcelain", "--", "dsl", "engine", "policies") or "none",
        "engine_path": str(Path(engine.__file__).parent.parent),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }


def _lines(path: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            yield from handle
    except OSError:
        return


def summary(out: dict[str, Any]) -> None:
    print("\nTargets")
    for row in out.get("shipped", []):
        met = "met" if row["ratio"] <= TARGET_RATIO else "MISSED"
        print(f"  {row['policy']:<20} {row['inputs']:<8} engine/hand-written {row['ratio']:5.2f}x "
              f"(target <= {TARGET_RATIO}x): {met}")
    for row in out.get("shipped", []):
        timed = {k: v for k, v in row["peers"].items() if isinstance(v, float)}
        slower = [k for k, v in timed.items() if v <= row["engine_us"]]
        verdict = "faster than every timed peer" if not slower else f"NOT faster than {', '.join(slower)}"
        print(f"  {row['policy']:<20} {row['inputs']:<8} {verdict}")
    for e in out.get("synthetic", []):
        if "rss_before" not in e:
            continue
        mb = (e["rss_after"] - e["rss_before"]) / 2**20
        traced = e["traced_current"] / 2**20
        print(f"  {e['rules']} rules load {e['load_s']:.2f} s best, {e['first_load_s']:.2f} s first "
              f"(target < {TARGET_LOAD_S} s): {'met' if max(e['load_s'], e['first_load_s']) < TARGET_LOAD_S else 'MISSED'}")
        print(f"  {e['rules']} rules add {mb:.1f} MB RSS, {traced:.1f} MB traced (target < {TARGET_MEMORY_MB} MB): "
              f"{'met' if max(mb, traced) < TARGET_MEMORY_MB else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (for a smoke test, not for figures)")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per figure; the best is kept")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per timing run")
    parser.add_argument("--rules", type=int, nargs="+", default=[200, 10_000], help="synthetic rule-set sizes")
    parser.add_argument("--no-synthetic", action="store_true", help="only the shipped policies")
    parser.add_argument("--profile", action="store_true", help="cProfile the load of the largest rule set")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(*args.child)
        return 0
    timing = Timing(min_time=0.05, repeat=3) if args.quick else Timing(min_time=args.min_time, repeat=args.repeat)
    out: dict[str, Any] = {"environment": environment(), "timing": {"min_time": timing.min_time, "repeat": timing.repeat}}
    env = out["environment"]
    print(f"Python {env['python']} on {env['platform']}, {env['cpu']} x{env['cpus']}")
    print(f"engine from {env['engine_path']} at commit {env['commit']}; "
          f"uncommitted changes in dsl/ engine/ policies/: {env['engine_changes_uncommitted']!r}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in env['loadavg_start'])}; "
          f"best of {timing.repeat} runs of >= {timing.min_time} s")
    print("\nShipped policies: microseconds per decision (rules = every fact combination; "
          "evidence = missing or ill-typed facts)")
    problems = shipped(timing, out)
    if problems:
        print(f"\n{len(problems)} DISAGREEMENT(S) with the engine; nothing was timed:")
        for problem in problems:
            print("  " + problem)
        return 1
    for name, info in out["peers"].items():
        print(f"  peer {name}: {info.get('version', '')} {info.get('note', info.get('status', ''))}")
    for key, count in out["unrepresentable"].items():
        print(f"  {key}: {count} inputs the peer cannot take (checked on the others)")
    if not args.no_synthetic:
        print("\nSynthetic rule sets")
        loads = {n: (2 if args.quick else 3) if n > 1000 else (3 if args.quick else 10) for n in args.rules}
        problems = synthetic(timing, sorted(args.rules), loads, args.profile, out)
        if problems:
            print("\n" + "\n".join(problems))
            return 1
    out["environment"]["loadavg_end"] = os.getloadavg()
    summary(out)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in out['environment']['loadavg_end'])}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
