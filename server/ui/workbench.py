"""What the workbench's pages show, computed from the live policy set, never from HTTP.

    Workbench(live, shadow)     kept on `app.state.workbench` (by `idgw serve`, or by
                                `idgw policy studio`'s app of policy parts only)
      .checked()                the live set with its test report, run once per reload
      .state()                  revision and reload count: what a studio page polls
    rules_page(...)             one page of a purpose's rules, each with the cases reaching it
    trace_view(explanation)     a decision's trace, its middle elided past 200 rules tried
    highlight(condition)        a condition's text as HTML, its tokens classed

The Try page's form is `server.ui.tryout`. Templates read these objects as they are;
the route handlers (`server.ui.routes`) only pick the page and its parameters.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from engine import PolicySet, Purpose, Rule
from engine.clock import utc_text
from engine.policyset import ExplanationEntry
from engine.testing import CaseResult, TestReport, run_tests
from server.reload import LivePolicies, ReloadOutcome
from server.shadow import Shadow

#: Rules shown per page of a purpose: a 10,000-rule purpose renders 100 at a time.
RULES_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class Checked:
    """A policy set with the results of its own test files, indexed for the pages."""

    policy_set: PolicySet
    report: TestReport
    #: purpose -> its cases' results, in file order
    results: dict[str, list[CaseResult]]
    #: purpose -> rule index -> the cases whose decision that rule made
    reached_by: dict[str, dict[int, list[CaseResult]]]

    def counts(self, purpose: str) -> dict[str, int]:
        results = self.results.get(purpose, [])
        passed = sum(r.passed for r in results)
        return {"cases": len(results), "passed": passed, "failed": len(results) - passed}

    def coverage(self, purpose: str) -> float:
        coverage = self.report.coverage.get(purpose)
        return coverage.percent if coverage is not None else 100.0


def check(policy_set: PolicySet, report: TestReport | None = None) -> Checked:
    """Index the results of the set's test files: `report`, or a run of them now (as
    `idgw policy test` runs them)."""
    if report is None:
        report = run_tests(policy_set)
    results: dict[str, list[CaseResult]] = {name: [] for name in policy_set.purposes}
    reached_by: dict[str, dict[int, list[CaseResult]]] = {name: {} for name in policy_set.purposes}
    for result in report.results:
        results[result.purpose].append(result)
        if result.actual.rule is not None:
            reached_by[result.purpose].setdefault(result.actual.rule, []).append(result)
    return Checked(policy_set, report, results, reached_by)


class Workbench:
    """The policies one workbench shows: the live set, its reload status, a shadow set.

    `studio`: the pages of `idgw policy studio` (they poll `state()` and reload on a
    change). `data_api_url`: where the "copy as curl" command sends its request (None:
    the origin the page was served from).
    """

    def __init__(self, live: LivePolicies, shadow: Shadow | None = None, *, studio: bool = False,
                 data_api_url: str | None = None) -> None:
        self.live = live
        self.shadow = shadow
        self.studio = studio
        self.data_api_url = data_api_url
        self._lock = threading.Lock()
        self._checked: tuple[PolicySet, ReloadOutcome | None, Checked] | None = None

    def checked(self) -> Checked | None:
        """The live set and its test report (None when no set is loaded). The tests run
        again after each reload attempt, since a test file can change with the rules
        unchanged (the revision covers the policy and data files only)."""
        policy_set = self.live.current
        if policy_set is None:
            return None
        outcome = self.live.last_reload
        with self._lock:
            cached = self._checked
            if cached is not None and cached[0] is policy_set and cached[1] is outcome:
                return cached[2]
            checked = check(policy_set, self._gate_report(policy_set, outcome))
            self._checked = (policy_set, outcome, checked)
            return checked

    def _gate_report(self, policy_set: PolicySet, outcome: ReloadOutcome | None) -> TestReport | None:
        """The report the reload gate made when `policy_set` went live, while it is still
        what the files say: always for a bundle's set (its test files are gone once it is
        live), for a directory's until the next reload attempt."""
        tested = self.live.tested
        if tested is None or tested[0] is not policy_set:
            return None
        if self.live.policy_dir is None or outcome is None:
            return tested[1]
        return tested[1] if outcome.result == "success" and outcome.revision == policy_set.revision else None

    def state(self) -> dict[str, Any]:
        """The revision and the number of reload attempts: any saved file changes it."""
        live = self.live.current
        outcome = self.live.last_reload
        attempts = sum(self.live.counts.values())
        revision = live.revision if live is not None else None
        return {
            "revision": revision,
            "reloads": attempts,
            "last_reload": outcome.result if outcome is not None else None,
            "state": f"{revision}/{attempts}",
        }

    def reload_view(self) -> dict[str, Any] | None:
        """The last reload attempt as the overview shows it (None before any)."""
        outcome = self.live.last_reload
        if outcome is None:
            return None
        return {
            "result": outcome.result,
            "at": utc_text(outcome.at),
            "revision": outcome.revision,
            "error": outcome.error,
            "diagnostics": outcome.diagnostics,
            "tests": outcome.tests,
            "failures": outcome.failures,
        }


@dataclass(frozen=True, slots=True)
class RuleRow:
    rule: Rule
    cases: tuple[CaseResult, ...]

    @property
    def reached(self) -> bool:
        return bool(self.cases)


@dataclass(frozen=True, slots=True)
class RulesPage:
    """One page of a purpose's rules (1-based `number`), filtered to unreached ones or not."""

    rows: tuple[RuleRow, ...]
    number: int
    pages: int
    total: int
    unreached: int
    only_unreached: bool
    pages_shown: tuple[int, ...] = field(default=())


def rules_page(purpose: Purpose, checked: Checked, number: int, only_unreached: bool) -> RulesPage:
    reached_by = checked.reached_by.get(purpose.name, {})
    unreached = sum(1 for rule in purpose.rules if rule.index not in reached_by)
    rules = [r for r in purpose.rules if r.index not in reached_by] if only_unreached else purpose.rules
    pages = max(1, -(-len(rules) // RULES_PER_PAGE))
    number = min(max(number, 1), pages)
    start = (number - 1) * RULES_PER_PAGE
    rows = tuple(RuleRow(rule, tuple(reached_by.get(rule.index, ()))) for rule in rules[start:start + RULES_PER_PAGE])
    shown = sorted({1, pages, *range(max(1, number - 2), min(pages, number + 2) + 1)})
    return RulesPage(rows, number, pages, len(purpose.rules), unreached, only_unreached, tuple(shown))


#: Rule entries of a Try page's trace shown at each end of a longer one.
TRACE_ENDS = 100


def trace_view(explanation: Sequence[ExplanationEntry]) -> list[Mapping[str, Any]]:
    """An explanation as the Try page lists it: every entry, except that of a trace with
    more than 2 x TRACE_ENDS rules tried, the middle ones are one `elided` entry (their
    count and first and last rule), so a 10,000-rule purpose's trace stays readable."""
    rules = [i for i, entry in enumerate(explanation) if entry.get("kind") == "rule"]
    if len(rules) <= 2 * TRACE_ENDS:
        return list(explanation)
    start, end = rules[TRACE_ENDS], rules[-TRACE_ENDS]
    hidden = explanation[start:end]
    matched = sum(1 for entry in hidden if entry.get("matched"))
    elided = {"kind": "elided", "count": len(hidden), "matched": matched,
              "first": hidden[0].get("index", 0) + 1, "last": hidden[-1].get("index", 0) + 1}
    return [*explanation[:start], elided, *explanation[end:]]


_TOKEN = re.compile(
    r"""(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<op>==|!=|<=|>=|[<>+\-*/%])""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null", "else"})


def highlight(condition: str | None) -> Markup:
    """The text of a condition with its strings, numbers, names, keywords and operators in
    classed spans (`else` for the default rule); everything escaped."""
    if condition is None:
        return Markup('<span class="tok-kw">else</span>')
    out: list[str] = []
    position = 0
    for match in _TOKEN.finditer(condition):
        out.append(str(escape(condition[position:match.start()])))
        kind = match.lastgroup or "op"
        text = match.group()
        if kind == "name" and text.lower() in _KEYWORDS:
            kind = "kw"
        out.append(f'<span class="tok-{kind}">{escape(text)}</span>')
        position = match.end()
    out.append(str(escape(condition[position:])))
    return Markup("".join(out))


__all__ = [
    "RULES_PER_PAGE",
    "TRACE_ENDS",
    "Checked",
    "RuleRow",
    "RulesPage",
    "Workbench",
    "check",
    "highlight",
    "rules_page",
    "trace_view",
]
