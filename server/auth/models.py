"""Request and response models of the token endpoints (validation and OpenAPI).

Bodies are validated here so that bad input is a 400 naming the field (the error shape
of docs/api.md): emails (format, at most 254 characters, normalised to lower case), client ids
(1 to 128 characters of `A-Z a-z 0-9 . _ : -`), scopes (known names only).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from server.parsing import RequestBody

EMAIL_MAX_LENGTH = 254
KNOWN_SCOPES = ("openid", "profile", "email")
DEFAULT_SCOPE = "openid"

_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def is_valid_email(value: str) -> bool:
    """An address of the usual `local@domain.tld` form, at most 254 characters."""
    return len(value) <= EMAIL_MAX_LENGTH and _EMAIL.fullmatch(value) is not None


def parse_scope(value: str) -> tuple[str, ...]:
    """`"openid  profile openid"` -> `("openid", "profile")`; unknown names are refused."""
    names = tuple(dict.fromkeys(value.split()))
    unknown = [n for n in names if n not in KNOWN_SCOPES]
    if unknown:
        raise PydanticCustomError(
            "unknown_scope", "unknown scope {names}; known scopes: {known}",
            {"names": ", ".join(repr(n) for n in unknown), "known": ", ".join(KNOWN_SCOPES)},
        )
    if not names:
        raise PydanticCustomError("empty_scope", "at least one scope is needed, e.g. 'openid'")
    return names


_STRICT = ConfigDict(str_strip_whitespace=True)


class AuthorizeRequest(RequestBody):
    """`POST /auth/authorize`: start a login for `email` at `client_id`."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={"examples": [{"email": "ada@example.com", "client_id": "demo-client",
                                         "scope": "openid profile"}]},
    )

    email: str = Field(min_length=3, max_length=EMAIL_MAX_LENGTH, description="the user's email address")
    client_id: str = Field(pattern=CLIENT_ID_PATTERN, description="the calling application")
    scope: str = Field(DEFAULT_SCOPE, max_length=256,
                       description=f"space-separated, of: {', '.join(KNOWN_SCOPES)}")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not is_valid_email(value):
            raise PydanticCustomError("email", "not a valid email address")
        return value.lower()

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        return " ".join(parse_scope(value))

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.scope.split())


class AuthorizeResponse(BaseModel):
    session_id: str
    user_id: str
    status: Literal["pending_consent"]


class TokenRequest(RequestBody):
    """`POST /auth/token`: exchange a session (once), or a refresh token (rotated)."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={"examples": [{"grant_type": "session", "session_id": "ses_..."},
                                        {"grant_type": "refresh_token", "refresh_token": "..."}]},
    )

    grant_type: Literal["session", "refresh_token"]
    session_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="with grant_type `session`: from /auth/authorize")
    refresh_token: str | None = Field(None, min_length=1, max_length=512,
                                      description="with grant_type `refresh_token`")


class RefreshRequest(RequestBody):
    model_config = _STRICT

    refresh_token: str = Field(min_length=1, max_length=512)


class TokenResponse(BaseModel):
    access_token: str = Field(description="JWT (`typ: at+jwt`), 1 hour")
    id_token: str = Field(description="OIDC ID token (JWT), 5 minutes")
    refresh_token: str = Field(description="opaque, single use, valid until the login's 30 days end")
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class RevokeRequest(RequestBody):
    """`{"token": ...}` revokes one access or refresh token; `{"all": true}` (with a bearer
    token) every session of the caller."""

    model_config = _STRICT

    token: str | None = Field(None, min_length=1, max_length=8192)
    all: bool = False


class RevokeResponse(BaseModel):
    revoked: bool = Field(description="true: the token (or every session) can no longer be used")
    sessions: int | None = Field(None, description="with `all`: how many sessions were revoked")


class UserInfoResponse(BaseModel):
    sub: str
    email: str | None = None
    email_verified: bool | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None


class JwkModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    kid: str
    kty: Literal["RSA", "EC"]
    use: Literal["sig"]
    alg: str


class JwksResponse(BaseModel):
    keys: list[JwkModel]


class DiscoveryResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    issuer: str
    jwks_uri: str
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]


__all__ = [
    "CLIENT_ID_PATTERN",
    "DEFAULT_SCOPE",
    "EMAIL_MAX_LENGTH",
    "KNOWN_SCOPES",
    "AuthorizeRequest",
    "AuthorizeResponse",
    "DiscoveryResponse",
    "JwksResponse",
    "RefreshRequest",
    "RevokeRequest",
    "RevokeResponse",
    "TokenRequest",
    "TokenResponse",
    "UserInfoResponse",
    "is_valid_email",
    "parse_scope",
]
