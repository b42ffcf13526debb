"""HTTP endpoints of the token subsystem (docs/tokens.md).

Thin handlers: parse, call `AuthService`, shape the answer. Token answers carry
`Cache-Control: no-store` (RFC 6749 section 5.1).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.auth.guard import audit_context, auth_service, require_principal
from server.auth.models import (
    AuthorizeRequest,
    AuthorizeResponse,
    DiscoveryResponse,
    JwksResponse,
    RefreshRequest,
    RevokeRequest,
    RevokeResponse,
    TokenRequest,
    TokenResponse,
    UserInfoResponse,
)
from server.errors import ApiError
from server.openapi import document
from server.parsing import read_json

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_TAGS = ["auth"]


def _tokens(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=_NO_STORE)


@document("Start a login", tags=_TAGS, request=AuthorizeRequest, response=AuthorizeResponse, errors=(403,))
async def authorize(request: Request) -> JSONResponse:
    """Creates the user on first sight and a session to exchange at `/auth/token` within
    10 minutes. Disabled (403 `local_auth_disabled`) in external OIDC mode."""
    body = await read_json(request, AuthorizeRequest)
    session = await auth_service(request).authorize(
        body.email, body.client_id, body.scopes, audit_context(request)
    )
    return JSONResponse({"session_id": session.id, "user_id": session.user_id, "status": session.status})


@document("Issue tokens", tags=_TAGS, request=TokenRequest, response=TokenResponse, errors=(403,))
async def token(request: Request) -> JSONResponse:
    """`grant_type: session` exchanges a session from `/auth/authorize` (once);
    `grant_type: refresh_token` rotates a refresh token. A failed grant is a 400
    `invalid_grant`. Disabled (403) in external OIDC mode."""
    body = await read_json(request, TokenRequest)
    service, audit = auth_service(request), audit_context(request)
    if body.grant_type == "session":
        if body.session_id is None:
            raise ApiError(400, "session_id: required with grant_type 'session'")
        return _tokens(await service.exchange_session(body.session_id, audit))
    if body.refresh_token is None:
        raise ApiError(400, "refresh_token: required with grant_type 'refresh_token'")
    return _tokens(await service.refresh(body.refresh_token, audit))


@document("Refresh tokens", tags=_TAGS, request=RefreshRequest, response=TokenResponse, errors=(403,))
async def refresh(request: Request) -> JSONResponse:
    """Rotates the refresh token: the presented one stops working. Presenting a used one
    again revokes every token of its login (reuse detection)."""
    body = await read_json(request, RefreshRequest)
    return _tokens(await auth_service(request).refresh(body.refresh_token, audit_context(request)))


@document("Revoke a token, or every session", tags=_TAGS, request=RevokeRequest, response=RevokeResponse,
          errors=(401,))
async def revoke(request: Request) -> JSONResponse:
    """`{"token": ...}`: an access token (by its `jti`, until it expires) or a refresh
    token (its whole login); an unknown token is not an error (RFC 7009).
    `{"all": true}` needs a bearer token and revokes every session of its user."""
    body = await read_json(request, RevokeRequest)
    if (body.token is None) == (not body.all):
        raise ApiError(400, "token: give either `token` or `all: true`, not both or neither")
    service, audit = auth_service(request), audit_context(request)
    if body.all:
        principal = await require_principal(request)
        sessions = await service.revoke_all(principal, audit)
        return JSONResponse({"revoked": True, "sessions": sessions})
    assert body.token is not None
    await service.revoke(body.token, audit)
    return JSONResponse({"revoked": True, "sessions": None})


@document("The caller's OIDC claims", tags=_TAGS, response=UserInfoResponse, auth=True)
async def userinfo(request: Request) -> JSONResponse:
    """`sub, email, email_verified` and the names that are known (none in regulated mode)."""
    principal = await require_principal(request)
    return JSONResponse(await auth_service(request).userinfo(principal))


@document("Public signing keys (JWK Set)", tags=_TAGS, response=JwksResponse)
async def jwks(request: Request) -> JSONResponse:
    """Every key whose tokens may still be valid: the signing key and retired keys until
    the tokens they signed have expired."""
    keys = await auth_service(request).jwks()
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})


@document("OpenID Connect discovery document", tags=_TAGS, response=DiscoveryResponse)
async def openid_configuration(request: Request) -> JSONResponse:
    """Issuer, endpoints, JWKS URI and supported algorithms."""
    return JSONResponse(auth_service(request).discovery())


routes = [
    Route("/auth/authorize", authorize, methods=["POST"]),
    Route("/auth/token", token, methods=["POST"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/revoke", revoke, methods=["POST"]),
    Route("/auth/userinfo", userinfo, methods=["GET"]),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
]

__all__ = ["routes"]
