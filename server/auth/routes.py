"""HTTP endpoints of the token subsystem (docs/tokens.md).

Thin handlers: parse, call `AuthService`, shape the answer. Token answers carry
`Cache-Control: no-store` (RFC 6749 section 5.1). `/auth/token`, `/auth/refresh` and
`/auth/revoke` read JSON or, as RFC 6749 and RFC 7009 clients send it, a form; their
errors are RFC 6749's fields (`error`, `error_description`) with its codes
(`invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.auth.guard import audit_context, auth_service, require_principal
from server.auth.models import (
    GRANT_TYPES,
    SESSION_GRANT,
    SESSION_GRANTS,
    AuthorizeRequest,
    AuthorizeResponse,
    DiscoveryResponse,
    JwksResponse,
    RefreshRequest,
    TokenRequest,
    TokenResponse,
    TokenRevokeRequest,
    TokenRevokeResponse,
    UserInfoResponse,
)
from server.auth.service import ClientCheck
from server.errors import ApiError, echo
from server.openapi import Link, answer, document
from server.parsing import read_json, read_json_or_form

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_TAGS = ["auth"]


#: Where a token answer's refresh token goes; its access token authorizes the consent grant.
_TOKEN_LINKS = (
    Link("grant_consents", "grant_consents", "grant consents with the access token (Authorization: Bearer)"),
    Link("refresh_tokens", "refresh_tokens", "rotate the refresh token",
         {"refresh_token": answer("/refresh_token")}),
    Link("revoke_refresh_token", "revoke_token", "revoke the refresh token", {"token": answer("/refresh_token")}),
)


def _tokens(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=_NO_STORE)


@document("Start a login", tags=_TAGS, request=AuthorizeRequest, response=AuthorizeResponse, errors=(403,),
          operation_id="start_login",
          links=[Link("issue_tokens", "issue_tokens", "exchange the session for tokens",
                      {"grant_type": SESSION_GRANT, "session_id": answer("/session_id")})])
async def authorize(request: Request) -> JSONResponse:
    """Creates the user on first sight and a session to exchange at `/auth/token` within
    10 minutes. Disabled (403 `local_auth_disabled`) in external OIDC mode."""
    body = await read_json(request, AuthorizeRequest)
    session = await auth_service(request).authorize(
        body.email, body.client_id, body.scopes, audit_context(request)
    )
    return JSONResponse({"session_id": session.id, "user_id": session.user_id, "status": session.status})


def _client(body: TokenRequest | RefreshRequest) -> ClientCheck | None:
    if body.client_id is None and body.scope is None:
        return None
    return ClientCheck(body.client_id, tuple(body.scope.split()) if body.scope is not None else None)


@document("Issue tokens", tags=_TAGS, request=TokenRequest, response=TokenResponse, errors=(403,), form=True,
          operation_id="issue_tokens", links=_TOKEN_LINKS)
async def token(request: Request) -> JSONResponse:
    """The session grant (`grant_type` `urn:idgw:params:oauth:grant-type:session`, or
    `session`) exchanges a session from `/auth/authorize` (once) given as `session_id`;
    `grant_type: refresh_token` rotates a refresh token. A failed grant is a 400
    `invalid_grant`, another grant type a 400 `unsupported_grant_type`. JSON or a form.
    Disabled (403) in external OIDC mode."""
    body = await read_json_or_form(request, TokenRequest)
    service, audit = auth_service(request), audit_context(request)
    if body.grant_type not in GRANT_TYPES:
        raise ApiError(400, f"grant_type: {echo(repr(body.grant_type))} is not supported; "
                            f"supported: {', '.join(GRANT_TYPES)}", error="unsupported_grant_type")
    if body.grant_type in SESSION_GRANTS:
        if body.session_id is None or body.refresh_token is not None:
            raise ApiError(400, "session_id: the session grant takes a session_id and no refresh_token")
        return _tokens(await service.exchange_session(body.session_id, audit, _client(body)))
    if body.refresh_token is None or body.session_id is not None:
        raise ApiError(400, "refresh_token: grant_type 'refresh_token' takes a refresh_token and no session_id")
    return _tokens(await service.refresh(body.refresh_token, audit, _client(body)))


@document("Refresh tokens", tags=_TAGS, request=RefreshRequest, response=TokenResponse, errors=(403,), form=True,
          operation_id="refresh_tokens", links=_TOKEN_LINKS)
async def refresh(request: Request) -> JSONResponse:
    """Rotates the refresh token: the presented one stops working. Presenting a used one
    again revokes every token of its login (reuse detection). JSON or a form (RFC 6749
    section 6)."""
    body = await read_json_or_form(request, RefreshRequest)
    return _tokens(await auth_service(request).refresh(body.refresh_token, audit_context(request), _client(body)))


@document("Revoke a token, or every session", tags=_TAGS, request=TokenRevokeRequest, response=TokenRevokeResponse,
          errors=(401,), form=True, operation_id="revoke_token")
async def revoke(request: Request) -> JSONResponse:
    """`{"token": ...}`: an access token (by its `jti`, until it expires) or a refresh
    token (its whole login); an unknown token is not an error (RFC 7009).
    `{"all": true}` needs a bearer token and revokes every session of its user. JSON
    or a form (RFC 7009)."""
    body = await read_json_or_form(request, TokenRevokeRequest)
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


@document("The caller's OIDC claims", tags=_TAGS, response=UserInfoResponse, auth=True,
          operation_id="get_userinfo")
async def userinfo(request: Request) -> JSONResponse:
    """`sub, email, email_verified` and the names that are known (none in regulated mode)."""
    principal = await require_principal(request)
    return JSONResponse(await auth_service(request).userinfo(principal))


@document("Public signing keys (JWK Set)", tags=_TAGS, response=JwksResponse, operation_id="get_jwks")
async def jwks(request: Request) -> JSONResponse:
    """Every key whose tokens may still be valid: the signing key and retired keys until
    the tokens they signed have expired."""
    keys = await auth_service(request).jwks()
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})


@document("OpenID Connect discovery document", tags=_TAGS, response=DiscoveryResponse,
          operation_id="get_openid_configuration")
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
