"""HTTP endpoints of the credential subsystem (docs/api.md): issue, verify, revoke.

Issuing needs the consent `vc_issuance` (a refusal is audited as `vc_issued`, outcome
`denied`). Verifying by id and revoking concern the caller's own credentials only:
another user's credential id answers exactly like an unknown one (404).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from server.auth import require_principal
from server.credentials.models import (
    CredentialResponse,
    CredentialRevokeRequest,
    CredentialRevokeResponse,
    IssueRequest,
    VerifyRequest,
    VerifyResponse,
)
from server.credentials.service import VC_ISSUED, CredentialService, Verification, credential_json
from server.errors import request_id_of
from server.openapi import Link, answer, document
from server.parsing import read_json
from server.responses import JSONResponse

_TAGS = ["credentials"]
PURPOSE = "vc_issuance"


def credential_service(request: Request) -> CredentialService:
    service: CredentialService = request.app.state.credentials
    return service


@document("Issue a verifiable credential", tags=_TAGS, request=IssueRequest, response=CredentialResponse,
          errors=(403, 502, 504), auth=True, operation_id="issue_credential",
          links=[Link("verify_by_id", "verify_credential", "verify it by its id (the holder)",
                      {"credential_id": answer("/credential_id")}),
                 Link("verify_by_jwt", "verify_credential", "verify it by its JWT (anyone presented with it)",
                      {"jwt": answer("/jwt")}),
                 Link("revoke_credential", "revoke_credential", "revoke it",
                      {"credential_id": answer("/credential_id")})])
async def issue(request: Request) -> JSONResponse:
    """Needs the consent `vc_issuance`. `AgeOver18` is issued to a valid citizen of 18 or
    more (the citizen registry is asked); otherwise a 400 `not_eligible` whose `reason` is
    `invalid_citizen` or `underage`. The answer carries the credential as a signed JWT."""
    principal = await require_principal(request)
    body = await read_json(request, IssueRequest)
    request_id = request_id_of(request.scope)
    await request.app.state.consent.require(principal.sub, PURPOSE, audit_as=VC_ISSUED,
                                            request_id=request_id)
    issued = await credential_service(request).issue(principal.sub, body.type, body.national_id,
                                                     request_id=request_id)
    shaped = credential_json(issued.credential)
    del shaped["revoked_at"]
    return JSONResponse({**shaped, "jwt": issued.jwt})


def _verification_json(verification: Verification) -> dict[str, Any]:
    body: dict[str, Any] = {"valid": verification.valid}
    if verification.reason is not None:
        body["reason"] = verification.reason
        body["detail"] = verification.detail
    if verification.credential is not None:
        shaped = credential_json(verification.credential)
        body.update({name: shaped[name] for name in ("credential_id", "type", "subject", "issued_at", "claims")})
        if verification.credential.revoked_at is not None:
            body["revoked_at"] = shaped["revoked_at"]
    return body


@document("Verify a credential", tags=_TAGS, request=VerifyRequest, response=VerifyResponse, errors=(404,),
          auth=True, operation_id="verify_credential")
async def verify(request: Request) -> JSONResponse:
    """By `jwt` (anyone presented with it): signature against the JWKS, issuer, and the
    stored credential, which must not be revoked. By `credential_id`: the caller's own.
    A credential that does not exist (or is not the caller's) is a 404
    `{"valid": false, "reason": "credential_not_found"}`."""
    principal = await require_principal(request)
    body = await read_json(request, VerifyRequest)
    verification = await credential_service(request).verify(
        body.credential_id, body.jwt, caller=principal.sub, request_id=request_id_of(request.scope)
    )
    return JSONResponse(_verification_json(verification))


@document("Revoke one of the caller's credentials", tags=_TAGS, request=CredentialRevokeRequest, response=CredentialRevokeResponse,
          errors=(404,), auth=True, operation_id="revoke_credential")
async def revoke(request: Request) -> JSONResponse:
    """The holder only; revoking again keeps the first `revoked_at`. It stops counting as
    evidence (`has_credential`) and fails verification from then on."""
    principal = await require_principal(request)
    body = await read_json(request, CredentialRevokeRequest)
    credential = await credential_service(request).revoke(
        principal.sub, body.credential_id, request_id=request_id_of(request.scope)
    )
    shaped = credential_json(credential)
    return JSONResponse({"credential_id": credential.id, "revoked": True, "revoked_at": shaped["revoked_at"]})


routes = [
    Route("/vc/issue", issue, methods=["POST"]),
    Route("/vc/verify", verify, methods=["POST"]),
    Route("/vc/revoke", revoke, methods=["POST"]),
]

__all__ = ["routes"]
