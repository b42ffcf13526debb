"""Who is calling: the pluggable authentication step of the data API.

The data API asks `app.state.data_api_auth(request)` for the caller before answering.
With `IDGW_DATA_API_AUTH=none` that is `allow_anonymous` (no principal). With `bearer`
(the default) it is `server.auth.require_principal`, the token subsystem's check that
every protected route uses. The 401 errors below are the ones that check raises;
`invalid_grant` is the token endpoint's 400, and `user_gone` the answer of every
subsystem to a token, session or refresh token whose user has been erased meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from server.errors import ApiError


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, from a validated access token."""

    sub: str  # the local user id (in external OIDC mode too)
    client_id: str | None = None
    scope: tuple[str, ...] = ()
    session_id: str | None = None  # `sid`: the login the token belongs to
    token_id: str | None = None  # `jti`


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
    # RFC 6750 section 3: the description may hold printable ASCII but `"` and `\`.
    quoted = "".join(c for c in description if " " <= c <= "~" and c not in '"\\')
    return ApiError(
        401, description, error="invalid_token",
        headers={"WWW-Authenticate": f'Bearer realm="idgw", error="invalid_token", error_description="{quoted}"'},
    )


def invalid_grant(description: str) -> ApiError:
    return ApiError(400, description, error="invalid_grant")


def user_gone(holder: Literal["token", "session", "refresh token"] = "token") -> ApiError:
    """The answer when the user that `holder` names no longer exists (erased after it was
    issued): a 401 `invalid_token` for an access token, a 400 `invalid_grant` for the
    session or refresh token of a grant."""
    description = f"the {holder}'s user no longer exists"
    return invalid_token(description) if holder == "token" else invalid_grant(description)


async def allow_anonymous(request: Request) -> Principal | None:
    return None


__all__ = [
    "Authenticator",
    "Principal",
    "allow_anonymous",
    "bearer_token",
    "invalid_grant",
    "invalid_token",
    "missing_token",
    "user_gone",
]
