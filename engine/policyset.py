"""The loaded, immutable policy set and the evaluator: `PolicySet.decide()`.

A `PolicySet` is built once by `engine.load()` and never changes; reloading builds a
new one. Each purpose holds two compiled programs: the fast one (returns a decision
prepared at load time, so a decision costs about what a hand-written function costs)
and the explaining one (records each rule tried, the values it read and any type
mismatch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from dsl import UNDEFINED, Diagnostic, Program, Type, Verdicts, type_name

Status = Literal["pass", "pass_with_conditions", "fail"]
OUTCOMES: tuple[Status, ...] = ("pass", "pass_with_conditions", "fail")


class ExplanationEntry(TypedDict, total=False):
    """One line of an explanation; `kind` says which keys are present.

    evidence: fact, type, expected (when declared), actual, status (ok, unexpected,
    missing, invalid), detail. rule: index, line, condition, matched, reads, notes,
    outcome, reason. default: outcome, reason.
    """

    kind: Literal["evidence", "rule", "default"]
    fact: str
    type: str
    expected: object
    actual: object
    status: str
    detail: str
    index: int
    line: int
    condition: str
    matched: bool
    reads: dict[str, object]
    notes: list[str]
    outcome: str
    reason: str


class UnknownPurpose(LookupError):
    """`decide()` was asked about a purpose the policy set does not define."""

    def __init__(self, purpose: str, known: Sequence[str]) -> None:
        self.purpose = purpose
        self.known = list(known)
        super().__init__(f"unknown purpose {purpose!r}; known purposes: {', '.join(self.known) or 'none'}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one purpose. Serialises to the decision JSON of SPEC section 7."""

    purpose: str
    status: Status
    reason: str
    conditions: tuple[str, ...] = ()
    revision: str = ""
    explanation: list[ExplanationEntry] | None = None
    #: Index and source line of the rule that decided (None for evidence failures / default).
    rule: int | None = None
    line: int | None = None

    def to_dict(
        self,
        decision_id: str | None = None,
        evaluated_at: datetime | str | None = None,
        evidence: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        """The decision JSON; `evaluated_at` as a datetime, or already in its JSON form."""
        when = evaluated_at or datetime.now(UTC)
        out: dict[str, object] = {
            "decision_id": decision_id,
            "purpose": self.purpose,
            "status": self.status,
            "reason": self.reason,
            "conditions": list(self.conditions),
            "evidence": dict(evidence) if evidence is not None else {},
            "policy_revision": self.revision,
            "evaluated_at": when if isinstance(when, str) else _utc_seconds(when),
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


def _utc_seconds(when: datetime) -> str:
    """`when` in UTC as `YYYY-MM-DDTHH:MM:SSZ` (what strftime("%Y-%m-%dT%H:%M:%SZ")
    gives, through isoformat: about a fifth of strftime's cost, paid per decision)."""
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)
    if utc.year < 1000:  # strftime does not pad such years to four digits on every platform
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.isoformat(timespec="seconds")[:19] + "Z"


@dataclass(frozen=True, slots=True)
class EvidenceSpec:
    """A fact the purpose declares: required, with a type and maybe an expected value."""

    name: str
    type: Type
    expected: object = UNDEFINED

    def problem(self, facts: Mapping[str, object]) -> str | None:
        value = lookup(facts, self.name)
        if value is UNDEFINED:
            return "missing"
        return None if conforms(value, self.type) else "invalid"


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    line: int
    column: int
    condition: str | None  # None for `else`
    status: Status
    reason: str
    conditions: tuple[str, ...]
    reads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContextField:
    name: str
    type: Type
    integer: bool = False
    required: bool = False
    pattern: str | None = None
    enum: tuple[object, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class Purpose:
    """One compiled purpose."""

    name: str
    description: str
    file: str
    line: int
    consent: tuple[str, ...]
    context: tuple[ContextField, ...]
    evidence: tuple[EvidenceSpec, ...]
    rules: tuple[Rule, ...]
    program: Program[Decision] = field(repr=False)
    revision: str = ""

    @property
    def facts(self) -> tuple[str, ...]:
        """The declared evidence fact names, in declaration order."""
        return tuple(e.name for e in self.evidence)

    def validate_context(self, context: object) -> list[str]:
        """Problems with a request context against this purpose's schema (empty if fine)."""
        from engine.context import validate_context

        return validate_context(self.context, context)


def lookup(facts: Mapping[str, object], name: str) -> object:
    """The value of a fact name such as `is_pep` or `consent.registry_check`."""
    value: Any = facts
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return UNDEFINED
        value = value[part]
    return value


def conforms(value: object, t: Type) -> bool:
    match t.kind:
        case "bool":
            return value.__class__ is bool
        case "number":
            return value.__class__ in (int, float)
        case "string":
            return value.__class__ is str
        case "list":
            if value.__class__ is not list:
                return False
            return t.item is None or not t.item.known or all(conforms(v, t.item) for v in value)  # type: ignore[attr-defined]
        case "map":
            return value.__class__ is dict
        case "null":
            return value is None
    return value is not UNDEFINED


def jsonable(value: object) -> object:
    """A value safe to put in JSON output (UNDEFINED becomes the string 'undefined')."""
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


class _Trace:
    """What one explaining evaluation observed, rule by rule."""

    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None

    def begin(self, index: int) -> None:
        self.current = {"index": index, "reads": {}, "notes": []}
        self.rules.append(self.current)

    def end(self, matched: bool) -> None:
        if self.current is not None:
            self.current["matched"] = matched

    def read(self, path: str, value: object) -> None:
        if self.current is not None:
            self.current["reads"].setdefault(path, jsonable(value))

    def note(self, message: str) -> None:
        if self.current is not None and message not in self.current["notes"]:
            self.current["notes"].append(message)


#: Fail-closed decisions kept for purposes with more declared facts than the compiler
#: prepares (each pattern of missing and invalid facts is one decision).
_MAX_PREPARED_FAILURES = 4096


def evidence_failures(purpose: str, evidence: Sequence[EvidenceSpec], revision: str) -> Callable[[Verdicts], Decision]:
    """The fail-closed decision for each pattern of evidence verdicts (one per declared
    fact: None when fine, "missing" or "invalid"), made once per pattern.

    Its explanation names each problem fact (without the caller's values, so it can be
    shared); `explain=True` gives the full picture with actual values.
    """
    made: dict[Verdicts, Decision] = {}

    def failure(verdicts: Verdicts) -> Decision:
        decision = made.get(verdicts)
        if decision is None:
            problems: list[ExplanationEntry] = []
            for spec, problem in zip(evidence, verdicts, strict=True):
                if problem is not None:
                    entry: ExplanationEntry = {"kind": "evidence", "fact": spec.name, "type": str(spec.type)}
                    if spec.expected is not UNDEFINED:
                        entry["expected"] = spec.expected
                    entry["status"] = problem
                    problems.append(entry)
            reason = "missing_evidence" if "missing" in verdicts else "invalid_evidence"
            decision = Decision(purpose=purpose, status="fail", reason=reason, revision=revision, explanation=problems)
            if len(made) < _MAX_PREPARED_FAILURES:
                made[verdicts] = decision
        return decision

    return failure


class PolicySet:
    """An immutable, compiled set of purposes with its revision.

    Build it with `engine.load()`; call `decide()` as often as you like, from any thread.
    """

    def __init__(
        self,
        purposes: Mapping[str, Purpose],
        revision: str,
        files: Sequence[str],
        data: Mapping[str, Any],
        warnings: Sequence[Diagnostic] = (),
        root: str = "",
        tests: Sequence[str] = (),
    ) -> None:
        self._purposes = dict(purposes)
        self._programs = {name: p.program.run for name, p in self._purposes.items()}
        self.revision = revision
        self.files = tuple(files)
        self.data = data
        self.warnings = tuple(warnings)
        self.root = root
        self.test_files = tuple(tests)
        self.loaded_at = datetime.now(UTC)

    @property
    def purposes(self) -> Mapping[str, Purpose]:
        return self._purposes

    def purpose(self, name: str) -> Purpose:
        try:
            return self._purposes[name]
        except KeyError:
            raise UnknownPurpose(name, sorted(self._purposes)) from None

    def decide(self, purpose: str, facts: Mapping[str, object], explain: bool = False) -> Decision:
        """Decide `purpose` from `facts` (facts at the top level, request context under
        `context`). Never raises for bad facts; raises `UnknownPurpose`."""
        program = self._programs.get(purpose)
        if program is None:
            raise UnknownPurpose(purpose, sorted(self._purposes))
        if facts.__class__ is not dict:
            facts = dict(facts) if isinstance(facts, Mapping) else {}
        if explain:
            return self._explain(self._purposes[purpose], facts)  # type: ignore[arg-type]
        # with a failure function the program always decides (never None)
        return program(facts)  # type: ignore[arg-type,return-value]

    def _explain(self, purpose: Purpose, facts: dict[str, Any]) -> Decision:
        entries = _evidence_entries(purpose, facts)
        statuses = {e["status"] for e in entries}
        if statuses & {"missing", "invalid"}:
            reason = "missing_evidence" if "missing" in statuses else "invalid_evidence"
            return Decision(
                purpose=purpose.name, status="fail", reason=reason, revision=self.revision, explanation=entries
            )
        trace = _Trace()
        result = purpose.program.explain(facts, trace)
        assert result is not None  # the explaining program always decides
        for record in trace.rules:
            rule = purpose.rules[record["index"]]
            entry: ExplanationEntry = {
                "kind": "rule",
                "index": rule.index,
                "line": rule.line,
                "condition": rule.condition if rule.condition is not None else "else",
                "matched": record.get("matched", False),
                "reads": record["reads"],
                "outcome": rule.status,
                "reason": rule.reason,
            }
            if record["notes"]:
                entry["notes"] = record["notes"]
            entries.append(entry)
        if result.rule is None:
            entries.append({"kind": "default", "outcome": "fail", "reason": "no_rule_matched"})
        return replace(result, explanation=entries)

    def __repr__(self) -> str:
        return f"<PolicySet {self.revision[:19]} purposes={sorted(self._purposes)}>"


def _evidence_entries(purpose: Purpose, facts: Mapping[str, object]) -> list[ExplanationEntry]:
    entries: list[ExplanationEntry] = []
    for spec in purpose.evidence:
        actual = lookup(facts, spec.name)
        problem = spec.problem(facts)
        entry: ExplanationEntry = {"kind": "evidence", "fact": spec.name, "type": str(spec.type)}
        if spec.expected is not UNDEFINED:
            entry["expected"] = spec.expected
        entry["actual"] = jsonable(actual)
        if problem == "invalid":
            entry["status"] = "invalid"
            entry["detail"] = f"expected a {spec.type}, got {type_name(actual)}"
        elif problem == "missing":
            entry["status"] = "missing"
        elif spec.expected is not UNDEFINED and actual != spec.expected:
            entry["status"] = "unexpected"
        else:
            entry["status"] = "ok"
        entries.append(entry)
    return entries


__all__ = [
    "OUTCOMES",
    "ContextField",
    "Decision",
    "EvidenceSpec",
    "ExplanationEntry",
    "PolicySet",
    "Purpose",
    "Rule",
    "Status",
    "UnknownPurpose",
    "conforms",
    "evidence_failures",
    "jsonable",
    "lookup",
]
