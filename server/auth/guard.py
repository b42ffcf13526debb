"""The one authentication step of every protected route.

    principal = await require_principal(request)

reads `Authorization: Bearer <token>`, verifies the token with the app's `AuthService`
(algorithm, `kid`, signature, `iss`, `aud`, `exp`/`nbf`, revocation) and returns the
caller; it also leaves it on `request.state.principal`. A missing header is a 401
with `WWW-Authenticate: Bearer realm="idgw"`; a token that fails any check is a 401
`invalid_token` whose description says which check, with `WWW-Authenticate: Bearer
realm="idgw", error="invalid_token"`. `Principal.sub` is the local user id in both auth
modes.
"""

from __future__ import annotations

from starlette.requests import Request

from server.auth.events import AuditContext
from server.auth.service import AuthService
from server.errors import request_id_of
from server.security import Principal, bearer_token, missing_token


def audit_context(request: Request) -> AuditContext:
    """Where the request's audit events go (`app.state.events`), with its request id."""
    return AuditContext(request.app.state.events, request_id_of(request.scope))


def auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


async def require_principal(request: Request) -> Principal:
    """The authenticated caller of `request`, or a 401."""
    token = bearer_token(request)
    if token is None:
        raise missing_token()
    principal = await auth_service(request).authenticate(token, audit_context(request))
    request.state.principal = principal
    return principal


__all__ = ["audit_context", "auth_service", "require_principal"]
