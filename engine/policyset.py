"""The loaded, immutable policy set and the evaluator: `PolicySet.decide()`.

A `PolicySet` is built once by `engine.load()` and never changes; reloading builds a
new one. Each purpose holds two compiled programs: the fast one (returns a decision
prepared at load time, so a decision costs about what a hand-written function costs)
and the explaining one (records each rule tried, the values it read and any type
mismatch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from dsl import UNDEFINED, Diagnostic, Fact, Verdicts, type_name
from engine.purpose import OUTCOMES, EvidenceSpec, Purpose, Status, lookup


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
    """The answer for one purpose: outcome, reason, conditions, the revision that decided,
    and the explanation when one was asked for."""

    purpose: str
    status: Status
    reason: str
    conditions: tuple[str, ...] = ()
    revision: str = ""
    explanation: list[ExplanationEntry] | None = None
    #: Index and source line of the rule that decided (None for evidence failures / default).
    rule: int | None = None
    line: int | None = None

    def as_json(self) -> dict[str, object]:
        """The decision's own fields as JSON-ready data (the HTTP service and `idgw policy
        eval` add what belongs to a request: its id, the evidence, the time)."""
        out: dict[str, object] = {
            "purpose": self.purpose,
            "status": self.status,
            "reason": self.reason,
            "conditions": list(self.conditions),
            "policy_revision": self.revision,
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


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
        catalogue: Mapping[str, Fact] | None = None,
    ) -> None:
        self._purposes = dict(purposes)
        #: The facts of the gateway it was checked against (empty: none).
        self.catalogue: Mapping[str, Fact] = dict(catalogue or {})
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
            return self._explain(self._purposes[purpose], facts)
        # with a failure function the program always decides (never None)
        return program(facts)  # type: ignore[return-value]

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
    "Decision",
    "ExplanationEntry",
    "PolicySet",
    "Status",
    "UnknownPurpose",
    "evidence_failures",
    "jsonable",
]
