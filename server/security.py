"""Who is calling: the pluggable authentication step of the data API.

The data API asks `app.state.data_api_auth(request)` for the caller before answering.
With `IDGW_DATA_API_AUTH=none` that is `allow_anonymous` (no principal). With `bearer`
(the default) it is `require_bearer`, which until the token subsystem exists has no
way to validate a token and therefore rejects every request with 401; the token
subsystem replaces `app.state.data_api_auth` with its own validator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from server.errors import ApiError


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, from a validated access token."""

    sub: str
    client_id: str | None = None
    scope: tuple[str, ...] = ()


Authenticator = Callable[[Request], Awaitable[Principal | None]]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="idgw"'}


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def missing_token() -> ApiError:
    return ApiError(401, "this endpoint needs an `Authorization: Bearer <token>` header", headers=_CHALLENGE)


def invalid_token(description: str) -> ApiError:
    return ApiError(
        401, description, error="invalid_token",
        headers={"WWW-Authenticate": 'Bearer realm="idgw", error="invalid_token"'},
    )


async def allow_anonymous(request: Request) -> Principal | None:
    return None


async def require_bearer(request: Request) -> Principal | None:
    if bearer_token(request) is None:
        raise missing_token()
    raise invalid_token(
        "this server cannot validate bearer tokens yet; run the data API with IDGW_DATA_API_AUTH=none"
    )


def data_api_authenticator(mode: str) -> Authenticator:
    return allow_anonymous if mode == "none" else require_bearer


__all__ = [
    "Authenticator",
    "Principal",
    "allow_anonymous",
    "bearer_token",
    "data_api_authenticator",
    "invalid_token",
    "missing_token",
    "require_bearer",
]
