"""`POST /decision/evaluate`: a decision on evidence the gateway gathers itself.

The decision flow, in order (the answers: docs/api.md):

    authenticate            require_principal (401)
    the purpose             the live policy set's; unknown -> 400 listing the known ones
    its consents            app.state.consent.require(user, purpose) for each (403)
    its context             checked against the purpose's schema, once (400,
                            service.check_context)
    its evidence            exactly the declared facts, gathered concurrently with a
                            deadline (evidence.gather_evidence; registry timeout -> 504)
    decide                  server.decisions.service.decide: the engine, decisions_total,
                            the `decision_made` event with decision_id and policy_revision

A request refused for want of consent, or whose evidence cannot be gathered, is still
in the decision log: a `decision_made` event with outcome `fail` and the error code as
its reason (`missing_consent`, `registry_unavailable`, ...), whose `decision_id` the
error answer carries. Requests refused before that (no token, a malformed body, an
unknown purpose, a context outside the schema) reach no one's data and are not logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol

from pydantic import ConfigDict, Field
from starlette.datastructures import State
from starlette.requests import Request
from starlette.routing import Route

from engine import PolicySet, Purpose
from server.auth import require_principal
from server.decisions.evidence import (
    ActiveConsents,
    EvidenceRequest,
    EvidenceSources,
    EvidenceTimeout,
    gather_evidence,
    subject_facts,
)
from server.decisions.models import EXPLAIN, DecisionBody
from server.decisions.schemas import expand_evaluate
from server.decisions.service import (
    check_context,
    current_policy_set,
    decide,
    evaluated_at_now,
    new_decision_id,
    resolve_purpose,
)
from server.errors import ApiError, api_error_for, request_id_of
from server.events import DecisionInput, DecisionMade, EventPublisher
from server.metrics import DECISIONS
from server.openapi import document
from server.parsing import RequestBody, query_flag, read_json
from server.responses import JSONResponse
from server.security import Principal
from server.shadow import Shadow

#: How long gathering may take beyond the registry's own timeout (`IDGW_REGISTRY_TIMEOUT_MS`),
#: which answers first with its 504; this deadline bounds every other provider too.
DEADLINE_MARGIN_SECONDS = 0.25


class ConsentChecks(ActiveConsents, Protocol):
    async def require(self, user_id: str, purpose: str) -> Any:
        """Raises a 403 `ApiError` unless the user holds an active consent for `purpose`."""
        ...


class EvaluateRequest(RequestBody):
    """`POST /decision/evaluate` body: the purpose and the request context."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"purpose": "age_verification", "context": {"national_id": "123456789"}}]},
    )

    purpose: str = Field(min_length=1, max_length=200, description="a purpose of the live policy set")
    context: dict[str, Any] = Field(
        default_factory=dict, description="the request context, checked against the purpose's `context` schema"
    )


def evidence_sources(state: State) -> tuple[ConsentChecks, EvidenceSources]:
    """The consent service and the evidence sources of the app (503 while not wired)."""
    try:
        consent: ConsentChecks = state.consent
        return consent, EvidenceSources(registry=state.registry, credentials=state.credentials, consent=consent)
    except AttributeError as missing:
        raise ApiError(503, f"the gateway is not ready: {missing}", error="not_ready") from None


def evidence_deadline(state: State) -> float:
    return float(state.settings.registry.timeout_ms) / 1000 + DEADLINE_MARGIN_SECONDS


def known_purpose(policy_set: PolicySet, name: str) -> Purpose:
    """The purpose `name`, or a 400 `unknown_purpose` listing the known ones."""
    try:
        return resolve_purpose(policy_set, name)
    except ApiError as err:  # the data API's 404, as this endpoint's 400: the body names a purpose
        raise ApiError(400, err.description, error=err.error, extra=err.extra) from None


async def evaluate_purpose(
    policy_set: PolicySet,
    purpose_name: str,
    context: dict[str, Any],
    principal: Principal,
    *,
    consent: ConsentChecks,
    sources: EvidenceSources,
    deadline: float,
    explain: bool,
    events: EventPublisher,
    request_id: str | None,
    recording: bool = True,
    shadow: Shadow | None = None,
) -> dict[str, Any]:
    """The decision JSON for `purpose_name` about `principal`, following the flow above."""
    purpose = known_purpose(policy_set, purpose_name)
    record = DecisionInput(purpose, {"context": context, "subject": subject_facts(principal)}, refused=True)
    refusals = partial(logged_refusal, policy_set, purpose_name, events, request_id, principal.sub,
                       record if recording else None)
    with refusals():
        for required in purpose.consent:
            await consent.require(principal.sub, required)
    check_context(purpose, context)
    with refusals():
        facts = await gather_evidence(purpose, EvidenceRequest(principal, context), sources, deadline)
    return decide(policy_set, purpose, facts, explain, events, request_id, principal.sub, recording=recording,
                  shadow=shadow)


@contextmanager
def logged_refusal(
    policy_set: PolicySet, purpose: str, events: EventPublisher, request_id: str | None, subject: str,
    record: DecisionInput | None = None,
) -> Iterator[None]:
    """Put a failure of the block in the decision log (`log_undecided`, the error code as
    reason) and its `decision_id` in the error answer, which is the app's answer to the
    exception (`api_error_for`: the database being down is a 503 `unavailable`)."""
    try:
        yield
    except Exception as exc:
        error = exc.as_api_error() if isinstance(exc, EvidenceTimeout) else api_error_for(exc)
        reason = error.error if error is not None else "internal_error"
        decision_id = log_undecided(policy_set, purpose, reason, events, request_id, subject, record)
        if error is None:
            raise  # a bug: a 500 (the log has the trace), still in the decision log
        error.extra["decision_id"] = decision_id
        if error is exc:
            raise
        raise error from exc


def log_undecided(
    policy_set: PolicySet,
    purpose: str,
    reason: str,
    events: EventPublisher,
    request_id: str | None,
    subject: str,
    record: DecisionInput | None = None,
) -> str:
    """Record a request that failed before the engine could decide: a `fail` with the error
    code as reason, in the decision log (with `record`, marked refused) and in
    `decisions_total`. Returns its decision id."""
    decision_id = new_decision_id()
    DECISIONS.labels(purpose, "fail").inc()
    events.emit(DecisionMade(
        decision_id=decision_id,
        purpose=purpose,
        decision="fail",
        reason=reason,
        policy_revision=policy_set.revision,
        timestamp=evaluated_at_now(),
        request_id=request_id,
        subject=subject,
        record=record,
    ))
    return decision_id


@document(
    "Decide a purpose on the evidence the gateway gathers",
    tags=["decisions"], request=EvaluateRequest, response=DecisionBody, errors=(400, 403, 503, 504),
    query=(EXPLAIN,), auth=True, by_policy=expand_evaluate,
)
async def evaluate(request: Request) -> JSONResponse:
    """Checks the purpose's consents (403 `missing_consent`, `consent_expired`,
    `consent_revoked`) and its `context` schema (400 `invalid_context`), gathers exactly
    the facts the purpose declares (registries, credentials, consents, the token's
    subject) concurrently, and decides. An unknown purpose is a 400 `unknown_purpose`
    listing the known ones; a registry that does not answer in time is a 504
    `registry_unavailable` (the request is still audited, its `decision_id` in the body).
    """
    principal = await require_principal(request)
    explain = query_flag(request, "explain")
    body = await read_json(request, EvaluateRequest)
    state = request.app.state
    policy_set = current_policy_set(state.policies)
    consent, sources = evidence_sources(state)
    decision = await evaluate_purpose(
        policy_set, body.purpose, body.context, principal,
        consent=consent, sources=sources, deadline=evidence_deadline(state), explain=explain,
        events=state.events, request_id=request_id_of(request.scope), recording=state.decision_recording,
        shadow=state.shadow,
    )
    return JSONResponse(decision)


routes = [Route("/decision/evaluate", evaluate, methods=["POST"])]

__all__ = ["ConsentChecks", "EvaluateRequest", "evaluate_purpose", "known_purpose", "log_undecided", "routes"]
