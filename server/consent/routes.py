"""HTTP endpoints of the consent subsystem (docs/api.md): the caller's own consents.

Thin handlers: authenticate, parse, call `ConsentService`, shape the answer. The user is
always the token's subject: no route takes a user id, so nobody reaches another user's
consents.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.auth import require_principal
from server.consent.models import (
    ConsentListResponse,
    ConsentRevokeResponse,
    GrantResponse,
    PurposesRequest,
)
from server.consent.service import PURPOSES, STATUSES, ConsentService
from server.errors import request_id_of
from server.openapi import Link, QueryParameter, answer, document
from server.parsing import read_json
from server.responses import JSONResponse

_TAGS = ["consent"]


def consent_service(request: Request) -> ConsentService:
    service: ConsentService = request.app.state.consent
    return service


def _plural(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")


@document("Grant or renew consents", tags=_TAGS, request=PurposesRequest, response=GrantResponse, auth=True,
          operation_id="grant_consents",
          links=[Link("evaluate", "evaluate", "decide a purpose whose consents are now granted"),
                 Link("revoke_consents", "revoke_consents", "revoke the first purpose granted",
                      {"purposes": [answer("/granted/0/purpose")]})])
async def grant(request: Request) -> JSONResponse:
    """Each purpose is granted for one year from now; granting again renews it (and
    undoes a revocation). Unknown purposes are a 400 `invalid_purpose`."""
    principal = await require_principal(request)
    body = await read_json(request, PurposesRequest)
    service = consent_service(request)
    granted = await service.grant(principal.sub, body.purposes, request_id=request_id_of(request.scope))
    now = service.clock()
    views = [service.view(c, now).to_json() for c in granted]
    return JSONResponse({"granted": views, "message": f"consent granted for {_plural(len(views), 'purpose')}"})


@document("Revoke consents", tags=_TAGS, request=PurposesRequest, response=ConsentRevokeResponse, auth=True,
          operation_id="revoke_consents")
async def revoke(request: Request) -> JSONResponse:
    """Idempotent: `revoked` lists the purposes this call revoked; revoking one that is
    not granted, or already revoked, changes nothing and is not an error."""
    principal = await require_principal(request)
    body = await read_json(request, PurposesRequest)
    revoked = await consent_service(request).revoke(
        principal.sub, body.purposes, request_id=request_id_of(request.scope)
    )
    message = f"consent revoked for {_plural(len(revoked), 'purpose')}" if revoked else "nothing to revoke"
    return JSONResponse({"revoked": revoked, "message": message})


_FILTERS = (
    QueryParameter("status", "only consents in this status", {"type": "string", "enum": list(STATUSES)}),
    QueryParameter("purpose", "only the consent for this purpose", {"type": "string", "enum": list(PURPOSES)}),
)


@document("The caller's consents", tags=_TAGS, response=ConsentListResponse, query=_FILTERS, auth=True)
async def list_consents(request: Request) -> JSONResponse:
    """Every consent the caller ever granted, by purpose, with its status now: `active`,
    `expired` (a year after the grant) or `revoked`."""
    principal = await require_principal(request)
    params = request.query_params
    views = await consent_service(request).list(
        principal.sub, status=params.get("status"), purpose=params.get("purpose")
    )
    return JSONResponse({"consents": [v.to_json() for v in views]})


routes = [
    Route("/auth/consent", grant, methods=["POST"]),
    Route("/auth/consent", list_consents, methods=["GET"]),
    Route("/auth/consent/revoke", revoke, methods=["POST"]),
]

__all__ = ["consent_service", "routes"]
