"""HTTP endpoints of the data rights: `GET /me/data-export` and `DELETE /me`.

Thin handlers: authenticate, parse the filters, call the service, shape the answer.
Both act on the caller only (`Principal.sub`): there is no way to name another user.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.routing import Route

from server.auth import require_principal
from server.auth.guard import audit_context, auth_service
from server.consent.models import ConsentModel
from server.credentials.models import HeldCredential
from server.errors import ApiError, echo
from server.openapi import QueryParameter, Timestamp, document
from server.privacy.service import (
    ExportFilters,
    check_window,
    erase_user,
    export_data,
)
from server.responses import JSONResponse

_TAGS = ["privacy"]
_ACTION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_ACTION = re.compile(_ACTION_PATTERN)
#: RFC 3339's full-date and date-time (an offset or `Z` required), as `from` and `to` take them.
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATE_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$")
_NO_STORE = {"Cache-Control": "no-store"}


class ExportedProfile(BaseModel):
    """The caller's user record (`service.profile_json`)."""

    id: str
    email: str
    first_name: str | None
    last_name: str | None
    verified: bool
    created_at: Timestamp
    updated_at: Timestamp


class ExportedEvent(BaseModel):
    """One of the caller's audit events, without the trail's chain fields (`service.event_json`)."""

    id: str
    timestamp: Timestamp
    action: str
    purpose: str | None
    decision: str | None = Field(description="the outcome: pass, fail, granted, valid, ...")
    reason: str | None
    decision_id: str | None
    policy_revision: str | None
    request_id: str | None


class ExportedDecisionRecord(BaseModel):
    """What one of the caller's decisions was made on (`decisions.records.record_json`)."""

    decision_id: str
    recorded_at: Timestamp
    purpose: str
    status: str = Field(description="pass, pass_with_conditions or fail")
    reason: str
    policy_revision: str
    facts: dict[str, Any] = Field(description="the facts the engine got; `subject.sub` as the subject reference")
    context: dict[str, Any] = Field(description="the request context, each sensitive value as a keyed hash")
    conditions: list[str]
    hashed: list[str] = Field(description="the paths whose value is a keyed hash (`context.national_id`)")
    refused: bool | None = Field(None, description="true (and only then present): refused before the engine decided")
    shadow: dict[str, Any] | None = Field(
        None, description="present when a shadow set decided too: its revision, agreement, status and reason"
    )


class ExportResponse(BaseModel):
    user_id: str
    export_date: Timestamp = Field(description="UTC, RFC 3339")
    filters: dict[str, str | None] = Field(description="the `from`, `to` and `action` applied")
    profile: ExportedProfile
    consents: list[ConsentModel]
    credentials: list[HeldCredential]
    events: list[ExportedEvent] = Field(description="the caller's audit events, oldest first")
    total: int = Field(description="how many events")
    decision_records: list[ExportedDecisionRecord] = Field(
        description="the caller's decision records (docs/impact.md), oldest first"
    )


class ErasureResponse(BaseModel):
    message: str
    user_id: str
    deleted_at: Timestamp = Field(description="UTC, RFC 3339")
    deleted: list[str] = Field(description="what was erased: the stores' tables and the registry cache")
    retained: list[str] = Field(description="what is kept (see `retention` for why)")
    counts: dict[str, int] = Field(description="rows (or cache entries) deleted, by name")
    sessions_revoked: int
    retention: dict[str, str]


def parse_instant(name: str, value: str | None, *, end_of_day: bool = False) -> datetime | None:
    """An RFC 3339 date-time (with its offset) or date: its midnight, or the next
    midnight with `end_of_day` (so `to=2026-01-31` includes that day). Exactly what the
    OpenAPI document states (`INSTANT_SCHEMA`); empty is absent."""
    if value is None or value == "":
        return None
    try:
        if _DATE.match(value):
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(), UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        if not _DATE_TIME.match(value):
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name}: expected a date (2026-01-31) or an RFC 3339 date-time "
                            f"(2026-01-31T10:00:00Z), got {value[:40]!r}") from None
    return parsed.astimezone(UTC)


#: `from` and `to`: a date or a date-time as RFC 3339 writes them, or empty (absent).
INSTANT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "anyOf": [{"format": "date", "pattern": _DATE.pattern}, {"format": "date-time", "pattern": _DATE_TIME.pattern},
              {"maxLength": 0}],
}


def refuse_other_parameters(request: Request, known: tuple[str, ...]) -> None:
    """A 400 for a query parameter the endpoint does not take: ignoring `?user_id=...`
    would act on the caller while the client meant someone else."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        takes = f"the parameters are {', '.join(known)}" if known else "this endpoint takes no parameters"
        raise ApiError(400, f"{echo(unknown[0])}: unknown query parameter; {takes}")


def parse_filters(request: Request) -> ExportFilters:
    refuse_other_parameters(request, ("from", "to", "action"))
    query = request.query_params
    action = query.get("action") or None
    if action is not None and not _ACTION.match(action):
        raise ApiError(400, "action: expected an audit action name such as decision_made")
    return check_window(ExportFilters(
        since=parse_instant("from", query.get("from")),
        until=parse_instant("to", query.get("to"), end_of_day=True),
        action=action,
    ))


_FILTERS = (
    QueryParameter("from", "events at or after this date or date-time (RFC 3339)", INSTANT_SCHEMA),
    QueryParameter("to", "events before this date-time, or up to the end of this date", INSTANT_SCHEMA),
    QueryParameter("action", "only events of this action, e.g. `decision_made` (empty: any)",
                   {"type": "string", "anyOf": [{"pattern": _ACTION_PATTERN}, {"maxLength": 0}]}),
)


@document("Export the caller's data", tags=_TAGS, response=ExportResponse, query=_FILTERS, auth=True)
async def data_export(request: Request) -> JSONResponse:
    """The caller's profile, consents, credentials and audit events (filtered by `from`,
    `to` and `action`). Events are found by the caller's pseudonymous subject reference;
    an event appears once the audit writer has stored it (within about a second)."""
    principal = await require_principal(request)
    filters = parse_filters(request)
    state = request.app.state
    body = await export_data(
        principal, filters, stores=state.stores, consent=state.consent,
        refs=state.events.subject_refs, audit=audit_context(request),
        now=auth_service(request).now(),
    )
    return JSONResponse(body, headers=_NO_STORE)


@document("Erase the caller's personal data", tags=_TAGS, response=ErasureResponse, auth=True)
async def erase_me(request: Request) -> JSONResponse:
    """Revokes every session and token of the caller, deletes their profile, sessions,
    refresh tokens, consents and credentials in one transaction, deletes their decision
    records, evicts registry answers cached for them, and keeps their audit events under a pseudonymous reference that
    nothing links to them any more. The token used stops working: a second call is a 401."""
    principal = await require_principal(request)
    refuse_other_parameters(request, ())
    state = request.app.state
    body = await erase_user(
        principal, auth=auth_service(request), stores=state.stores, registry=state.registry,
        refs=state.events.subject_refs, audit=audit_context(request),
    )
    return JSONResponse(body, headers=_NO_STORE)


routes = [
    Route("/me/data-export", data_export, methods=["GET"]),
    Route("/me", erase_me, methods=["DELETE"]),
]

__all__ = [
    "ErasureResponse", "ExportResponse", "ExportedDecisionRecord", "ExportedEvent",
    "ExportedProfile", "parse_filters", "parse_instant", "routes"]
