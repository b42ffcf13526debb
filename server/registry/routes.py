"""HTTP endpoints of the registry subsystem (docs/api.md): citizen and sanctions checks.

Each needs a bearer token and the caller's consent `registry_check`, and is audited
(`registry_citizen_checked`, `registry_sanctions_checked`), refusals and registry
timeouts included. In regulated mode the citizen answer is only `national_id, valid,
checked_at`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.auth import require_principal
from server.auth.events import AuditContext
from server.errors import request_id_of
from server.openapi import document
from server.parsing import read_json
from server.registry.models import CitizenResponse, NationalIdRequest, SanctionsResponse
from server.registry.service import RegistryService, RegistryUnavailable
from server.responses import JSONResponse

_TAGS = ["registry"]
PURPOSE = "registry_check"
CITIZEN_CHECKED = "registry_citizen_checked"
SANCTIONS_CHECKED = "registry_sanctions_checked"
_REGULATED_CITIZEN_FIELDS = ("national_id", "valid", "checked_at")


def registry_service(request: Request) -> RegistryService:
    service: RegistryService = request.app.state.registry
    return service


async def _checked(request: Request, action: str) -> tuple[str, str, AuditContext]:
    """The caller and the national id, once the token and the consent are in order."""
    principal = await require_principal(request)
    body = await read_json(request, NationalIdRequest)
    request_id = request_id_of(request.scope)
    await request.app.state.consent.require(principal.sub, PURPOSE, audit_as=action, request_id=request_id)
    return principal.sub, body.national_id, AuditContext(request.app.state.events, request_id)


@document("Look up a citizen record", tags=_TAGS, request=NationalIdRequest, response=CitizenResponse,
          errors=(403, 502, 504), auth=True)
async def citizen(request: Request) -> JSONResponse:
    """Needs the consent `registry_check`. Answers are cached for five minutes. In
    regulated mode only `national_id`, `valid` and `checked_at` are returned."""
    subject, national_id, audit = await _checked(request, CITIZEN_CHECKED)
    service = registry_service(request)
    try:
        record = await service.citizen(national_id, subject=subject)
    except RegistryUnavailable as err:
        audit.emit(CITIZEN_CHECKED, subject, outcome="unavailable", reason=err.error, purpose=PURPOSE)
        raise
    audit.emit(CITIZEN_CHECKED, subject, outcome="valid" if record.valid else "invalid", purpose=PURPOSE)
    body = record.to_json()
    if service.regulated:
        body = {name: body[name] for name in _REGULATED_CITIZEN_FIELDS}
    return JSONResponse(body)


@document("Screen against the sanctions list", tags=_TAGS, request=NationalIdRequest, response=SanctionsResponse,
          errors=(403, 502, 504), auth=True)
async def sanctions(request: Request) -> JSONResponse:
    """Needs the consent `registry_check`. Answers are cached for five minutes."""
    subject, national_id, audit = await _checked(request, SANCTIONS_CHECKED)
    try:
        record = await registry_service(request).sanctions(national_id, subject=subject)
    except RegistryUnavailable as err:
        audit.emit(SANCTIONS_CHECKED, subject, outcome="unavailable", reason=err.error, purpose=PURPOSE)
        raise
    audit.emit(SANCTIONS_CHECKED, subject, outcome="listed" if record.listed else "not_listed", purpose=PURPOSE)
    return JSONResponse({"national_id": record.national_id, "listed": record.listed, "source": record.source,
                         "checked_at": record.to_json()["checked_at"]})


routes = [
    Route("/registry/citizen", citizen, methods=["POST"]),
    Route("/registry/sanctions", sanctions, methods=["POST"]),
]

__all__ = ["routes"]
