"""External OIDC mode: tokens of another issuer, checked against its JWKS.

With `IDGW_AUTH_MODE=external_oidc` the gateway issues no tokens of its own. A bearer
token must be signed by a key of `IDGW_OIDC_JWKS_URL`, come from `IDGW_OIDC_ISSUER`
and, when `IDGW_OIDC_AUDIENCE` is set, be meant for it. The provider's `sub` maps to a
local user (created on first sight) whose id is derived from issuer and subject, so
consent, evidence, decisions and audit work as in local mode.

`RemoteKeySet` fetches the JWKS with httpx and keeps it `max_age` (10 min); an unknown
`kid` triggers a fetch at once (the provider rotated), but at most one such fetch per
`min_refresh_interval` (10 s), so tokens with made-up key ids cannot make the gateway
hammer the provider. A failed periodic fetch keeps the keys it has and is retried at
most every `min_refresh_interval`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import jwt

from server.auth.events import USER_CREATED, AuditContext
from server.auth.models import is_valid_email
from server.auth.tokens import InvalidToken
from server.errors import ServiceUnavailable
from server.security import Principal
from stores import Conflict, NotFound, User, UserStore

#: Asymmetric algorithms accepted from a provider (HMAC and `none` never are).
EXTERNAL_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})
JWKS_MAX_AGE_SECONDS = 600.0
JWKS_MIN_REFRESH_SECONDS = 10.0
JWKS_FETCH_TIMEOUT_SECONDS = 5.0


class JwksUnavailable(ServiceUnavailable):
    """The provider's JWKS could not be fetched when it was needed."""

    description = "the identity provider's keys cannot be fetched; retry later"


@dataclass(frozen=True, slots=True)
class RemoteKey:
    kid: str
    alg: str | None
    public_key: Any


class RemoteKeySet:
    """The provider's signing keys, fetched on demand and cached."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        max_age: float = JWKS_MAX_AGE_SECONDS,
        min_refresh_interval: float = JWKS_MIN_REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.http = http
        self.max_age = max_age
        self.min_refresh_interval = min_refresh_interval
        self._monotonic = monotonic
        self._keys: dict[str, RemoteKey] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._unknown_fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def find(self, kid: str) -> RemoteKey | None:
        now = self._monotonic()
        if now - self._fetched_at >= self.max_age and now - self._attempted_at >= self.min_refresh_interval:
            await self._fetch(raise_errors=not self._keys)
        elif kid not in self._keys and now - self._unknown_fetched_at >= self.min_refresh_interval:
            self._unknown_fetched_at = now
            await self._fetch(raise_errors=True)
        elif self._lock.locked():
            async with self._lock:
                pass  # a fetch is in flight: use its keys
        return self._keys.get(kid)

    async def _fetch(self, *, raise_errors: bool) -> None:
        self._attempted_at = self._monotonic()  # before waiting: concurrent callers do not fetch too
        async with self._lock:
            self.fetches += 1
            try:
                response = await self.http.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                self._keys = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as err:
                if raise_errors:
                    raise JwksUnavailable(f"{self.url}: {err.__class__.__name__}") from err
                return  # keep the keys we have
            self._fetched_at = self._monotonic()


def parse_jwks(document: Any) -> dict[str, RemoteKey]:
    """The signature keys of a JWK Set with a `kid`, by `kid` (others are skipped)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set: no 'keys' list")
    usable = [
        k for k in document["keys"]
        if isinstance(k, dict) and k.get("use", "sig") == "sig" and k.get("kty") in ("RSA", "EC")
        and isinstance(k.get("kid"), str)
    ]
    keys: dict[str, RemoteKey] = {}
    for jwk in jwt.PyJWKSet.from_dict({"keys": usable}).keys:
        if jwk.key_id:
            alg = next((k.get("alg") for k in usable if k["kid"] == jwk.key_id), None)
            keys[jwk.key_id] = RemoteKey(jwk.key_id, alg if isinstance(alg, str) else None, jwk.key)
    return keys


def local_user_id(issuer: str, subject: str) -> str:
    """The local id of a provider's user: stable, and distinct per issuer."""
    return "ext_" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:32]


class ExternalUsers:
    """Maps a provider's subjects to local users, creating them on first sight."""

    def __init__(self, users: UserStore, clock: Callable[[], datetime], *, remember_seconds: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.clock = clock
        self.remember_seconds = remember_seconds
        self._monotonic = monotonic
        self._known: dict[str, float] = {}  # user id -> when it was last seen to exist

    async def principal(self, claims: dict[str, Any], audit: AuditContext) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token has no usable 'sub' claim")
        user_id = local_user_id(str(claims["iss"]), subject)
        if self._monotonic() - self._known.get(user_id, float("-inf")) > self.remember_seconds:
            await self._ensure_user(user_id, claims, audit)
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[user_id] = self._monotonic()
        scope = claims.get("scope")
        client_id = claims.get("azp", claims.get("client_id"))
        jti = claims.get("jti")
        return Principal(
            sub=user_id,
            client_id=client_id if isinstance(client_id, str) else None,
            scope=tuple(scope.split()) if isinstance(scope, str) else (),
            token_id=jti if isinstance(jti, str) else None,
        )

    async def _ensure_user(self, user_id: str, claims: dict[str, Any], audit: AuditContext) -> None:
        try:
            await self.users.get(user_id)
            return
        except NotFound:
            pass
        now = self.clock()
        email = claims.get("email")
        placeholder = f"{user_id}@external.invalid"
        candidates = [email.strip().lower()] if isinstance(email, str) and is_valid_email(email.strip()) else []
        for address in [*candidates, placeholder]:
            try:
                await self.users.create(User(
                    id=user_id, email=address, created_at=now, updated_at=now,
                    verified=address != placeholder and claims.get("email_verified") is True,
                ))
            except Conflict:
                try:
                    await self.users.get(user_id)
                    return  # created meanwhile by a concurrent request
                except NotFound:
                    continue  # the email belongs to another user: fall back to the placeholder
            audit.emit(USER_CREATED, user_id, outcome="created", reason="external_oidc", when=now)
            return


__all__ = [
    "EXTERNAL_ALGORITHMS",
    "ExternalUsers",
    "JwksUnavailable",
    "RemoteKey",
    "RemoteKeySet",
    "local_user_id",
    "parse_jwks",
]
