"""Test harness: run the `*_test.yaml` cases of a policy directory against a policy set.

Sits after `engine.load()`: it takes a built `PolicySet`, never a directory, so the
hot-reload code can gate a candidate set with `run_tests(new_set)` before swapping it
in, and `idgw policy test` shares the exact same code.

    report = run_tests(policy_set)              # files default to policy_set.test_files
    report.ok, report.passed, report.failed, report.errors, report.results
    report.coverage["age_verification"].missed  # rules no case reached

A test file (docs/policy-authoring.md)::

    purpose: age_verification
    cases:
      - name: sanctioned adult fails
        input: {sanctions_listed: true, context: {national_id: AB123456}}
        expect: {status: fail, reason: sanctioned}

A case may name its own `purpose` to override the file's. A file that is not valid,
names an unknown purpose (E402) or feeds an unknown fact (E403) is an error in
`report.errors`, never a silent pass: a typo in a test must not make it green.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsl import SUBJECT_FIELDS, Diagnostic
from engine.loader import LoadResult, build, plain
from engine.policyset import Decision, PolicySet
from engine.purpose import OUTCOMES, Purpose, Rule, Status
from engine.yaml_source import YamlDocument, read_yaml

#: Top-level input keys that are maps of their own rather than facts.
INPUT_ROOTS = ("context", "subject", "consent")
_FILE_KEYS = ("purpose", "cases")
_CASE_KEYS = ("name", "purpose", "input", "expect")
_EXPECT_KEYS = ("status", "reason", "conditions")


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a case expects; `None` fields are not checked."""

    status: Status
    reason: str | None = None
    conditions: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.conditions is not None:
            out["conditions"] = list(self.conditions)
        return out

    def mismatches(self, decision: Decision) -> list[str]:
        """One line per expected field the decision does not match (empty: it passed)."""
        problems: list[str] = []
        if decision.status != self.status:
            problems.append(f"status: expected {self.status}, got {decision.status}")
        if self.reason is not None and decision.reason != self.reason:
            problems.append(f"reason: expected {self.reason}, got {decision.reason}")
        if self.conditions is not None and tuple(decision.conditions) != self.conditions:
            problems.append(f"conditions: expected {list(self.conditions)}, got {list(decision.conditions)}")
        return problems


@dataclass(frozen=True, slots=True)
class Case:
    """One validated test case, located in its file."""

    file: str
    line: int
    purpose: str
    name: str
    input: dict[str, Any]
    expect: Expectation


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case. `actual` carries an explanation when the case failed."""

    file: str
    line: int
    purpose: str
    name: str
    passed: bool
    expected: Expectation
    actual: Decision
    mismatches: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "purpose": self.purpose,
            "name": self.name,
            "passed": self.passed,
            "expected": self.expected.to_dict(),
            "actual": _decision_dict(self.actual),
            "mismatches": list(self.mismatches),
        }


@dataclass(slots=True)
class PurposeCoverage:
    """Which rules of one purpose decided at least one case.

    A rule counts as reached when some case's decision came from it: a rule that was
    only tried and did not match has not had its outcome tested.
    """

    purpose: str
    file: str
    rules: tuple[Rule, ...]
    reached: set[int] = field(default_factory=set)

    @property
    def missed(self) -> list[Rule]:
        return [r for r in self.rules if r.index not in self.reached]

    @property
    def percent(self) -> float:
        return 100.0 * len(self.reached) / len(self.rules) if self.rules else 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rules": len(self.rules),
            "reached": sorted(self.reached),
            "missed": [{"index": r.index, "line": r.line, "reason": r.reason} for r in self.missed],
            "percent": round(self.percent, 1),
        }


@dataclass(slots=True)
class TestReport:
    """Everything one run found. `ok` is what a CI job or the reload gate checks."""

    __test__ = False  # not a pytest class, despite the name

    results: list[CaseResult] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    coverage: dict[str, PurposeCoverage] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.errors

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def coverage_percent(self) -> float:
        total = sum(len(c.rules) for c in self.coverage.values())
        reached = sum(len(c.reached) for c in self.coverage.values())
        return 100.0 * reached / total if total else 100.0

    def merge(self, other: TestReport) -> None:
        """Fold another report (another policy directory) into this one."""
        self.results.extend(other.results)
        self.errors = sorted([*self.errors, *other.errors], key=lambda d: d.sort_key)
        self.coverage.update(other.coverage)
        self.files.extend(other.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "ok": self.ok,
            "errors": [d.to_dict() for d in self.errors],
            "results": [r.to_dict() for r in self.results],
            "coverage": {
                "percent": round(self.coverage_percent, 1),
                "purposes": {name: c.to_dict() for name, c in sorted(self.coverage.items())},
            },
        }


def _decision_dict(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": decision.status,
        "reason": decision.reason,
        "conditions": list(decision.conditions),
    }
    if decision.rule is not None:
        out["rule"] = decision.rule
        out["line"] = decision.line
    if decision.explanation is not None:
        out["explanation"] = decision.explanation
    return out


# -- reading test files ----------------------------------------------------------------
class _TestFileReader:
    """Validates one test file against the policy set; collects located diagnostics."""

    def __init__(self, doc: YamlDocument, policy_set: PolicySet) -> None:
        self.doc = doc
        self.policy_set = policy_set
        self.diagnostics: list[Diagnostic] = list(doc.diagnostics)
        self.cases: list[Case] = []

    def error(self, code: str, message: str, loc: Sequence[int | str], key: bool = False,
              hint: str | None = None) -> None:
        self.diagnostics.append(self.doc.diagnostic(code, message, self.doc.locate(loc, key=key), hint=hint))

    def unknown_keys(self, value: Mapping[str, Any], allowed: Sequence[str], loc: tuple[int | str, ...]) -> bool:
        unknown = [k for k in value if k not in allowed]
        for k in unknown:
            self.error("E401", f"unknown key `{k}`", (*loc, k), key=True, hint=f"allowed keys: {', '.join(allowed)}")
        return bool(unknown)

    def read(self) -> list[Case]:
        if any(d.code == "E001" for d in self.diagnostics):
            return []
        value = self.doc.value
        if not isinstance(value, dict):
            self.error("E401", "a test file is a mapping with `purpose` and `cases`", ())
            return []
        self.unknown_keys(value, _FILE_KEYS, ())
        default_purpose = value.get("purpose")
        if default_purpose is not None and not isinstance(default_purpose, str):
            self.error("E401", "`purpose` must be a purpose name", ("purpose",))
            default_purpose = None
        elif isinstance(default_purpose, str) and not self._known_purpose(default_purpose, ("purpose",)):
            return []
        cases = value.get("cases")
        if not isinstance(cases, list) or not cases:
            self.error("E401", "`cases` must be a non-empty list of test cases", ("cases",) if "cases" in value else ())
            return []
        for i, raw in enumerate(cases):
            case = self._case(i, raw, default_purpose)
            if case is not None:
                self.cases.append(case)
        return self.cases

    def _known_purpose(self, name: str, loc: tuple[int | str, ...]) -> bool:
        if name in self.policy_set.purposes:
            return True
        known = sorted(self.policy_set.purposes)
        close = _closest(name, known)
        self.error(
            "E402", f"unknown purpose `{name}`", loc,
            hint=f"did you mean `{close}`?" if close else f"known purposes: {', '.join(known) or 'none'}",
        )
        return False

    def _case(self, i: int, raw: object, default_purpose: str | None) -> Case | None:
        loc: tuple[int | str, ...] = ("cases", i)
        if not isinstance(raw, dict):
            self.error("E401", "a test case is a mapping with `name`, `input` and `expect`", loc)
            return None
        bad = self.unknown_keys(raw, _CASE_KEYS, loc)
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            self.error("E401", "a test case needs a `name`", (*loc, "name") if "name" in raw else loc)
            bad = True
        purpose_name = raw.get("purpose", default_purpose)
        if "purpose" in raw and not isinstance(raw["purpose"], str):
            self.error("E401", "`purpose` must be a purpose name", (*loc, "purpose"))
            return None
        if purpose_name is None:
            self.error("E401", "no `purpose`: name it at the top of the file or in the case", loc)
            return None
        if "purpose" in raw and not self._known_purpose(purpose_name, (*loc, "purpose")):
            return None
        purpose = self.policy_set.purposes[purpose_name]
        facts = raw.get("input", {})
        if facts is None:
            facts = {}
        if not isinstance(facts, dict):
            self.error("E401", "`input` must be a mapping of facts", (*loc, "input"))
            bad = True
        elif not self._input(purpose, facts, (*loc, "input")):
            bad = True
        expect = self._expect(raw.get("expect"), loc, "expect" in raw)
        if bad or expect is None or not isinstance(name, str):
            return None
        node = self.doc.locate(loc)
        line = node.start_mark.line + 1 if node is not None else 1
        return Case(self.doc.file, line, purpose_name, name, plain(facts), expect)

    def _input(self, purpose: Purpose, facts: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
        ok = True
        declared = {name for name in purpose.facts if "." not in name}  # consent.x lives under `consent`
        for key, value in facts.items():
            if key in INPUT_ROOTS:
                if value is not None and not isinstance(value, dict):
                    self.error("E401", f"`{key}` must be a mapping", (*loc, key))
                    ok = False
                    continue
                ok = self._nested(purpose, key, value or {}, (*loc, key)) and ok
            elif key not in declared and key not in self.policy_set.catalogue:
                options = sorted({*declared, *self.policy_set.catalogue, *INPUT_ROOTS})
                close = _closest(str(key), options)
                self.error(
                    "E403", f"unknown fact `{key}`: not declared by `{purpose.name}` nor provided by the gateway",
                    (*loc, key), key=True,
                    hint=f"did you mean `{close}`?" if close else f"`{purpose.name}` declares: {', '.join(purpose.facts)}",
                )
                ok = False
        return ok

    def _nested(self, purpose: Purpose, root: str, value: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
        if root == "subject":
            allowed = list(SUBJECT_FIELDS)
        elif root == "context" and purpose.context:
            allowed = [f.name for f in purpose.context]
        else:
            return True  # consent.<any purpose>, or a purpose without a context schema
        ok = True
        for key in value:
            if key not in allowed:
                close = _closest(str(key), allowed)
                what = "the context schema of" if root == "context" else "the subject fields for"
                self.error(
                    "E403", f"unknown fact `{root}.{key}`: not in {what} `{purpose.name}`", (*loc, key), key=True,
                    hint=f"did you mean `{close}`?" if close else f"known: {', '.join(allowed)}",
                )
                ok = False
        return ok

    def _expect(self, raw: object, loc: tuple[int | str, ...], present: bool) -> Expectation | None:
        where = (*loc, "expect")
        if not isinstance(raw, dict):
            message = "`expect` must be a mapping such as {status: pass}" if present else "a test case needs `expect`"
            self.error("E401", message, where if present else loc)
            return None
        bad = self.unknown_keys(raw, _EXPECT_KEYS, where)
        status = raw.get("status")
        if status not in OUTCOMES:
            close = _closest(str(status), list(OUTCOMES)) if isinstance(status, str) else None
            self.error(
                "E401", f"`expect.status` must be one of {', '.join(OUTCOMES)}",
                (*where, "status") if "status" in raw else where,
                hint=f"did you mean `{close}`?" if close else None,
            )
            return None
        reason = raw.get("reason")
        if reason is not None and not isinstance(reason, str):
            self.error("E401", "`expect.reason` must be a string", (*where, "reason"))
            bad = True
        conditions = raw.get("conditions")
        if conditions is not None and not (
            isinstance(conditions, list) and all(isinstance(c, str) for c in conditions)
        ):
            self.error("E401", "`expect.conditions` must be a list of strings", (*where, "conditions"))
            bad = True
        if bad:
            return None
        return Expectation(
            status=status,
            reason=reason,
            conditions=tuple(conditions) if conditions is not None else None,
        )


def _closest(name: str, options: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.7)
    return close[0] if close else None


def read_test_file(path: str | Path, policy_set: PolicySet) -> tuple[list[Case], list[Diagnostic]]:
    """The valid cases of one test file and the diagnostics of the invalid parts."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [], [Diagnostic(code="E004", message=f"cannot read file: {err}", file=file)]
    reader = _TestFileReader(read_yaml(file, text), policy_set)
    cases = reader.read()
    if reader.doc.value is None and not reader.diagnostics:
        reader.diagnostics.append(Diagnostic(code="E401", message="the test file is empty", file=file))
    return cases, reader.diagnostics


def check_test_files(policy_set: PolicySet, files: Iterable[str | Path] | None = None) -> list[Diagnostic]:
    """Validate test files without running them (what `idgw policy lint` reports)."""
    diagnostics: list[Diagnostic] = []
    for path in policy_set.test_files if files is None else files:
        diagnostics.extend(read_test_file(path, policy_set)[1])
    return sorted(diagnostics, key=lambda d: d.sort_key)


# -- running ---------------------------------------------------------------------------
def selected(case: Case, pattern: str | None) -> bool:
    """`-k`: a case-insensitive substring (or glob with * ? [) of the name or purpose."""
    if not pattern:
        return True
    needle = pattern.lower()
    haystacks = (case.name.lower(), case.purpose.lower(), f"{case.purpose}::{case.name}".lower())
    if any(ch in needle for ch in "*?["):
        return any(fnmatch.fnmatchcase(h, needle) for h in haystacks)
    return any(needle in h for h in haystacks)


def run_case(policy_set: PolicySet, case: Case) -> CaseResult:
    """Decide one case on the fast path (what production runs); explain it if it fails."""
    decision = policy_set.decide(case.purpose, case.input)
    problems = case.expect.mismatches(decision)
    if problems:
        decision = policy_set.decide(case.purpose, case.input, explain=True)
    return CaseResult(
        file=case.file,
        line=case.line,
        purpose=case.purpose,
        name=case.name,
        passed=not problems,
        expected=case.expect,
        actual=decision,
        mismatches=tuple(problems),
    )


def run_tests(
    policy_set: PolicySet,
    files: Iterable[str | Path] | None = None,
    pattern: str | None = None,
) -> TestReport:
    """Run every case of `files` (default: the set's own test files) against `policy_set`.

    Never raises for a bad test file: its problems land in `report.errors`.
    """
    paths = [str(p) for p in (policy_set.test_files if files is None else files)]
    report = TestReport(
        files=paths,
        coverage={
            name: PurposeCoverage(name, purpose.file, purpose.rules)
            for name, purpose in policy_set.purposes.items()
        },
    )
    errors: list[Diagnostic] = []
    for path in paths:
        cases, diagnostics = read_test_file(path, policy_set)
        errors.extend(diagnostics)
        for case in cases:
            if not selected(case, pattern):
                continue
            result = run_case(policy_set, case)
            report.results.append(result)
            if result.actual.rule is not None:
                report.coverage[case.purpose].reached.add(result.actual.rule)
    report.errors = sorted(errors, key=lambda d: d.sort_key)
    return report


def explanation_lines(decision: Decision) -> list[str]:
    """A decision's explanation as plain text lines (test output, CI logs)."""
    lines: list[str] = []
    for entry in decision.explanation or []:
        kind = entry.get("kind")
        if kind == "evidence":
            expected = f", expected {_show(entry['expected'])}" if "expected" in entry else ""
            detail = f" ({entry['detail']})" if "detail" in entry else ""
            lines.append(
                f"evidence {entry['fact']} = {_show(entry['actual'])}{expected}: {entry['status']}{detail}"
            )
        elif kind == "rule":
            verdict = "matched" if entry.get("matched") else "no match"
            reads = ", ".join(f"{path}={_show(value)}" for path, value in entry.get("reads", {}).items())
            line = f"rule {entry['index'] + 1} (line {entry['line']}) `{entry['condition']}`: {verdict}"
            if entry.get("matched"):
                line += f" -> {entry['outcome']} ({entry['reason']})"
            if reads:
                line += f"; read {reads}"
            lines.append(line)
            lines.extend(f"  note: {note}" for note in entry.get("notes", []))
        elif kind == "default":
            lines.append("no rule matched -> fail (no_rule_matched)")
    return lines


def _show(value: object) -> str:
    if value == "undefined":
        return "undefined"
    return json.dumps(value, default=str)


class Refused(Exception):
    """A policy directory the reload gate would not accept. `str(error)` is the one-line
    reason; `diagnostics` are what `idgw policy lint` shows, `report` what `idgw policy
    test` shows."""

    def __init__(self, reason: str, diagnostics: Sequence[Diagnostic] = (), report: TestReport | None = None) -> None:
        super().__init__(reason)
        self.diagnostics = list(diagnostics)
        self.report = report


def gate(directory: str | Path, catalogue: Mapping[str, Any]) -> LoadResult:
    """Build `directory` as hot reload does before a swap: no errors, and its own tests
    pass; otherwise `Refused`. The result's `policy_set` is then set."""
    root = Path(directory)
    result = build(root, catalogue=catalogue)
    if result.policy_set is None:
        count = len(result.errors)
        raise Refused(f"{root} has {count} error{'s' if count != 1 else ''}", diagnostics=result.diagnostics)
    report = run_tests(result.policy_set)
    if not report.ok:
        problems = [f"{report.failed} failed"] if report.failed else []
        problems += [f"{len(report.errors)} error(s) in test files"] if report.errors else []
        raise Refused(f"{root}: its tests do not pass ({', '.join(problems)})", report=report)
    return result


__all__ = [
    "INPUT_ROOTS",
    "Case",
    "CaseResult",
    "Expectation",
    "PurposeCoverage",
    "Refused",
    "TestReport",
    "check_test_files",
    "explanation_lines",
    "gate",
    "read_test_file",
    "run_case",
    "run_tests",
    "selected",
]

