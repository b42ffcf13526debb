"""Verifiable credentials: issued from a registry check, stored, verifiable, revocable.

`CredentialService` is made by `create_app` as `app.state.credentials`:

    issued = await credentials.issue(user_id, "AgeOver18", "123456789")
    issued.credential, issued.jwt
    await credentials.verify(credential_id="vc_...")   # or jwt="eyJ..."
    await credentials.revoke(user_id, "vc_...")
    await credentials.held_types(user_id)              # ["AgeOver18"]: unrevoked types

`AgeOver18` is issued only to a valid citizen who is 18 or older, looked up in the
citizen registry (400 `not_eligible` with `reason` `invalid_citizen` or `underage`
otherwise). The credential is stored (its claims: `is_over_18`, `verified_via`, and the
national id outside regulated mode) and returned also as a JWT in the W3C VC data
model (VC-JWT: `iss`, `sub`, `jti`, `iat`, `nbf`, and the credential under `vc`),
signed with the gateway's token signing key, so anyone can check it with the JWKS.

Verifying by JWT checks the signature, the issuer and the stored credential (it must
exist and not be revoked); verifying by id is for the holder: someone else's id is
"not found", like an unknown one, so ids reveal nothing.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock, utc_text
from server.auth.events import AuditContext
from server.auth.keys import SUPPORTED_ALGORITHMS, KeyRing
from server.auth.tokens import InvalidToken, TokenRules, sign, verify_token
from server.consent.service import StoresSource, stores_of
from server.errors import ApiError, echo
from server.events import EventPublisher
from server.registry.service import RegistryService
from server.security import user_gone
from stores import Credential, NotFound

AGE_OVER_18 = "AgeOver18"
CREDENTIAL_TYPES = (AGE_OVER_18,)
VC_CONTEXT = "https://www.w3.org/2018/credentials/v1"
VC_JWT_TYP = "JWT"  # VC-JWT (VC data model 1.1, section 6.3.1)
VERIFIED_VIA = "citizen_registry"

VC_ISSUED = "vc_issued"
VC_VERIFIED = "vc_verified"
VC_REVOKED = "vc_revoked"


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    credential: Credential
    jwt: str


@dataclass(frozen=True, slots=True)
class Verification:
    """The answer of `verify`: valid, or why not (`reason`); the credential when found."""

    valid: bool
    credential: Credential | None
    reason: str | None = None
    detail: str | None = None


def credential_json(credential: Credential) -> dict[str, Any]:
    """`{credential_id, type, subject, issuer, issued_at, claims, revoked_at}`."""
    return {
        "credential_id": credential.id,
        "type": credential.type,
        "subject": credential.user_id,
        "issuer": credential.issuer,
        "issued_at": utc_text(credential.issued_at),
        "claims": dict(credential.claims),
        "revoked_at": utc_text(credential.revoked_at),
    }


def not_found() -> ApiError:
    return ApiError(404, "no such credential", error="credential_not_found",
                    extra={"valid": False, "reason": "credential_not_found"})


def not_eligible(reason: str, description: str) -> ApiError:
    return ApiError(400, description, error="not_eligible", extra={"reason": reason})


class CredentialService:
    """Credentials of the app's users, signed with the app's token keys."""

    def __init__(
        self,
        stores: StoresSource,
        events: EventPublisher,
        clock: Clock,
        *,
        registry: RegistryService,
        keys: Callable[[], KeyRing],
        issuer: str,
        regulated: bool = False,
    ) -> None:
        self._stores = stores_of(stores)
        self.events = events
        self.clock = clock
        self.registry = registry
        self._keys = keys
        self.issuer = issuer
        self.regulated = regulated
        self.rules = TokenRules(
            issuer=issuer, audience=None, algorithms=frozenset(SUPPORTED_ALGORITHMS),
            required_claims=("iss", "sub", "iat", "jti", "vc"),
        )

    def _audit(self, request_id: str | None) -> AuditContext:
        return AuditContext(self.events, request_id)

    # -- issuing ----------------------------------------------------------------------------

    async def issue(
        self, user_id: str, type: str, national_id: str, *, request_id: str | None = None
    ) -> IssuedCredential:
        """Check the citizen registry, store the credential, sign it as a VC-JWT."""
        audit = self._audit(request_id)
        if type not in CREDENTIAL_TYPES:
            raise ApiError(400, f"type: unknown credential type {echo(repr(type))}; known: {', '.join(CREDENTIAL_TYPES)}",
                           error="unsupported_credential_type")
        citizen = await self.registry.citizen(national_id, subject=user_id)
        refusal = None
        if not citizen.valid:
            refusal = not_eligible("invalid_citizen", "the citizen registry holds no valid record for this id")
        elif not citizen.is_over_18:
            refusal = not_eligible("underage", "the citizen is under 18: AgeOver18 cannot be issued")
        if refusal is not None:
            audit.emit(VC_ISSUED, user_id, outcome="refused", reason=refusal.extra["reason"],
                       purpose="vc_issuance", when=self.clock())
            raise refusal
        now = self.clock().replace(microsecond=0)
        claims: dict[str, Any] = {"is_over_18": True, "verified_via": VERIFIED_VIA}
        if not self.regulated:
            claims["national_id"] = national_id
        try:
            credential = await self._stores().credentials.add(Credential(
                id="vc_" + secrets.token_hex(16), type=type, user_id=user_id, issuer=self.issuer,
                issued_at=now, claims=claims,
            ))
        except NotFound:
            raise user_gone() from None
        jwt = sign(self.vc_claims(credential), await self._keys().signing_key(), VC_JWT_TYP)
        audit.emit(VC_ISSUED, user_id, outcome="issued", reason=type, purpose="vc_issuance", when=now)
        return IssuedCredential(credential, jwt)

    def vc_claims(self, credential: Credential) -> dict[str, Any]:
        """The JWT claims of a credential (VC-JWT encoding of the VC data model 1.1)."""
        iat = int(credential.issued_at.timestamp())
        return {
            "iss": self.issuer,
            "sub": credential.user_id,
            "jti": credential.id,
            "iat": iat,
            "nbf": iat,
            "vc": {
                "@context": [VC_CONTEXT],
                "id": credential.id,
                "type": ["VerifiableCredential", credential.type],
                "issuer": self.issuer,
                "issuanceDate": utc_text(credential.issued_at),
                "credentialSubject": {"id": credential.user_id, **credential.claims},
            },
        }

    # -- verifying --------------------------------------------------------------------------

    async def verify(
        self,
        credential_id: str | None = None,
        jwt: str | None = None,
        *,
        caller: str | None = None,
        request_id: str | None = None,
    ) -> Verification:
        """By id (only the holder's own when `caller` is given) or by JWT; a credential
        that does not exist is a 404 `credential_not_found`."""
        if (credential_id is None) == (jwt is None):
            raise ApiError(400, "give either `credential_id` or `jwt`, not both or neither")
        audit = self._audit(request_id)
        try:
            if jwt is not None:
                verification = await self._verify_jwt(jwt)
            else:
                assert credential_id is not None
                credential = await self._get(credential_id, holder=caller)
                verification = self._check(credential)
        except ApiError as err:
            audit.emit(VC_VERIFIED, caller, outcome="invalid", reason=err.error, when=self.clock())
            raise
        audit.emit(VC_VERIFIED, caller, outcome="valid" if verification.valid else "invalid",
                   reason=verification.reason, when=self.clock())
        return verification

    async def _verify_jwt(self, token: str) -> Verification:
        try:
            claims = await verify_token(token, self._keys(), self.rules, self.clock())
        except InvalidToken as err:
            return Verification(False, None, "invalid_jwt", str(err).replace("token", "credential"))
        jti, vc = claims.get("jti"), claims.get("vc")
        if not isinstance(jti, str) or not isinstance(vc, dict):
            return Verification(False, None, "invalid_jwt", "not a verifiable credential (no `jti` or `vc`)")
        credential = await self._get(jti, holder=None)
        types = vc.get("type")
        if claims.get("sub") != credential.user_id or not isinstance(types, list) or credential.type not in types:
            return Verification(False, credential, "credential_mismatch",
                                "the JWT does not match the stored credential")
        return self._check(credential)

    @staticmethod
    def _check(credential: Credential) -> Verification:
        if credential.revoked_at is not None:
            return Verification(False, credential, "credential_revoked", "the holder revoked the credential")
        return Verification(True, credential)

    async def _get(self, credential_id: str, *, holder: str | None) -> Credential:
        try:
            credential = await self._stores().credentials.get(credential_id)
        except NotFound:
            raise not_found() from None
        if holder is not None and credential.user_id != holder:
            raise not_found()  # someone else's: indistinguishable from an unknown id
        return credential

    # -- the holder's -----------------------------------------------------------------------

    async def revoke(self, user_id: str, credential_id: str, *, request_id: str | None = None) -> Credential:
        """Revoke one of the holder's credentials (again: unchanged); others' are a 404."""
        await self._get(credential_id, holder=user_id)
        now = self.clock()
        credential = await self._stores().credentials.revoke(credential_id, now)
        self._audit(request_id).emit(VC_REVOKED, user_id, outcome="revoked", reason=credential.type, when=now)
        return credential

    async def list(self, user_id: str) -> builtins.list[Credential]:
        """Every credential of the user, revoked ones included, oldest first."""
        return await self._stores().credentials.list_for_user(user_id)

    async def held_types(self, user_id: str) -> builtins.list[str]:
        """The types of the user's unrevoked credentials (the `credentials` fact)."""
        return sorted({c.type for c in await self.list(user_id) if c.revoked_at is None})


__all__ = [
    "AGE_OVER_18",
    "CREDENTIAL_TYPES",
    "VC_CONTEXT",
    "VC_ISSUED",
    "VC_REVOKED",
    "VC_VERIFIED",
    "CredentialService",
    "IssuedCredential",
    "Verification",
    "credential_json",
]
