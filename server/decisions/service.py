"""Deciding on caller-supplied facts: the data API's service logic.

The handler parses; this module picks the live policy set once, validates the request
context against the purpose's schema, decides, counts, emits the `decision_made`
event and shapes the decision JSON. Nothing here gathers facts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dsl import UNDEFINED
from engine import PolicySet, Purpose, UnknownPurpose
from engine.context import context_validator
from engine.policyset import lookup
from server.errors import ApiError
from server.events import DecisionMade, EventPublisher
from server.ids import PerSecond, random_urlsafe, time_ordered
from server.metrics import DECISIONS, POLICY_EVALUATION_DURATION, LabelCache
from server.reload import LivePolicies

_decisions = LabelCache(DECISIONS)
_evaluation_durations = LabelCache(POLICY_EVALUATION_DURATION)


def new_decision_id() -> str:
    """`dec_`, the current second (8 hex digits: ids sort by time), 128 random bits."""
    return "dec_" + time_ordered() + random_urlsafe(16)


#: The current UTC second as the decision JSON writes it (`YYYY-MM-DDTHH:MM:SSZ`), formatted
#: once per second: formatting a datetime cost ~3 µs of every decision.
evaluated_at_now = PerSecond(lambda second: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))


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
            f"unknown purpose {name!r}; known purposes: {', '.join(known) or 'none'}",
            error="unknown_purpose",
            extra={"known_purposes": known},
        ) from None


def supplied_evidence(purpose: Purpose, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The declared facts the caller supplied (absent ones are left out)."""
    out: dict[str, Any] = {}
    for spec in purpose.evidence:
        name = spec.name
        value = facts.get(name, UNDEFINED) if "." not in name else lookup(facts, name)
        if value is not UNDEFINED:
            out[name] = value  # parsed from JSON: already JSON-safe
    return out


def decide(
    policy_set: PolicySet,
    purpose_name: str,
    facts: dict[str, Any],
    explain: bool,
    events: EventPublisher,
    request_id: str | None,
    subject: str | None = None,
) -> dict[str, Any]:
    """Decide `purpose_name` on `facts` with `policy_set`; return the decision JSON."""
    purpose = resolve_purpose(policy_set, purpose_name)
    problems = context_validator(purpose.context)(facts.get("context"))  # compiled once per policy set
    if problems:
        raise ApiError(400, "; ".join(f"input.{p}" for p in problems), error="invalid_context")
    started = time.perf_counter()
    decision = policy_set.decide(purpose_name, facts, explain=explain)
    _evaluation_durations(purpose_name)[0].observe(time.perf_counter() - started)
    _decisions(purpose_name, decision.status)[0].inc()
    decision_id = new_decision_id()
    evaluated_at = evaluated_at_now()
    body = decision.to_dict(decision_id=decision_id, evaluated_at=evaluated_at, evidence=supplied_evidence(purpose, facts))
    events.emit(
        DecisionMade(
            decision_id=decision_id,
            purpose=purpose_name,
            decision=decision.status,
            reason=decision.reason,
            policy_revision=decision.revision,
            timestamp=evaluated_at,
            request_id=request_id,
            subject=subject,
        )
    )
    return body


__all__ = ["current_policy_set", "decide", "evaluated_at_now", "new_decision_id", "resolve_purpose", "supplied_evidence"]
