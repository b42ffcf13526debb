"""Request and response models of the token endpoints (validation and OpenAPI).

Bodies are validated here so that bad input is a 400 naming the field (the error shape
of docs/api.md): emails (format, at most 254 characters, normalised to lower case), client ids
(1 to 128 characters of `A-Z a-z 0-9 . _ : -`), scopes (known names only).

`/auth/token`, `/auth/refresh` and `/auth/revoke` take what RFC 6749 and RFC 7009
clients send (as JSON or as a form): `client_id`, `scope` on a grant, `token_type_hint`
on a revocation. Their "exactly one of" rules (a grant's own id, `token` or `all`) are
checked by the handlers and stated by the `oneOf` of each schema.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from server.openapi import Variant, exactly_one_of
from server.parsing import RequestBody

EMAIL_MAX_LENGTH = 254
KNOWN_SCOPES = ("openid", "profile", "email")
DEFAULT_SCOPE = "openid"
#: The gateway's own grant (a session from /auth/authorize), named by an absolute URI as
#: RFC 6749 section 4.5 asks of an extension grant; `session` stays its alias.
SESSION_GRANT = "urn:idgw:params:oauth:grant-type:session"
SESSION_GRANTS = (SESSION_GRANT, "session")
GRANT_TYPES = (*SESSION_GRANTS, "refresh_token")

_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: Known scope names separated by spaces (RFC 6749 section 3.3), repeats allowed.
_SCOPE_NAME = "(?:" + "|".join(KNOWN_SCOPES) + ")"
SCOPE_PATTERN = rf"^ *{_SCOPE_NAME}(?: +{_SCOPE_NAME})* *$"


def is_valid_email(value: str) -> bool:
    """An address of the usual `local@domain.tld` form, at most 254 characters."""
    return len(value) <= EMAIL_MAX_LENGTH and _EMAIL.fullmatch(value) is not None


def parse_scope(value: str) -> tuple[str, ...]:
    """`"openid  profile openid"` -> `("openid", "profile")`; unknown names and other
    separators than spaces are refused (what `SCOPE_PATTERN` states)."""
    if any(c.isspace() and c != " " for c in value):
        raise PydanticCustomError("scope_separator", "scope names are separated by spaces")
    names = tuple(dict.fromkeys(name for name in value.split(" ") if name))
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

    email: str = Field(min_length=3, max_length=EMAIL_MAX_LENGTH, json_schema_extra={"pattern": _EMAIL.pattern},
                       description="the user's email address (compared in lower case)")
    client_id: str = Field(pattern=CLIENT_ID_PATTERN, description="the calling application")
    scope: str = Field(DEFAULT_SCOPE, max_length=256, json_schema_extra={"pattern": SCOPE_PATTERN},
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


class _GrantRequest(RequestBody):
    """What an RFC 6749 client adds to a grant: its `client_id`, a `scope`."""

    model_config = _STRICT

    client_id: str | None = Field(None, pattern=CLIENT_ID_PATTERN,
                                  description="RFC 6749 public client: the client the login was started for")
    scope: str | None = Field(None, max_length=256, json_schema_extra={"pattern": SCOPE_PATTERN},
                              description="at most the scope of the login; the answer's `scope` is what was issued")

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str | None) -> str | None:
        return None if value is None else " ".join(parse_scope(value))


class TokenRequest(_GrantRequest):
    """`POST /auth/token`: exchange a session (once), or a refresh token (rotated)."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of(
        Variant(("grant_type", "session_id"), absent=("refresh_token",),
                narrowed={"grant_type": {"enum": list(SESSION_GRANTS)}}),
        Variant(("grant_type", "refresh_token"), absent=("session_id",),
                narrowed={"grant_type": {"enum": ["refresh_token"]}}),
        examples=[{"grant_type": SESSION_GRANT, "session_id": "ses_..."},
                  {"grant_type": "refresh_token", "refresh_token": "..."}],
    ))

    # A str, not a Literal: another value is RFC 6749's `unsupported_grant_type`.
    grant_type: str = Field(max_length=128, json_schema_extra={"enum": list(GRANT_TYPES)},
                            description=f"`{SESSION_GRANT}` (alias `session`) or `refresh_token`")
    session_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="with the session grant: from /auth/authorize")
    refresh_token: str | None = Field(None, min_length=1, max_length=512,
                                      description="with grant_type `refresh_token`")


class RefreshRequest(_GrantRequest):
    """`POST /auth/refresh`: RFC 6749 section 6 (`grant_type` may be left out)."""

    refresh_token: str = Field(min_length=1, max_length=512)
    grant_type: Literal["refresh_token"] | None = None


class TokenResponse(BaseModel):
    access_token: str = Field(description="JWT (`typ: at+jwt`), 1 hour")
    id_token: str = Field(description="OIDC ID token (JWT), 5 minutes")
    refresh_token: str = Field(description="opaque, single use, valid until the login's 30 days end")
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class TokenRevokeRequest(RequestBody):
    """`{"token": ...}` revokes one access or refresh token; `{"all": true}` (with a bearer
    token) every session of the caller."""

    model_config = ConfigDict(**_STRICT, json_schema_extra=exactly_one_of(
        Variant(("token",), narrowed={"all": {"enum": [False]}}),
        Variant(("all",), absent=("token",), narrowed={"all": {"enum": [True]}}),
    ))

    token: str | None = Field(None, min_length=1, max_length=8192, description="an access or refresh token")
    all: bool = Field(False, description="with a bearer token: every session of its user")
    token_type_hint: Literal["access_token", "refresh_token"] | None = Field(
        None, description="RFC 7009; the gateway tells the kinds apart itself")
    client_id: str | None = Field(None, pattern=CLIENT_ID_PATTERN, description="RFC 7009 public client")


class TokenRevokeResponse(BaseModel):
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
    grant_types_supported: list[str] | None = Field(
        None, description=f"`{SESSION_GRANT}` (the session grant; alias `session`) and `refresh_token`; "
                          "absent in external OIDC mode")
    jwks_uri: str
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]


__all__ = [
    "CLIENT_ID_PATTERN",
    "DEFAULT_SCOPE",
    "EMAIL_MAX_LENGTH",
    "GRANT_TYPES",
    "KNOWN_SCOPES",
    "SESSION_GRANT",
    "SESSION_GRANTS",
    "AuthorizeRequest",
    "AuthorizeResponse",
    "DiscoveryResponse",
    "JwksResponse",
    "RefreshRequest",
    "TokenRequest",
    "TokenResponse",
    "TokenRevokeRequest",
    "TokenRevokeResponse",
    "UserInfoResponse",
    "is_valid_email",
    "parse_scope",
]
