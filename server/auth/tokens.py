"""Access and ID tokens: minting them, and verifying one presented as a bearer token.

Signing and signature checks are PyJWT's; this module chooses what goes in and what
is demanded. `verify_token` is the one verification path, used for the gateway's own
tokens and, with other rules and keys, for an external provider's:

1. the header's `alg` must be one of the rules' algorithms (never `none`, never HMAC);
2. `kid` names a published key whose own algorithm is that `alg`;
3. the header `typ` (when the rules demand one: `at+jwt` for access tokens);
4. PyJWT checks the signature, `iss`, `aud` and the required claims;
5. `exp`, `nbf` and `iat` against the service's clock, with `LEEWAY`.

Every failure is an `InvalidToken` whose message says what was wrong, for the
`error_description` of the 401.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import jwt

from server.auth.keys import LoadedKey
from server.auth.lifetimes import ACCESS_TOKEN_TTL, ID_TOKEN_TTL, LEEWAY
from stores import User

ACCESS_TOKEN_TYP = "at+jwt"
ID_TOKEN_TYP = "JWT"
_YEAR_10000 = 253_402_300_800  # NumericDate bound: later instants are not representable


class InvalidToken(Exception):
    """The token cannot be accepted; the message is the 401's description."""


class VerificationKey(Protocol):
    @property
    def alg(self) -> str | None: ...

    @property
    def public_key(self) -> Any: ...


class KeySource(Protocol):
    async def find(self, kid: str) -> VerificationKey | None: ...


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must satisfy to be accepted."""

    issuer: str
    audience: str | None
    algorithms: frozenset[str]
    required_claims: tuple[str, ...] = ("iss", "sub", "exp", "iat")
    typ: str | None = None
    leeway: timedelta = LEEWAY


async def verify_token(token: str, keys: KeySource, rules: TokenRules, now: datetime) -> dict[str, Any]:
    """The claims of `token` if it passes every rule, else `InvalidToken`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("the bearer token is not a well-formed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in rules.algorithms:
        allowed = ", ".join(sorted(rules.algorithms))
        raise InvalidToken(f"the token's algorithm {alg!r} is not accepted; expected one of {allowed}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the token header has no key id (kid)")
    key = await keys.find(kid)
    if key is None:
        raise InvalidToken(f"the token was signed with an unknown key (kid {kid[:64]!r})")
    if key.alg is not None and key.alg != alg:
        raise InvalidToken(f"the token's algorithm {alg} does not match its key's {key.alg}")
    if rules.typ is not None and _media_type(header.get("typ")) != rules.typ:
        raise InvalidToken(f"the token is not an access token (typ {header.get('typ')!r}, expected {rules.typ!r})")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_key,
            algorithms=[alg],
            issuer=rules.issuer,
            audience=rules.audience,
            options={
                "require": list(rules.required_claims),
                "verify_aud": rules.audience is not None,
                # Times are checked below against the service clock, not the wall clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("the token's signature does not verify") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken(f"the token was not issued by {rules.issuer}") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken(f"the token is not meant for this service (audience {rules.audience})") from None
    except jwt.MissingRequiredClaimError as err:
        raise InvalidToken(f"the token has no {err.claim!r} claim") from None
    except jwt.PyJWTError as err:
        raise InvalidToken(f"the token is invalid: {err}") from None
    except (ValueError, TypeError):  # a key PyJWT cannot use for this algorithm
        raise InvalidToken("the token cannot be verified with its key") from None
    check_times(claims, now, rules.leeway)
    return claims


def _media_type(typ: object) -> str | None:
    if not isinstance(typ, str):
        return None
    lowered = typ.lower()
    return lowered.removeprefix("application/")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the token's {name!r} claim is not a number")
    if not 0 <= value < _YEAR_10000:
        raise InvalidToken(f"the token's {name!r} claim is out of range")
    return float(value)


def check_times(claims: Mapping[str, Any], now: datetime, leeway: timedelta) -> None:
    """`exp` in the future, `nbf` and `iat` not in the future, each with `leeway`."""
    at, slack = now.timestamp(), leeway.total_seconds()
    exp = _numeric_date(claims, "exp")
    if exp is not None and exp <= at - slack:
        raise InvalidToken("the token has expired")
    nbf = _numeric_date(claims, "nbf")
    if nbf is not None and nbf > at + slack:
        raise InvalidToken("the token is not valid yet (nbf)")
    iat = _numeric_date(claims, "iat")
    if iat is not None and iat > at + slack:
        raise InvalidToken("the token is not valid yet (issued in the future)")


# -- minting ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MintedTokens:
    access_token: str
    id_token: str
    jti: str
    expires_in: int


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def sign(claims: Mapping[str, Any], key: LoadedKey, typ: str) -> str:
    return jwt.encode(dict(claims), key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": typ})


@dataclass(frozen=True, slots=True)
class TokenMinter:
    """Makes the access and ID tokens of one login (their claims: docs/tokens.md)."""

    issuer: str
    audience: str
    regulated: bool

    def access_claims(
        self, user: User, session_id: str, client_id: str, scope: tuple[str, ...], now: datetime
    ) -> dict[str, Any]:
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": self.audience,
            "exp": iat + int(ACCESS_TOKEN_TTL.total_seconds()),
            "iat": iat,
            "jti": new_jti(),
            "scope": " ".join(scope),
            "client_id": client_id,
            "sid": session_id,
        }
        if not self.regulated:
            claims["email"] = user.email
        return claims

    def id_claims(self, user: User, session_id: str, client_id: str, now: datetime) -> dict[str, Any]:
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": client_id,
            "azp": client_id,
            "exp": iat + int(ID_TOKEN_TTL.total_seconds()),
            "iat": iat,
            "auth_time": iat,
            "sid": session_id,
        }
        if not self.regulated:
            claims.update(profile_claims(user))
        return claims

    def mint(
        self, key: LoadedKey, user: User, session_id: str, client_id: str, scope: tuple[str, ...], now: datetime
    ) -> MintedTokens:
        access = self.access_claims(user, session_id, client_id, scope, now)
        return MintedTokens(
            access_token=sign(access, key, ACCESS_TOKEN_TYP),
            id_token=sign(self.id_claims(user, session_id, client_id, now), key, ID_TOKEN_TYP),
            jti=access["jti"],
            expires_in=int(ACCESS_TOKEN_TTL.total_seconds()),
        )


def profile_claims(user: User) -> dict[str, Any]:
    """The OIDC identity claims of a user that are known (names are left out when unset)."""
    claims: dict[str, Any] = {"email": user.email, "email_verified": user.verified}
    if user.first_name:
        claims["given_name"] = user.first_name
    if user.last_name:
        claims["family_name"] = user.last_name
    names = [n for n in (user.first_name, user.last_name) if n]
    if names:
        claims["name"] = " ".join(names)
    return claims


__all__ = [
    "ACCESS_TOKEN_TYP",
    "InvalidToken",
    "KeySource",
    "MintedTokens",
    "TokenMinter",
    "TokenRules",
    "VerificationKey",
    "check_times",
    "profile_claims",
    "sign",
    "verify_token",
]
