"""Deciding on facts: the service logic both decision endpoints share.

The handlers parse; this module reads the live policy set once (`current_policy_set`),
resolves the purpose, checks the request context against the purpose's schema
(`check_context`, once per request), decides, counts, emits the `decision_made` event
and shapes the decision JSON (`decision_json`: the response shape is the server's, the
engine answers a `Decision`). Nothing here gathers facts: the data API is given them,
`POST /decision/evaluate` gathers them first (`evaluate`, `evidence`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

from dsl import UNDEFINED, Type, type_name
from engine import Decision, PolicySet, Purpose, UnknownPurpose
from engine.clock import utc_second_text
from engine.purpose import conforms, lookup
from server.errors import ApiError, echo
from server.events import DecisionInput, DecisionMade, EventPublisher
from server.ids import PerSecond, random_urlsafe, time_ordered
from server.metrics import DECISIONS, POLICY_EVALUATION_DURATION
from server.reload import LivePolicies
from server.shadow import Shadow

#: (purpose, status) -> the purpose's evaluation-duration histogram and its counter of
#: decisions with that status: what `LabelCache` does for metrics of the same labels, for
#: two whose labels differ, found in one lookup a decision.
_decision_metrics: dict[tuple[str, str], tuple[Histogram, Counter]] = {}


def new_decision_id() -> str:
    """`dec_`, the current second (8 hex digits: ids sort by time), 128 random bits."""
    return "dec_" + time_ordered() + random_urlsafe(16)


#: The current second as every timestamp is written (engine.clock), formatted once per
#: second: formatting a time per decision would be a visible part of its cost.
evaluated_at_now = PerSecond(utc_second_text)


def current_policy_set(live: LivePolicies) -> PolicySet:
    """The live policy set, read once: the request uses this set throughout, whatever a
    reload swaps in meanwhile. With none loaded, a 503 `not_ready`."""
    policy_set = live.current
    if policy_set is None:
        raise ApiError(503, "no policy set is loaded", error="not_ready")
    return policy_set


def resolve_purpose(policy_set: PolicySet, name: str) -> Purpose:
    try:
        return policy_set.purpose(name)
    except UnknownPurpose as err:
        known = err.known
        raise ApiError(
            404,
            f"unknown purpose {echo(repr(name))}; known purposes: {', '.join(known) or 'none'}",
            error="unknown_purpose",
            extra={"known_purposes": known},
        ) from None


def check_context(purpose: Purpose, context: object, where: str = "") -> None:
    """A 400 `invalid_context` naming every problem of `context` against the purpose's
    schema; `where` is the path to the context in the request body (`input.` for the
    data API, nothing for `POST /decision/evaluate`, whose body has `context` on top)."""
    problems = purpose.validate_context(context)
    if problems:
        raise ApiError(400, "; ".join(where + problem for problem in problems), error="invalid_context")


def check_evidence(purpose: Purpose, facts: Mapping[str, Any]) -> None:
    """A 400 `invalid_input` naming each declared fact the caller supplied with another
    type than the purpose declares (`input.is_pep: expected bool, got string`), and each
    object a nested one sits in (`consent` of `consent.registry_check`) that is not one.

    The data API's own check (`decide(..., refuse_mistyped=True)`): the engine, given
    such facts, fails closed (`invalid_evidence`, or `missing_evidence` when a fact is
    missing too, or its parent object is not one), but a caller who supplies the facts
    is told at once. Missing facts are not a request error (the decision fails,
    `missing_evidence`), and undeclared ones pass to the rules as they are.
    """
    problems: list[str] | None = None
    for spec in purpose.evidence:
        if not spec.type.known:
            continue
        name = spec.name
        problem: str | None = None
        if "." not in name:
            value = facts.get(name, UNDEFINED)
            if value is UNDEFINED or conforms(value, spec.type):
                continue
            problem = f"input.{name}: expected {spec.type}, got {type_name(value)}"
        else:
            problem = _nested_problem(name, spec.type, facts)
            if problem is None:
                continue
        problems = problems or []
        if problem not in problems:
            problems.append(problem)
    if problems:
        raise ApiError(400, "; ".join(problems), error="invalid_input")


def _nested_problem(name: str, expected: Type, facts: Mapping[str, Any]) -> str | None:
    value: Any = facts
    where = "input"
    for part in name.split("."):
        if value.__class__ is not dict:
            return f"{where}: expected an object, got {type_name(value)}"
        if part not in value:
            return None
        value = value[part]
        where += "." + part
    return None if conforms(value, expected) else f"{where}: expected {expected}, got {type_name(value)}"


#: The reasons of the engine's fail-closed decisions on declared facts.
_EVIDENCE_FAILURES = frozenset({"missing_evidence", "invalid_evidence"})


def may_hide_mistyped_facts(purpose: Purpose, decision: Decision) -> bool:
    """Could the facts `decision` was made on hold a declared fact of another type? Only
    when the engine failed closed on evidence, or when the purpose declares a fact whose
    type the engine's evidence check does not cover (`Purpose.types_checked`): any
    other decision is one the engine made on well-typed facts, and `check_evidence`
    would find nothing (which costs as much as the decision itself)."""
    return decision.reason in _EVIDENCE_FAILURES or not purpose.types_checked


def supplied_evidence(purpose: Purpose, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The declared facts the caller supplied (absent ones are left out)."""
    out: dict[str, Any] = {}
    for spec in purpose.evidence:
        name = spec.name
        value = facts.get(name, UNDEFINED) if "." not in name else lookup(facts, name)
        if value is not UNDEFINED:
            out[name] = value  # parsed from JSON: already JSON-safe
    return out


def decision_json(
    decision: Decision, decision_id: str, evaluated_at: str, evidence: dict[str, Any]
) -> dict[str, Any]:
    """The decision JSON of docs/api.md (`DecisionBody`): the engine's decision with its
    id, time and the evidence it was made on; `explanation` only when one was asked for."""
    body: dict[str, Any] = {
        "decision_id": decision_id,
        "purpose": decision.purpose,
        "status": decision.status,
        "reason": decision.reason,
        "conditions": list(decision.conditions),
        "evidence": evidence,
        "policy_revision": decision.revision,
        "evaluated_at": evaluated_at,
    }
    if decision.explanation is not None:
        body["explanation"] = decision.explanation
    return body


def decide(
    policy_set: PolicySet,
    purpose: Purpose,
    facts: dict[str, Any],
    explain: bool,
    events: EventPublisher,
    request_id: str | None,
    subject: str | None = None,
    *,
    recording: bool = True,
    shadow: Shadow | None = None,
    refuse_mistyped: bool = False,
) -> dict[str, Any]:
    """Decide `purpose` (of `policy_set`, its context already checked) on `facts`; count
    and log the decision (with its decision record when `recording`, and the `shadow`
    set's outcome when there is one) and return its JSON. With `refuse_mistyped` (the
    data API), a declared fact of another type is a 400 (`check_evidence`), raised
    before anything is counted or logged."""
    name = purpose.name
    started = time.perf_counter()
    decision = policy_set.decide(name, facts, explain=explain)
    duration = time.perf_counter() - started
    if refuse_mistyped and may_hide_mistyped_facts(purpose, decision):
        check_evidence(purpose, facts)
    labels = (name, decision.status)
    metrics = _decision_metrics.get(labels)
    if metrics is None:  # labels are bounded (server.metrics): so is the dictionary
        metrics = _decision_metrics[labels] = (POLICY_EVALUATION_DURATION.labels(name), DECISIONS.labels(*labels))
    metrics[0].observe(duration)
    metrics[1].inc()
    decision_id = new_decision_id()
    evaluated_at = evaluated_at_now()
    body = decision_json(decision, decision_id, evaluated_at, supplied_evidence(purpose, facts))
    shadowed = shadow.outcome(purpose, facts, decision, decision_id) if shadow is not None else None
    events.emit(
        DecisionMade(
            decision_id=decision_id,
            purpose=name,
            decision=decision.status,
            reason=decision.reason,
            policy_revision=decision.revision,
            timestamp=evaluated_at,
            request_id=request_id,
            subject=subject,
            record=DecisionInput(purpose, facts, decision.conditions, shadow=shadowed) if recording else None,
        )
    )
    return body


__all__ = [
    "check_context",
    "check_evidence",
    "current_policy_set",
    "decide",
    "decision_json",
    "evaluated_at_now",
    "may_hide_mistyped_facts",
    "new_decision_id",
    "resolve_purpose",
    "supplied_evidence",
]
