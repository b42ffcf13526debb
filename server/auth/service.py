"""The token subsystem's service logic: logins, token grants, refresh, revocation, and
the check of a bearer token on every protected call.

`AuthService` is made by `create_app` from the settings and started in the lifespan
with the opened stores (`start(stores)`): that loads or generates the signing keys and
reads the revocation list. Handlers call it and shape the answers; every time it
reads comes from `clock`, which tests replace to move through token lifetimes.

Login (local mode): `authorize` creates the user on first sight and a session
`pending_consent`; the `session` grant exchanges that session once, within
`AUTHORIZATION_TTL`, for an access token, an ID token and the first refresh token of a
new family. Each refresh marks the presented token used and stores its successor in one
transaction; presenting a used token again is reuse: the family and its session are
revoked and a `refresh_token_reused` event is emitted.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx

from engine.clock import Clock, utc_now
from server.auth.events import (
    REFRESH_TOKEN_REUSED,
    SESSIONS_REVOKED,
    TOKEN_REVOKED,
    TOKENS_ISSUED,
    USER_CREATED,
    AuditContext,
)
from server.auth.external import (
    EXTERNAL_ALGORITHMS,
    JWKS_FETCH_TIMEOUT_SECONDS,
    ExternalUsers,
    RemoteKeySet,
)
from server.auth.keys import SUPPORTED_ALGORITHMS, KeyRing
from server.auth.lifetimes import ACCESS_TOKEN_TTL, AUTHORIZATION_TTL, LEEWAY, REFRESH_TOKEN_TTL
from server.auth.models import GRANT_TYPES, KNOWN_SCOPES
from server.auth.revocation import RevocationList
from server.auth.tokens import (
    ACCESS_TOKEN_TYP,
    InvalidToken,
    TokenMinter,
    TokenRules,
    VerificationKey,
    profile_claims,
    verify_token,
)
from server.errors import ApiError
from server.security import Principal, invalid_grant, invalid_token, user_gone
from server.settings import Settings
from stores import (
    Conflict,
    NotFound,
    RefreshToken,
    Session,
    Stores,
    TokenRevocation,
    User,
)

PENDING = "pending_consent"
ACTIVE = "active"
REVOKED = "revoked"
LOCAL_ACCESS_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "sid", "client_id")
EXTERNAL_ACCESS_CLAIMS = ("iss", "sub", "exp", "iat")


@dataclass(frozen=True, slots=True)
class ClientCheck:
    """What an RFC 6749 client says of itself on a grant: its `client_id`, which must be
    the one the login was started for, and a `scope`, which may not exceed the login's
    (the tokens keep the login's scope, which the answer's `scope` names)."""

    client_id: str | None = None
    scope: tuple[str, ...] | None = None

    def check(self, client_id: str, scope: tuple[str, ...]) -> None:
        if self.client_id is not None and self.client_id != client_id:
            raise invalid_grant("the grant was issued to another client_id")
        if self.scope is not None and not set(self.scope) <= set(scope):
            raise ApiError(400, f"scope: the login was granted only {' '.join(scope)}", error="invalid_scope")


def hash_refresh_token(value: str) -> str:
    """Only this is stored: the value has 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


class AuthService:
    """Tokens and authentication of one app."""

    def __init__(self, settings: Settings, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.issuer = settings.public_issuer
        #: The gateway's API as a resource server: the `aud` of its access tokens.
        self.audience = settings.public_issuer
        self.external = settings.auth_mode == "external_oidc"
        self.minter = TokenMinter(self.issuer, self.audience, settings.regulated_mode)
        self._stores: Stores | None = None
        self._keys: KeyRing | None = None
        self._revocations: RevocationList | None = None
        self.external_keys: RemoteKeySet | None = None
        self._external_users: ExternalUsers | None = None
        self._http: httpx.AsyncClient | None = None
        if self.external:
            self.rules = TokenRules(
                issuer=settings.oidc.issuer or "", audience=settings.oidc.audience,
                algorithms=EXTERNAL_ALGORITHMS, required_claims=EXTERNAL_ACCESS_CLAIMS,
            )
        else:
            self.rules = TokenRules(
                issuer=self.issuer, audience=self.audience, algorithms=frozenset(SUPPORTED_ALGORITHMS),
                required_claims=LOCAL_ACCESS_CLAIMS, typ=ACCESS_TOKEN_TYP,
            )

    def now(self) -> datetime:
        return self.clock()

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self, stores: Stores) -> None:
        self._stores = stores
        self._keys = KeyRing(stores.signing_keys, self.settings.signing_alg, self.now,
                             refresh_seconds=self.settings.key_refresh_s)
        await self._keys.start()
        self._revocations = RevocationList(stores.revocations, self.now)
        await self._revocations.load()
        if self.external:
            self._http = httpx.AsyncClient(timeout=JWKS_FETCH_TIMEOUT_SECONDS, follow_redirects=True)
            self.external_keys = RemoteKeySet(self.settings.oidc.jwks_url or "", self._http)
            self._external_users = ExternalUsers(stores.users, self.now)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def stores(self) -> Stores:
        if self._stores is None:
            raise ApiError(503, "the token service has not started", error="not_ready")
        return self._stores

    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            raise ApiError(503, "the token service has not started", error="not_ready")
        return self._keys

    @property
    def revocations(self) -> RevocationList:
        if self._revocations is None:
            raise ApiError(503, "the token service has not started", error="not_ready")
        return self._revocations

    def _require_local(self, what: str) -> None:
        if self.external:
            raise ApiError(
                403,
                f"{what} is disabled: this gateway runs with IDGW_AUTH_MODE=external_oidc and accepts "
                f"tokens of {self.settings.oidc.issuer}; obtain them from that provider",
                error="local_auth_disabled",
            )

    # -- authentication ---------------------------------------------------------------------

    async def find(self, kid: str) -> VerificationKey | None:
        """The key a token names: the provider's in external mode, else a published own key."""
        if self.external_keys is not None:
            return await self.external_keys.find(kid)
        return await self.keys.find(kid)

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of a token that verifies (signature, issuer, audience, times)."""
        return await verify_token(token, self, self.rules, self.now())

    async def principal(self, claims: dict[str, Any], audit: AuditContext) -> Principal:
        if self._external_users is not None:
            return await self._external_users.principal(claims, audit)
        for name in ("sub", "sid", "client_id", "jti"):
            if not isinstance(claims.get(name), str):
                raise InvalidToken(f"the token's {name!r} claim is not a string")
        scope = claims.get("scope", "")
        return Principal(
            sub=claims["sub"], client_id=claims["client_id"],
            scope=tuple(scope.split()) if isinstance(scope, str) else (),
            session_id=claims["sid"], token_id=claims["jti"],
        )

    async def authenticate(self, token: str, audit: AuditContext) -> Principal:
        """The caller of a bearer token, or a 401 saying what is wrong with it. A database or
        provider that cannot answer is not caught here: the app answers it (503, `server.errors`)."""
        try:
            claims = await self.claims(token)
            principal = await self.principal(claims, audit)
            revoked = await self.revocations.is_revoked(
                jti=principal.token_id, session_id=principal.session_id, user_id=principal.sub,
                issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            )
        except InvalidToken as err:
            raise invalid_token(str(err)) from None
        if revoked:
            raise invalid_token("the token has been revoked")
        return principal

    # -- login ------------------------------------------------------------------------------

    async def authorize(self, email: str, client_id: str, scope: tuple[str, ...], audit: AuditContext) -> Session:
        """Start a login: the user (created on first sight) and a `pending_consent` session."""
        self._require_local("/auth/authorize")
        now = self.now()
        user = await self._user_for_email(email, now, audit)
        return await self.stores.sessions.create(Session(
            id="ses_" + secrets.token_urlsafe(16), user_id=user.id, client_id=client_id, status=PENDING,
            created_at=now, expires_at=now + REFRESH_TOKEN_TTL, requested_scope=scope,
        ))

    async def _user_for_email(self, email: str, now: datetime, audit: AuditContext) -> User:
        users = self.stores.users
        try:
            return await users.get_by_email(email)
        except NotFound:
            pass
        try:
            user = await users.create(User(
                id="usr_" + secrets.token_hex(12), email=email, created_at=now, updated_at=now,
            ))
        except Conflict:  # created by a concurrent request
            return await users.get_by_email(email)
        audit.emit(USER_CREATED, user.id, outcome="created", reason="authorize", when=now)
        return user

    async def exchange_session(
        self, session_id: str, audit: AuditContext, client: ClientCheck | None = None
    ) -> dict[str, Any]:
        """The `session` grant: a pending session, once, for the first tokens of a login."""
        self._require_local("/auth/token")
        stores, now = self.stores, self.now()
        try:
            session = await stores.sessions.get(session_id)
        except NotFound:
            raise invalid_grant("unknown session_id; start a login at /auth/authorize") from None
        if session.status != PENDING:
            raise invalid_grant(f"the session was already exchanged or revoked (status {session.status})")
        if session.created_at + AUTHORIZATION_TTL <= now:
            raise invalid_grant("the session is older than 10 minutes; start a new login at /auth/authorize")
        if client is not None:
            client.check(session.client_id, session.requested_scope)
        try:
            user = await stores.users.get(session.user_id)
        except NotFound:
            raise user_gone("session") from None
        try:  # compare-and-set: of two concurrent exchanges of one session, one wins
            await stores.sessions.set_status(session.id, ACTIVE, expected=PENDING)
        except Conflict:
            raise invalid_grant("the session was already exchanged or revoked") from None
        refresh_token = new_refresh_token()
        await stores.refresh_tokens.create(RefreshToken(
            token_hash=hash_refresh_token(refresh_token), family_id="fam_" + secrets.token_urlsafe(16),
            user_id=user.id, session_id=session.id, client_id=session.client_id, created_at=now,
            expires_at=session.expires_at, scope=session.requested_scope,
        ))
        audit.emit(TOKENS_ISSUED, user.id, outcome="issued", reason="session", when=now)
        return await self._token_response(user, session.id, session.client_id, session.requested_scope,
                                          refresh_token, now)

    async def refresh(
        self, refresh_token: str, audit: AuditContext, client: ClientCheck | None = None
    ) -> dict[str, Any]:
        """The `refresh_token` grant: rotate the token; a used one revokes its family."""
        self._require_local("/auth/refresh (and the refresh_token grant)")
        stores, now = self.stores, self.now()
        token_hash = hash_refresh_token(refresh_token)
        try:
            stored = await stores.refresh_tokens.get(token_hash)
        except NotFound:
            raise invalid_grant("unknown refresh token") from None
        if stored.revoked_at is not None:
            raise invalid_grant("the refresh token has been revoked; log in again")
        if stored.used_at is not None:
            await self._reuse_detected(stored, audit, now)
        if stored.expires_at <= now:
            raise invalid_grant("the refresh token has expired; log in again")
        if client is not None:
            client.check(stored.client_id, stored.scope)
        successor = new_refresh_token()
        try:
            await stores.refresh_tokens.rotate(
                token_hash, new_token_hash=hash_refresh_token(successor), now=now, expires_at=stored.expires_at,
            )
        except Conflict:  # a concurrent request rotated it first: one of the two is a replay
            await self._reuse_detected(stored, audit, now)
        try:
            user = await stores.users.get(stored.user_id)
        except NotFound:
            raise user_gone("refresh token") from None
        audit.emit(TOKENS_ISSUED, user.id, outcome="issued", reason="refresh_token", when=now)
        return await self._token_response(user, stored.session_id, stored.client_id, stored.scope, successor, now)

    async def _reuse_detected(self, stored: RefreshToken, audit: AuditContext, now: datetime) -> NoReturn:
        await self.stores.refresh_tokens.revoke_family(stored.family_id, now)
        await self._revoke_session(stored.session_id, now)
        audit.emit(REFRESH_TOKEN_REUSED, stored.user_id, outcome="revoked", reason="family_revoked", when=now)
        raise invalid_grant("the refresh token was already used; every token of this login is now revoked")

    async def _token_response(
        self, user: User, session_id: str, client_id: str, scope: tuple[str, ...], refresh_token: str,
        now: datetime,
    ) -> dict[str, Any]:
        key = await self.keys.signing_key()
        minted = self.minter.mint(key, user, session_id, client_id, scope, now)
        return {
            "access_token": minted.access_token,
            "id_token": minted.id_token,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": minted.expires_in,
            "scope": " ".join(scope),
        }

    # -- revocation -------------------------------------------------------------------------

    async def revoke(self, token: str, audit: AuditContext) -> None:
        """Revoke one token (RFC 7009: an unknown or invalid token is not an error)."""
        now = self.now()
        if token.count(".") == 2:
            try:
                claims = await self.claims(token)
                principal = await self.principal(claims, audit)
            except InvalidToken:
                return  # not ours, or already expired: nothing can use it
            if principal.token_id is not None:
                await self.revocations.revoke(TokenRevocation(
                    kind="jti", key=principal.token_id, created_at=now,
                    expires_at=datetime.fromtimestamp(claims["exp"], UTC) + LEEWAY,
                ))
            audit.emit(TOKEN_REVOKED, principal.sub, outcome="revoked", reason="access_token", when=now)
            return
        try:
            stored = await self.stores.refresh_tokens.get(hash_refresh_token(token))
        except NotFound:
            return
        # Revoking a refresh token ends its login: the access tokens of the session too.
        await self.stores.refresh_tokens.revoke_family(stored.family_id, now)
        await self._revoke_session(stored.session_id, now)
        audit.emit(TOKEN_REVOKED, stored.user_id, outcome="revoked", reason="refresh_token", when=now)

    async def revoke_all(self, principal: Principal, audit: AuditContext) -> int:
        """Revoke every session of the caller and every token issued to them until now."""
        stores, now = self.stores, self.now()
        sessions = [s for s in await stores.sessions.list_for_user(principal.sub)
                    if s.status in (PENDING, ACTIVE) and s.expires_at > now]
        for session in sessions:
            await self._revoke_session(session.id, now)
        await stores.refresh_tokens.revoke_for_user(principal.sub, now)
        # Whole seconds, like `iat`. Own tokens from earlier in this second are caught
        # through their session, so a login just after this call works; a provider's
        # tokens have no session here, so in external mode the whole second counts.
        seconds = now.timestamp()
        not_before = datetime.fromtimestamp(math.ceil(seconds) if self.external else math.floor(seconds), UTC)
        await self.revocations.revoke(TokenRevocation(
            kind="user", key=principal.sub, not_before=not_before, created_at=now,
            expires_at=now + ACCESS_TOKEN_TTL + LEEWAY,
        ))
        audit.emit(SESSIONS_REVOKED, principal.sub, outcome="revoked", reason=f"{len(sessions)} sessions", when=now)
        return len(sessions)

    async def _revoke_session(self, session_id: str, now: datetime) -> None:
        with suppress(NotFound):
            await self.stores.sessions.set_status(session_id, REVOKED)
        await self.stores.refresh_tokens.revoke_for_session(session_id, now)
        await self.revocations.revoke(TokenRevocation(
            kind="session", key=session_id, created_at=now, expires_at=now + ACCESS_TOKEN_TTL + LEEWAY,
        ))

    # -- what others read -------------------------------------------------------------------

    async def userinfo(self, principal: Principal) -> dict[str, Any]:
        try:
            user = await self.stores.users.get(principal.sub)
        except NotFound:
            raise user_gone() from None
        claims = {"sub": user.id, **profile_claims(user)}
        if self.settings.regulated_mode:
            for name in ("name", "given_name", "family_name"):
                claims.pop(name, None)
        return claims

    async def jwks(self) -> dict[str, Any]:
        return await self.keys.jwks()

    def discovery(self) -> dict[str, Any]:
        base = self.issuer.rstrip("/")
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "userinfo_endpoint": f"{base}/auth/userinfo",
            "revocation_endpoint": f"{base}/auth/revoke",
            # /auth/authorize answers a session id, not a code or a token: response type "none".
            "response_types_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.settings.signing_alg],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(KNOWN_SCOPES),
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "sid", "email",
                                 "email_verified", "name", "given_name", "family_name"],
        }
        if not self.external:
            document.update({
                "authorization_endpoint": f"{base}/auth/authorize",
                "token_endpoint": f"{base}/auth/token",
                "grant_types_supported": list(GRANT_TYPES),
            })
        return document


__all__ = ["AuthService", "ClientCheck", "hash_refresh_token"]
